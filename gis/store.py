"""PostgreSQL storage for hazard points, shelters and households, and the DB-side queries.

Loading and saving only; every spatial decision is made by the pure functions in
gis/geometry.py on what is loaded here. Imports upsert by id inside one transaction, and rows
whose content did not change are left alone (updated_at keeps its value), so re-importing the
same file reports everything as unchanged.

Personal data: `list_*` functions mask phone numbers unless `reveal_phones=True`; the
`load_*` functions return real numbers and are for internal use (matching, notification).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from geowarn.errors import InvalidInput, NotFound
from gis import geometry
from gis.geojson_io import Record
from gis.geometry import AreaMatch, RankedShelter
from gis.model import (
    APPROVAL_RANK,
    HazardPoint,
    Household,
    Person,
    Shelter,
    cancellation_level,
    mask_phone,
)
from gis.records import ParseResult, Problem


@dataclass(frozen=True)
class ImportReport:
    inserted: int
    updated: int
    unchanged: int
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]


_HAZARD_COLS = ("hazard_id", "name", "hazard_type", "scale", "county_code", "geometry",
                "min_lon", "min_lat", "max_lon", "max_lat", "households", "people",
                "property_10k_yuan", "responsible_name", "responsible_phone", "monitors",
                "status", "cancelled_at", "cancel_level", "cancel_approved_by",
                "cancel_document")
_SHELTER_COLS = ("shelter_id", "name", "lon", "lat", "capacity", "occupancy",
                 "contact_name", "contact_phone")
_HOUSEHOLD_COLS = ("household_id", "hazard_id", "head", "members", "phone")


def _upsert_sql(table: str, cols: Sequence[str]) -> str:
    key, rest = cols[0], cols[1:]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
    old = ", ".join(f"{table}.{c}" for c in rest)
    new = ", ".join(f"EXCLUDED.{c}" for c in rest)
    return (f"INSERT INTO {table} ({', '.join(cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now() "
            f"WHERE ({old}) IS DISTINCT FROM ({new}) "
            "RETURNING (xmax = 0) AS inserted")


def _person_json(p: Person) -> dict[str, Any]:
    return {"name": p.name, "phone": p.phone}


def _row(record: Record) -> tuple[Any, ...]:
    if isinstance(record, HazardPoint):
        b = record.geometry.bounds
        return (record.hazard_id, record.name, record.hazard_type, record.scale,
                record.county_code, Jsonb(geometry.to_geojson(record.geometry)),
                b[0], b[1], b[2], b[3], record.households, record.people,
                record.property_10k_yuan,
                record.responsible.name if record.responsible else None,
                record.responsible.phone if record.responsible else None,
                Jsonb([_person_json(m) for m in record.monitors]), record.status,
                record.cancelled_at, record.cancel_level, record.cancel_approved_by,
                record.cancel_document)
    if isinstance(record, Shelter):
        return (record.shelter_id, record.name, record.lon, record.lat, record.capacity,
                record.occupancy, record.contact.name if record.contact else None,
                record.contact.phone if record.contact else None)
    return (record.household_id, record.hazard_id, record.head, record.members, record.phone)


def import_records(conn: psycopg.Connection, kind: str,
                   parsed: ParseResult[Record]) -> ImportReport:
    """Upsert the good records of one file in one transaction."""
    table, cols = {"hazards": ("hazard_points", _HAZARD_COLS),
                   "shelters": ("shelters", _SHELTER_COLS),
                   "households": ("households", _HOUSEHOLD_COLS)}[kind]
    errors = list(parsed.errors)
    good = list(zip(parsed.records, parsed.places or [""] * len(parsed.records), strict=True))
    sql = _upsert_sql(table, cols)
    inserted = updated = 0
    with conn.transaction():
        if kind == "households":
            good = _known_hazards(conn, good, errors)
        for record, _ in good:
            row = conn.execute(sql, _row(record)).fetchone()
            if row is None:
                continue
            if row[0]:
                inserted += 1
            else:
                updated += 1
    errors.sort(key=lambda p: _place_order(p.where))
    return ImportReport(inserted, updated, len(good) - inserted - updated, tuple(errors),
                        parsed.warnings)


def _place_order(where: str) -> tuple[str, int]:
    word, _, number = where.partition(" ")
    return (word, int(number) if number.isdigit() else 0)


def _known_hazards(conn: psycopg.Connection, good: list[tuple[Record, str]],
                   errors: list[Problem]) -> list[tuple[Record, str]]:
    wanted = sorted({r.hazard_id for r, _ in good if isinstance(r, Household)})
    known = {row[0] for row in conn.execute(
        "SELECT hazard_id FROM hazard_points WHERE hazard_id = ANY(%s)", (wanted,))}
    kept = []
    for record, where in good:
        if isinstance(record, Household) and record.hazard_id not in known:
            errors.append(Problem(where, f"hazard point {record.hazard_id!r} does not exist "
                                         "(import the hazards first)"))
        else:
            kept.append((record, where))
    return kept


# --- loading --------------------------------------------------------------------------------

def _hazard(row: Sequence[Any]) -> HazardPoint:
    (hid, name, htype, scale, county, geom, households, people, prop, rname, rphone,
     monitors, status, cancelled_at, cancel_level, approved_by, document) = row
    return HazardPoint(
        hazard_id=hid, name=name, hazard_type=htype, scale=scale, county_code=county,
        geometry=geometry.from_geojson(geom), households=households, people=people,
        property_10k_yuan=prop,
        responsible=Person(rname, rphone) if rname else None,
        monitors=tuple(Person(m["name"], m.get("phone")) for m in monitors),
        status=status, cancelled_at=cancelled_at, cancel_approved_by=approved_by,
        cancel_document=document, cancel_level=cancel_level)


_HAZARD_SELECT = ("SELECT hazard_id, name, hazard_type, scale, county_code, geometry, "
                  "households, people, property_10k_yuan, responsible_name, "
                  "responsible_phone, monitors, status, cancelled_at, cancel_level, "
                  "cancel_approved_by, cancel_document FROM hazard_points")


def load_hazards(conn: psycopg.Connection, ids: Sequence[str] | None = None, *,
                 bbox: geometry.Bbox | None = None) -> list[HazardPoint]:
    """Hazard points with real phone numbers, by id and/or overlapping a lon/lat box."""
    where: list[str] = []
    params: list[Any] = []
    if ids is not None:
        where.append("hazard_id = ANY(%s)")
        params.append(list(ids))
    if bbox is not None:
        where.append("max_lon >= %s AND max_lat >= %s AND min_lon <= %s AND min_lat <= %s")
        params.extend(bbox)
    sql = _HAZARD_SELECT + (" WHERE " + " AND ".join(where) if where else "")
    rows = conn.execute(sql + " ORDER BY hazard_id", params).fetchall()
    return [_hazard(r) for r in rows]


def get_hazard(conn: psycopg.Connection, hazard_id: str) -> HazardPoint:
    found = load_hazards(conn, [hazard_id])
    if not found:
        raise NotFound(f"hazard point {hazard_id!r} does not exist")
    return found[0]


def load_shelters(conn: psycopg.Connection, *,
                  bbox: geometry.Bbox | None = None) -> list[Shelter]:
    sql = ("SELECT shelter_id, name, lon, lat, capacity, occupancy, contact_name, "
           "contact_phone FROM shelters")
    params: list[Any] = []
    if bbox is not None:
        sql += " WHERE lon BETWEEN %s AND %s AND lat BETWEEN %s AND %s"
        params = [bbox[0], bbox[2], bbox[1], bbox[3]]
    rows = conn.execute(sql + " ORDER BY shelter_id", params).fetchall()
    return [Shelter(sid, name, lon, lat, cap, occ, Person(cn, cp) if cn else None)
            for sid, name, lon, lat, cap, occ, cn, cp in rows]


def load_households(conn: psycopg.Connection,
                    hazard_id: str | None = None) -> list[Household]:
    sql = "SELECT household_id, hazard_id, head, members, phone FROM households"
    params: list[Any] = []
    if hazard_id is not None:
        sql += " WHERE hazard_id = %s"
        params = [hazard_id]
    rows = conn.execute(sql + " ORDER BY household_id", params).fetchall()
    return [Household(*r) for r in rows]


def _mask_person(p: Person | None) -> Person | None:
    return None if p is None else Person(p.name, mask_phone(p.phone))


def list_hazards(conn: psycopg.Connection, *, reveal_phones: bool = False) -> list[HazardPoint]:
    found = load_hazards(conn)
    if reveal_phones:
        return found
    return [dataclasses.replace(h, responsible=_mask_person(h.responsible),
                                monitors=tuple(Person(m.name, mask_phone(m.phone))
                                               for m in h.monitors))
            for h in found]


def list_shelters(conn: psycopg.Connection, *, reveal_phones: bool = False) -> list[Shelter]:
    found = load_shelters(conn)
    if reveal_phones:
        return found
    return [dataclasses.replace(s, contact=_mask_person(s.contact)) for s in found]


def list_households(conn: psycopg.Connection, hazard_id: str | None = None, *,
                    reveal_phones: bool = False) -> list[Household]:
    found = load_households(conn, hazard_id)
    if reveal_phones:
        return found
    return [dataclasses.replace(h, phone=mask_phone(h.phone)) for h in found]


# --- changes --------------------------------------------------------------------------------

def set_occupancy(conn: psycopg.Connection, shelter_id: str, occupancy: int) -> None:
    if occupancy < 0:
        raise InvalidInput(f"occupancy must be >= 0, got {occupancy}")
    row = conn.execute("UPDATE shelters SET occupancy = %s, updated_at = now() "
                       "WHERE shelter_id = %s RETURNING 1", (occupancy, shelter_id)).fetchone()
    if row is None:
        raise NotFound(f"shelter {shelter_id!r} does not exist")


def cancel_hazard(conn: psycopg.Connection, hazard_id: str, *, at: datetime,
                  approved_by: str, document: str | None = None,
                  approver_level: str | None = None) -> str:
    """Record 销号 of a hazard point; returns the approval level its people require.

    When the caller states the approver's level, a level below the required one is refused:
    a county may not cancel a point threatening 100 people.
    """
    if at.tzinfo is None:
        raise InvalidInput("cancellation time needs a UTC offset")
    if not approved_by.strip():
        raise InvalidInput("approved_by must name the approving authority")
    with conn.transaction():
        row = conn.execute("SELECT people, status FROM hazard_points WHERE hazard_id = %s "
                           "FOR UPDATE", (hazard_id,)).fetchone()
        if row is None:
            raise NotFound(f"hazard point {hazard_id!r} does not exist")
        people, status = row
        if status == "cancelled":
            raise InvalidInput(f"hazard point {hazard_id!r} is already cancelled")
        level = cancellation_level(people)
        if approver_level is not None:
            if approver_level not in APPROVAL_RANK:
                raise InvalidInput(f"approver level {approver_level!r} is not one of "
                                   f"{', '.join(APPROVAL_RANK)}")
            if APPROVAL_RANK[approver_level] < APPROVAL_RANK[level]:
                raise InvalidInput(
                    f"hazard point {hazard_id!r} threatens {people} people: cancelling it "
                    f"needs {level}-level approval, not {approver_level}")
        conn.execute(
            "UPDATE hazard_points SET status = 'cancelled', cancelled_at = %s, "
            "cancel_level = %s, cancel_approved_by = %s, cancel_document = %s, "
            "updated_at = now() WHERE hazard_id = %s",
            (at, level, approved_by.strip(), document, hazard_id))
    return level


# --- spatial queries ------------------------------------------------------------------------

def nearest_shelters(conn: psycopg.Connection, hazard_id: str, *,
                     max_distance_m: float = 10_000.0,
                     min_free: int = 1) -> list[RankedShelter]:
    hazard = get_hazard(conn, hazard_id)
    box = geometry.widen(hazard.geometry.bounds, max_distance_m).bounds
    shelters = load_shelters(conn, bbox=(box[0], box[1], box[2], box[3]))
    return geometry.rank_shelters(
        hazard.geometry, [(s.shelter_id, s.lon, s.lat, s.free) for s in shelters],
        max_distance_m=max_distance_m, min_free=min_free)


def match_devices(conn: psycopg.Connection, within_m: float) -> dict[str, AreaMatch | None]:
    """Each located device: the hazard point it sits in, or the nearest within `within_m`."""
    devices = [(d, lon, lat) for d, lon, lat in conn.execute(
        "SELECT device_id, lon, lat FROM devices WHERE lon IS NOT NULL "
        "AND status <> 'retired' ORDER BY device_id")]
    areas = [(h.hazard_id, h.geometry) for h in load_hazards(conn)
             if h.status != "cancelled"]
    return geometry.match_points_to_areas(devices, areas, within_m)


def apply_device_matches(conn: psycopg.Connection,
                         matches: dict[str, AreaMatch | None]) -> int:
    """Set devices.hazard_id where it is still empty; an operator's choice is never
    overwritten. Returns how many devices were assigned."""
    assigned = 0
    with conn.transaction():
        for device_id, match in matches.items():
            if match is None:
                continue
            cur = conn.execute("UPDATE devices SET hazard_id = %s, updated_at = now() "
                               "WHERE device_id = %s AND hazard_id IS NULL",
                               (match.area_id, device_id))
            assigned += cur.rowcount
    return assigned


def hazards_covered(conn: psycopg.Connection, *, county_codes: Sequence[str] = (),
                    polygon: Any = None) -> list[str]:
    """Hazard points a warning area covers: by administrative code and/or polygon."""
    found: set[str] = set()
    if county_codes:
        rows = conn.execute("SELECT hazard_id, county_code FROM hazard_points").fetchall()
        found |= {hid for hid, county in rows
                  if any(geometry.code_covers(c, county) for c in county_codes)}
    if polygon is not None:
        b = polygon.bounds
        candidates = load_hazards(conn, bbox=(b[0], b[1], b[2], b[3]))
        found |= set(geometry.areas_intersecting(
            [(h.hazard_id, h.geometry) for h in candidates], polygon))
    return sorted(found)
