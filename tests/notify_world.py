"""Test data for the notification tests: a hazard point with households, shelters, people
and a duty roster, written through the real stores (gis/, notify/people.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from shapely.geometry import Polygon

from alerts.lifecycle.queries import AlertEvent
from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from gis import store
from gis.model import HazardPoint, Household, Person, Shelter
from gis.records import ParseResult
from notify import people

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
COUNTY = "331122"
LON, LAT = 120.09, 28.68


def hazard(hid: str = "HP-1", *, name: str = "示例滑坡A", county: str = COUNTY,
           monitors: int = 1) -> HazardPoint:
    ring = Polygon([(LON, LAT), (LON + 0.002, LAT), (LON + 0.002, LAT + 0.002),
                    (LON, LAT + 0.002)])
    return HazardPoint(hid, name, "landslide", "small", county, ring, households=0, people=0,
                       responsible=Person("责任人甲", "13800000005"),
                       monitors=tuple(Person(f"监测员{i + 1}", f"1390000{i + 1:04d}")
                                      for i in range(monitors)))


def build(conn: psycopg.Connection, *, households: int = 10,
          shelters: tuple[tuple[int, int], ...] = ((300, 0),), hid: str = "HP-1",
          members: int = 3, officers: bool = True) -> HazardPoint:
    """A point, `households` households of `members` people (every 7th one of 5), shelters
    of (capacity, occupancy) at growing distance east, and officers on duty around T0."""
    hp = hazard(hid)
    store.import_records(conn, "hazards", ParseResult((hp,)))
    sh = tuple(Shelter(f"{hid}-SH{i + 1}", f"示例安置点{i + 1}", LON + 0.01 * (i + 1), LAT,
                       cap, occ, Person(f"管理员{i + 1}", f"1370000{i + 1:04d}"))
               for i, (cap, occ) in enumerate(shelters))
    store.import_records(conn, "shelters", ParseResult(sh))
    hh = tuple(Household(f"{hid}-HH{i:04d}", hid, f"户主{i}", 5 if i % 7 == 0 else members,
                         f"1360{i:07d}") for i in range(households))
    store.import_records(conn, "households", ParseResult(hh))
    if officers:
        directory = [
            people.Contact("town-1", "乡镇值班员", "+8613500000001", "zh", ("township_officer",),
                           COUNTY + "101"),
            people.Contact("county-1", "县值班员", "+8613500000002", "zh", ("county_officer",),
                           COUNTY),
            people.Contact("city-1", "City Officer", "+8613500000003", "en", ("city_officer",),
                           "331100"),
        ]
        people.import_people(conn, directory)
        # On duty from before the events' data time until after the (wall-clock) escalations.
        start, end = T0 - timedelta(days=1), datetime.now(UTC) + timedelta(days=30)
        people.import_roster(conn, [
            people.DutyShift("township_officer", COUNTY + "101", "town-1", start, end),
            people.DutyShift("county_officer", COUNTY, "county-1", start, end),
            people.DutyShift("city_officer", "331100", "city-1", start, end)])
    return hp


def change(conn: psycopg.Connection, level: Level, minutes: float = 0, *,
           hid: str = "HP-1", kind: str = "deformation",
           evidence: dict | None = None) -> list[AlertEvent]:
    return apply_changes(conn, [LevelChange("hazard", hid, kind,  # type: ignore[arg-type]
                                            level, T0 + timedelta(minutes=minutes),
                                            evidence or {})], engine="test")
