"""The demo's sample county (示例县, code 331122): four hazard points with polygons, their
monitors and responsible persons, 25 households, two shelters, three duty officers and their
roster, and the story's devices, written through the same stores an operator's imports use
(gis/, notify/people.py, devices/registry.py).

All names and numbers are invented; the files are in demo/county/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg.types.json import Jsonb

from alerts.engine.rules import validate_override
from devices.registry import DeviceSpec, add_device
from geowarn.errors import GeoWarnError
from gis import csv_io, geojson_io, store
from notify import people

COUNTY_DIR = Path(__file__).resolve().parent / "county"
COUNTY_CODE = "331122"
COUNTY_NAME = "示例县"
# (file, kind) in dependency order: households refer to hazard points.
GIS_FILES = (("hazards.geojson", "hazards"), ("shelters.geojson", "shelters"),
             ("households.csv", "households"))
ROSTER = (("township_officer", "331122101", "town-duty"),
          ("county_officer", COUNTY_CODE, "county-duty"),
          ("city_officer", "331100", "city-duty"))
# On duty from a day before the story until a month after it (acknowledgements come in
# wall-clock time, after the story).
ROSTER_MARGIN, ROSTER_AFTER = timedelta(days=1), timedelta(days=30)


class CountyError(GeoWarnError):
    """The shipped sample county was refused by the stores (a bug in demo/county/)."""


@dataclass(frozen=True)
class StoryDevice:
    device_id: str
    kind: str
    hazard_id: str
    name: str
    step_s: float  # the reporting interval the story sends at (registered as such)


# The story's devices: a rain gauge in the debris-flow gully under the typhoon, a crack meter
# on the slope that accelerates, and a quiet pair elsewhere (nothing to warn about there).
DEVICES = (
    StoryDevice("DEMO-RG-01", "rain_gauge", "DEMO-DF-02", "后坑雨量站", 600.0),
    StoryDevice("DEMO-CM-01", "crack_meter", "DEMO-LS-01", "岭头村裂缝计1号", 1800.0),
    StoryDevice("DEMO-CM-03", "crack_meter", "DEMO-CL-03", "石门裂缝计", 1800.0),
    StoryDevice("DEMO-RG-04", "rain_gauge", "DEMO-LS-04", "下湾雨量站", 3600.0),
)


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def import_county(conn: psycopg.Connection, out: TextIO, *, roster_from: datetime,
                  roster_to: datetime) -> None:
    """Hazard points, shelters, households, the people directory and a roster covering the
    story (`roster_from`..`roster_to`, data time)."""
    counts = []
    for name, kind in GIS_FILES:
        path = COUNTY_DIR / name
        text = path.read_text(encoding="utf-8")
        parsed = (csv_io.read(text, kind) if path.suffix == ".csv"
                  else geojson_io.read(text, kind))
        report = store.import_records(conn, kind, parsed)
        if report.errors:
            raise CountyError(f"{path}: refused: {report.errors[0]}")
        counts.append(f"{report.inserted + report.updated + report.unchanged} {kind}")
    contacts, problems = people.parse_people_csv(
        (COUNTY_DIR / "people.csv").read_text(encoding="utf-8"))
    if problems:
        raise CountyError(f"demo/county/people.csv: {problems[0]}")
    people.import_people(conn, contacts)
    people.import_roster(conn, [people.DutyShift(role, code, pid, roster_from, roster_to)
                                for role, code, pid in ROSTER])
    hazards = store.load_hazards(conn)
    monitors = sum(len(h.monitors) for h in hazards)
    _say(out, f"  {COUNTY_NAME} ({COUNTY_CODE}): {', '.join(counts)}, {monitors} monitors "
              f"(群测群防员), {len(contacts)} duty officers on the roster")
    for h in hazards:
        _say(out, f"    {h.hazard_id}  {h.name:<8} {h.hazard_type:<12} {h.households:>3} "
                  f"households, {h.people:>3} people")


# The county's rule: a refreshed failure forecast on the slope is sent to its officers and
# monitors every six hours at most, not hourly (the engine's default): over the days of a
# tertiary phase hourly SMS would teach people to ignore them.
RULES = (("hazard", "DEMO-LS-01", {"update_interval_s": 6 * 3600.0}),)


def set_rules(conn: psycopg.Connection, out: TextIO) -> None:
    """The county's engine rules, as `geowarn rules-set` stores them."""
    for scope, scope_id, params in RULES:
        validate_override(scope, scope_id, params)
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params, updated_by) VALUES "
                     "(%s, %s, %s, 'demo') ON CONFLICT (scope, scope_id) DO UPDATE SET "
                     "params = excluded.params, updated_at = now()",
                     (scope, scope_id, Jsonb(params)))
        _say(out, f"  rule for {scope} {scope_id}: {params} (forecast updates every 6 h at "
                  "most)")


def register_devices(conn: psycopg.Connection, devices: Sequence[StoryDevice], out: TextIO
                     ) -> None:
    """Each device inside its hazard point's polygon; the GIS matching assigns it there."""
    where = {h.hazard_id: h.geometry.representative_point() for h in store.load_hazards(conn)}
    for d in devices:
        p = where[d.hazard_id]
        add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind, name=d.name,
                                    lon=round(p.x, 6), lat=round(p.y, 6),
                                    reporting_interval_s=int(d.step_s)), actor="demo")
    matches = store.match_devices(conn, 50.0)
    store.apply_device_matches(conn, matches)
    placed = [f"{d.device_id} on {d.hazard_id}" for d in devices
              if matches.get(d.device_id) is not None]
    _say(out, f"  {len(devices)} devices registered, placed by the GIS matching: "
              + ", ".join(placed))
