"""Regional meteorological geohazard risk warnings: import, storage, and the level floor.

A regional warning (issued per county code or polygon by natural-resources and weather
services, usually for 24 hours) sets a floor under each covered hazard point's warning level:
the engine never reports a point below it. `floor_levels` is the pure rule; `regional_floor`
loads what it needs at an event time `at` (never the wall clock, so replays give the same
answer).

Coverage: an administrative code covers its own county and, when it is a city (NNNN00) or
province (NN0000) code, every county under it; a polygon covers the hazard points it touches
or overlaps (touching counts: a warning edge drawn along a slope should not miss it).

GeoJSON warning features: properties id, issuer, level (blue/yellow/orange/red or 1..4),
valid_from, valid_to (ISO 8601 with offset), county_codes (list or "330100,330200"),
headline; geometry a Polygon/MultiPolygon or null when county codes are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from shapely.geometry.base import BaseGeometry

from geowarn.errors import InvalidInput, NotFound
from gis import cap, geometry, model
from gis.geojson_io import load_document
from gis.geometry import GeometryError
from gis.model import LEVEL_BY_NAME, FieldError, RegionalWarning
from gis.records import Collector, ParseResult, Problem
from gis.store import ImportReport, load_hazards

# --- pure -----------------------------------------------------------------------------------

def covered(warning: RegionalWarning,
            hazards: Sequence[tuple[str, str, BaseGeometry]]) -> set[str]:
    """Ids of the hazard points (id, county code, geometry) `warning` covers."""
    ids = {hid for hid, county, _ in hazards
           if any(geometry.code_covers(code, county) for code in warning.county_codes)}
    if warning.geometry is not None:
        ids |= set(geometry.areas_intersecting([(h, g) for h, _, g in hazards],
                                               warning.geometry))
    return ids


def floor_levels(hazards: Sequence[tuple[str, str, BaseGeometry]],
                 warnings: Sequence[RegionalWarning], at: datetime) -> dict[str, int]:
    """The highest level of the warnings active at `at` covering each hazard point (0 none)."""
    floors = {hid: 0 for hid, _, _ in hazards}
    for warning in warnings:
        if not warning.active_at(at):
            continue
        for hid in covered(warning, hazards):
            floors[hid] = max(floors[hid], warning.level)
    return floors


def _level(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4:
        return value
    if isinstance(value, str) and value.strip().lower() in LEVEL_BY_NAME:
        return LEVEL_BY_NAME[value.strip().lower()]
    raise FieldError(f"level {value!r} is not blue, yellow, orange, red or 1..4")


def _codes(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise FieldError("county_codes must be a list or a comma-separated string")
    codes = []
    for item in items:
        codes.append(model.county_code({"county_codes": str(item).strip()}, "county_codes"))
    return tuple(dict.fromkeys(codes))


def _warning_from_feature(feature: Mapping[str, Any]) -> tuple[RegionalWarning, list[str]]:
    props = dict(feature.get("properties") or {})
    if feature.get("id") is not None:
        props.setdefault("id", feature["id"])
    geom_obj = feature.get("geometry")
    shape, notes = (None, []) if geom_obj is None else geometry.parse_area(geom_obj)
    codes = _codes(props.get("county_codes"))
    if shape is None and not codes:
        raise FieldError("a warning needs county_codes or a polygon geometry")
    valid_from = model.timestamp(props, "valid_from", required=True)
    valid_to = model.timestamp(props, "valid_to", required=True)
    assert valid_from is not None and valid_to is not None
    if valid_to <= valid_from:
        raise FieldError(f"valid_to {valid_to.isoformat()} is not after valid_from")
    return RegionalWarning(
        warning_id=model.req_str(props, "id"), issuer=model.req_str(props, "issuer"),
        level=_level(props.get("level")), valid_from=valid_from, valid_to=valid_to,
        county_codes=codes, geometry=shape, headline=model.opt_str(props, "headline"),
        source="geojson"), notes


def read_geojson(text: str) -> ParseResult[RegionalWarning]:
    doc = load_document(text)
    out: Collector[RegionalWarning] = Collector(lambda w: w.warning_id)
    for index, feature in enumerate(doc["features"]):
        where = f"feature {index}"
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            out.error(where, "not a GeoJSON Feature")
            continue
        out.add(where, lambda f=feature: _warning_from_feature(f))  # type: ignore[misc]
    return out.result()


# --- storage --------------------------------------------------------------------------------

_UPSERT = (
    "INSERT INTO regional_warnings (warning_id, issuer, level, valid_from, valid_to, "
    "county_codes, geometry, headline, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (warning_id) DO UPDATE SET issuer = EXCLUDED.issuer, level = EXCLUDED.level, "
    "valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to, "
    "county_codes = EXCLUDED.county_codes, geometry = EXCLUDED.geometry, "
    "headline = EXCLUDED.headline, source = EXCLUDED.source "
    "WHERE (regional_warnings.issuer, regional_warnings.level, regional_warnings.valid_from, "
    "regional_warnings.valid_to, regional_warnings.county_codes, regional_warnings.geometry, "
    "regional_warnings.headline, regional_warnings.source) IS DISTINCT FROM "
    "(EXCLUDED.issuer, EXCLUDED.level, EXCLUDED.valid_from, EXCLUDED.valid_to, "
    "EXCLUDED.county_codes, EXCLUDED.geometry, EXCLUDED.headline, EXCLUDED.source) "
    "RETURNING (xmax = 0)")


def store_warnings(conn: psycopg.Connection, parsed: ParseResult[RegionalWarning],
                   *, ends: Mapping[str, datetime] | None = None) -> ImportReport:
    """Upsert warnings and end the ones in `ends` (CAP Update/Cancel), in one transaction."""
    inserted = updated = 0
    notes = list(parsed.warnings)
    with conn.transaction():
        for ref, at in (ends or {}).items():
            # LEAST: replaying an older Cancel never extends a warning already ended.
            cur = conn.execute(
                "UPDATE regional_warnings SET cancelled_at = LEAST(cancelled_at, %s) "
                "WHERE warning_id = %s OR warning_id LIKE %s",
                (at, ref, ref.replace("%", r"\%").replace("_", r"\_") + "#%"))
            if cur.rowcount == 0:
                notes.append(Problem("references", f"no stored warning {ref!r} to end"))
        for w in parsed.records:
            geom = Jsonb(geometry.to_geojson(w.geometry)) if w.geometry is not None else None
            row = conn.execute(_UPSERT, (w.warning_id, w.issuer, w.level, w.valid_from,
                                         w.valid_to, list(w.county_codes), geom, w.headline,
                                         w.source)).fetchone()
            if row is not None:
                inserted += bool(row[0])
                updated += not row[0]
    unchanged = len(parsed.records) - inserted - updated
    return ImportReport(inserted, updated, unchanged, parsed.errors, tuple(notes))


def read_cap(text: str | bytes) -> tuple[ParseResult[RegionalWarning], dict[str, datetime]]:
    """A CAP message's warnings, and the referenced warnings it ends (at its <sent>)."""
    try:
        msg = cap.parse(text)
    except (FieldError, GeometryError) as exc:
        raise InvalidInput(str(exc)) from None
    parsed = ParseResult(msg.warnings, (), tuple(Problem("cap", n) for n in msg.notes))
    return parsed, {ref: msg.sent for ref in msg.references}


def import_cap(conn: psycopg.Connection, text: str | bytes) -> ImportReport:
    parsed, ends = read_cap(text)
    return store_warnings(conn, parsed, ends=ends)


def load_active(conn: psycopg.Connection, at: datetime) -> list[RegionalWarning]:
    rows = conn.execute(
        "SELECT warning_id, issuer, level, valid_from, valid_to, county_codes, geometry, "
        "headline, source, cancelled_at FROM regional_warnings "
        "WHERE valid_from <= %s AND valid_to > %s "
        "AND (cancelled_at IS NULL OR cancelled_at > %s) ORDER BY warning_id",
        (at, at, at)).fetchall()
    return [RegionalWarning(wid, issuer, level, vf, vt, tuple(codes),
                            geometry.from_geojson(g) if g is not None else None,
                            headline, source, cancelled)
            for wid, issuer, level, vf, vt, codes, g, headline, source, cancelled in rows]


def regional_floor(conn: psycopg.Connection, hazard_ids: Sequence[str],
                   at: datetime) -> dict[str, int]:
    """{hazard_id: Level} from the regional warnings valid at event time `at`.

    Values are alerts.methods.levels.Level members (ints 0 none .. 4 red). Unknown ids raise
    NotFound rather than silently getting no floor.
    """
    if at.tzinfo is None:
        raise InvalidInput("regional_floor needs an aware datetime (event time with offset)")
    wanted = list(dict.fromkeys(hazard_ids))
    hazards = load_hazards(conn, wanted)
    missing = set(wanted) - {h.hazard_id for h in hazards}
    if missing:
        raise NotFound(f"unknown hazard point(s): {', '.join(sorted(missing))}")
    floors = floor_levels([(h.hazard_id, h.county_code, h.geometry) for h in hazards],
                          load_active(conn, at), at)
    return {hid: int(floors[hid]) for hid in wanted}
