"""A small world for the console's browser tests, made by the real parts: the example GIS data
(hazard points, shelters, households), three devices registered on it, two days of readings
written to the store (a slope accelerating towards failure, a typhoon's rain, a river
cresting at the end), and one step of the real warning engine over them, which opens the
alerts: a red deformation alert on SYN-LS-001 with a Fukuzono failure forecast and its band,
an orange rainfall alert on SYN-DF-003, an orange water-level alert on RIVER-R. Device health
as the gateway records it (a silent receiver, a low battery, dead letters). Optionally the
real notifier (file channel, a driven clock) with a people directory and duty roster sends
their warnings and starts their escalations. Users: a city duty officer, a monitor assigned
to the slope, a viewer, a province admin."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from alerts.engine.service import Engine, EngineConfig
from api import users
from devices.health import record_status, touch_last_reading
from devices.messages import StatusReport
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from gis import csv_io, geojson_io, store
from ingest.deadletters import DeadLetter, write_dead_letters
from notify import people
from notify.channels.file import FileChannel
from notify.notifier import Notifier
from simulators.scenarios import Track, accelerating_creep, flood_stage, typhoon_rain

EXAMPLES = Path(__file__).resolve().parents[1] / "gis" / "examples"
PASSWORD = "correct horse battery"
SLOPE, GULLY = "SYN-LS-001", "SYN-DF-003"
USERS = {  # username: (role, counties, assigned hazard points)
    "duty.lishui": ("duty_officer", ["331100"], []),
    "monitor.jinyun": ("monitor", ["331122"], [SLOPE]),
    "viewer.lishui": ("viewer", ["331100"], []),
    "admin.zj": ("admin", ["330000"], []),  # the province: also sees RIVER-R (no county)
}


class Clock:
    """The notifier's clock, moved by the test (escalations are due on it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    start: datetime
    red_alert: int  # the slope's deformation alert, red by the forecast rule
    rain_alert: int
    forecast: dict[str, str]  # the red alert's forecast evidence (time, lower, upper)
    notifier: Notifier | None = None
    clock: Clock = field(default_factory=lambda: Clock(datetime.now(UTC)))

    def notify(self) -> None:
        """Run the notifier until it has nothing left to do at the clock's time."""
        assert self.notifier is not None
        while self.notifier.step():
            pass

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()


def directory(conn: psycopg.Connection, now: datetime) -> None:
    """Officers of the slope's township, county and city, on duty around now."""
    county = "331122"
    people.import_people(conn, [
        people.Contact("town-1", "乡镇值班员", "+8613500000001", "zh", ("township_officer",),
                       county + "101"),
        people.Contact("county-1", "县值班员", "+8613500000002", "zh", ("county_officer",),
                       county),
        people.Contact("city-1", "市值班员", "+8613500000003", "zh", ("city_officer",),
                       "331100")])
    start, end = now - timedelta(days=3), now + timedelta(days=30)
    people.import_roster(conn, [
        people.DutyShift("township_officer", county + "101", "town-1", start, end),
        people.DutyShift("county_officer", county, "county-1", start, end),
        people.DutyShift("city_officer", "331100", "city-1", start, end)])


def tracks(start: datetime) -> list[Track]:
    """Two days: creep at 2 mm/day turning tertiary at 0.6 d with failure due at 2 d (the
    scenario of tests/test_engine_restart.py), a typhoon's rain, a flood wave cresting at the
    end (so its alert is not resolved after six quiet hours)."""
    creep = accelerating_creep(288, 600.0, v0_mm_per_day=2.0, onset_s=0.6 * 86400,
                               failure_s=2 * 86400.0, noise_mm=0.02, quantum_mm=0.01, seed=3)
    return [
        Track("RAIN-R", "rain_gauge", start, 300.0,
              typhoon_rain(576, 300.0, peak_index=300, peak_mm_h=32.0, width_h=2.0, seed=1)),
        Track("CRACK-R", "crack_meter", start, 600.0, {"opening": 5.0 + creep.displacement}),
        Track("WL-R", "water_level", start, 300.0,
              # The flood crests in the last hours: its alert is still up at the end.
              {"level": flood_stage(576, 300.0, base_m=12.0, peak_m=17.2, rise_start=380,
                                    peak_index=560, noise_m=0.004, seed=4)}),
    ]


def import_examples(conn: psycopg.Connection) -> None:
    for name, kind in (("hazards.geojson", "hazards"), ("hazards.csv", "hazards"),
                       ("shelters.geojson", "shelters"), ("households.csv", "households")):
        text = (EXAMPLES / name).read_text(encoding="utf-8-sig")
        parsed = csv_io.read(text, kind) if name.endswith(".csv") else geojson_io.read(text, kind)
        report = store.import_records(conn, kind, parsed)
        assert not report.errors, report.errors


def device_health(conn: psycopg.Connection, last: dict[str, datetime], now: datetime) -> None:
    """What the gateway records, through its own functions: the devices' last readings, a
    rain gauge's status with a low battery, two messages of the crack meter refused (dead
    letters), and a GNSS receiver registered on the cliff that never reported (silent)."""
    touch_last_reading(conn, last)
    record_status(conn, StatusReport("RAIN-R", now - timedelta(minutes=20), battery_pct=12.0,
                                     battery_v=3.4, signal_dbm=-97.0))
    write_dead_letters(conn, [
        DeadLetter("geowarn/v1/CRACK-R/data", "out_of_range", f"opening: {v} mm is outside "
                   "the sensor's range", b'{"opening": ' + str(v).encode() + b"}",
                   now - timedelta(hours=h), device_id="CRACK-R", channel="opening")
        for h, v in ((5, 950.0), (2, -400.0))])
    add_device(conn, DeviceSpec("GNSS-S", kind="gnss", reporting_interval_s=600,
                                hazard_id="SYN-CL-002", lon=120.071, lat=28.6607))


def build(conn: psycopg.Connection, db_url: str, now: datetime | None = None, *,
          messages: Path | None = None) -> World:
    """`conn` autocommit on the test database; the engine connects by `db_url`. With
    `messages` (a file), the notifier sends the warnings there and starts escalations."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    import_examples(conn)
    add_device(conn, DeviceSpec("RAIN-R", kind="rain_gauge", reporting_interval_s=300,
                                hazard_id=GULLY, lon=119.502, lat=28.0515))
    add_device(conn, DeviceSpec("CRACK-R", kind="crack_meter", reporting_interval_s=600,
                                hazard_id=SLOPE, lon=120.053, lat=28.653))
    add_device(conn, DeviceSpec("WL-R", kind="water_level", reporting_interval_s=300,
                                site_id="RIVER-R"))
    rules = {("site", "RIVER-R"): {"warning_m": 15.0, "guaranteed_m": 16.5,
                                   "historical_max_m": 18.2},
             # Two days of record are too short for a baseline and a weekly scale: the
             # engineer sets the slope's reference creep rate (as in test_engine_restart).
             ("hazard", SLOPE): {"reference_rate_mm_per_day": 2.0, "accel_min_pairs": 1}}
    for (scope, scope_id), params in rules.items():
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES (%s, %s, %s)",
                     (scope, scope_id, json.dumps(params)))
    ids = {(d, ch): cid for d, ch, cid in conn.execute(
        "SELECT device_id, channel, channel_id FROM channels")}
    rows = [(ids[(tr.device_id, ch)], tr.time(i), float(v[i]), 0)
            for tr in tracks(start) for ch, v in tr.values.items() for i in range(tr.n)]
    write_readings(conn, rows)
    engine = Engine(db_url, EngineConfig(name="console-test", clock="data"))
    try:
        engine.step()
    finally:
        engine.close()
    device_health(conn, {tr.device_id: tr.time(tr.n - 1) for tr in tracks(start)}, now)
    for name, (role, counties, hazards) in USERS.items():
        users.add_user(conn, name, PASSWORD, role, counties, hazard_ids=hazards)
    red = conn.execute("SELECT alert_id FROM alerts WHERE target_id = %s AND hazard_kind = "
                       "'deformation' AND level = 4", (SLOPE,)).fetchone()
    rain = conn.execute("SELECT alert_id FROM alerts WHERE target_id = %s AND hazard_kind = "
                        "'rainfall'", (GULLY,)).fetchone()
    assert red is not None and rain is not None, "the engine did not raise the expected alerts"
    ev = conn.execute("SELECT evidence FROM alert_events WHERE alert_id = %s AND level = 4 "
                      "ORDER BY event_id DESC LIMIT 1", red).fetchone()
    assert ev is not None
    forecast = next(ch["forecast"] for ch in ev[0]["channels"] if "forecast" in ch)
    # The notifier's clock starts after the engine wrote its outbox rows (due from then).
    world = World(start, int(red[0]), int(rain[0]), forecast, clock=Clock(datetime.now(UTC)))
    if messages is not None:
        directory(conn, now)
        channel = FileChannel(messages)
        world.notifier = Notifier(db_url, {"sms": channel, "voice": channel, "file": channel},
                                  clock=world.clock)
        world.notify()
    return world
