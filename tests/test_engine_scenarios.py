"""Hazard scenarios through the real path: simulator → Mosquitto → ingest gateway →
PostgreSQL → `geowarn engine` service (data clock, woken by the gateway's NOTIFY) → alerts.

Each test registers the example hazard points (gis/examples/hazards.geojson), scenario
devices and a quiet decoy device on another hazard point, publishes the scenario, and checks
the alerts against numbers computed here from the scenario's own truth (accumulation
crossings of the default county table, the slope's failure time, the hydrograph's stage
crossings, the GB 3838 class V limit) and that each alert lands on the right target."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from alerts.engine.rule_params import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H
from alerts.engine.service import Engine, EngineConfig, Service
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main as geowarn_main
from gis import geojson_io
from gis.store import apply_device_matches, import_records, match_devices
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.scenarios import (
    Track,
    accelerating_creep,
    flood_stage,
    messages,
    quiet_track,
    typhoon_rain,
    water_quality_spill,
)
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count

EXAMPLES = Path(__file__).resolve().parents[1] / "gis" / "examples"
# Whole hours, days in the past: inside the gateway's backlog window, never in the future.
START = (datetime.now(UTC) - timedelta(days=12)).replace(minute=0, second=0, microsecond=0)
LANDSLIDE, CLIFF, GULLY, FISSURE = "SYN-LS-001", "SYN-CL-002", "SYN-DF-003", "SYN-GF-004"
INSIDE = {LANDSLIDE: (120.053, 28.653), CLIFF: (120.071, 28.6607)}  # lon, lat in polygons


@dataclass(frozen=True)
class Event:
    target_type: str
    target_id: str
    hazard_kind: str
    kind: str
    level: int
    data_time: datetime
    evidence: dict[str, Any]


def load_hazards(conn: psycopg.Connection) -> None:
    parsed = geojson_io.read((EXAMPLES / "hazards.geojson").read_text(), "hazards")
    report = import_records(conn, "hazards", parsed)
    assert not report.errors and report.inserted >= 4


def register(conn: psycopg.Connection, track: Track, **where: Any) -> None:
    add_device(conn, DeviceSpec(track.device_id, kind=track.kind,
                                reporting_interval_s=int(track.step_s), **where))


def events(conn: psycopg.Connection) -> list[Event]:
    rows = conn.execute(
        "SELECT a.target_type, a.target_id, a.hazard_kind, e.kind, e.level, e.data_time, "
        "e.evidence FROM alert_events e JOIN alerts a USING (alert_id) "
        "ORDER BY e.data_time, e.event_id").fetchall()
    return [Event(*r) for r in rows]


@dataclass
class RunningEngine:
    service: Service
    stop: threading.Event
    thread: threading.Thread

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "engine service did not stop"


ENGINE = EngineConfig(name="engine", clock="data", period_s=5.0)


@pytest.fixture
def engine_service(db_url: str) -> Iterator[Callable[[], RunningEngine]]:
    started: list[RunningEngine] = []

    def _start() -> RunningEngine:
        service, stop = Service(db_url, ENGINE), threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        assert service.leading.wait(20), "engine did not become the leader"
        running = RunningEngine(service, stop, thread)
        started.append(running)
        return running

    yield _start
    for r in started:
        r.shutdown()


def publish(broker: Broker, tracks: Sequence[Track]) -> tuple[int, float]:
    """Publish every track; returns the readings expected and the newest data time (s)."""
    pub = Publisher("127.0.0.1", broker.port, inflight=200)
    count, newest = 0, -math.inf
    try:
        for msg in messages(tracks):
            pub.publish(msg.topic, msg.payload)
            count += len(msg.expected)
            newest = max(newest, max(e[2].timestamp() for e in msg.expected))
        assert pub.wait_acked(60)
    finally:
        pub.close()
    return count, newest


def wait_processed(db_url: str, count: int, newest: float) -> None:
    got = wait_for_count(db_url, "SELECT count(*) FROM readings", count, timeout=120)
    assert got == count, f"{got} of {count} readings stored"
    clock = wait_for_count(
        db_url, "SELECT count(*) FROM engine_state WHERE engine = %s AND clock >= %s", 1,
        timeout=60, params=(ENGINE.name, newest))
    assert clock == 1, "the engine never caught up with the newest reading"


def run_live(db_url: str, broker: Broker, start_gateway: Callable[..., Gateway],
             engine_service: Callable[[], RunningEngine], tracks: Sequence[Track]) -> None:
    start_gateway(broker)
    running = engine_service()
    count, newest = publish(broker, tracks)
    wait_processed(db_url, count, newest)
    running.shutdown()
    # The service judged everything it was told about: a fresh engine finds nothing left.
    engine = Engine(db_url, ENGINE)
    try:
        assert engine.step() == []
    finally:
        engine.close()


def first_time(ev: Sequence[Event], kind: str, level: int) -> datetime | None:
    return next((e.data_time for e in ev if e.hazard_kind == kind and e.level >= level), None)


def rain_crossings(track: Track) -> dict[int, datetime]:
    """First data time each level of the default county table is reached, by hand: integer
    tenths of a millimetre summed over the trailing (t − w, t] windows."""
    tenths = np.rint(track.values["rain"] * 10).astype(np.int64)
    cum = np.r_[0, np.cumsum(tenths)]
    per_hour = round(3600 / track.step_s)
    out: dict[int, datetime] = {}
    for i in range(track.n):
        for w, row in zip(RAIN_WINDOWS_H, DEFAULT_RAIN_TABLE, strict=True):
            acc = cum[i + 1] - cum[max(0, i + 1 - int(w * per_hour))]
            for lv, thr in enumerate(row, start=1):
                if not math.isnan(thr) and acc >= round(thr * 10):
                    out.setdefault(lv, track.time(i))
    return out


def test_typhoon_rainstorm_raises_yellow_then_orange_on_time(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway],
        engine_service: Callable[[], RunningEngine]) -> None:
    load_hazards(conn)
    storm = Track("RAIN-TY", "rain_gauge", START, 300.0,
                  typhoon_rain(576, 300.0, peak_index=300, peak_mm_h=32.0, width_h=2.0,
                               seed=1))
    decoy = quiet_track("RAIN-QUIET", "rain_gauge", START, 2.0, seed=5)
    register(conn, storm, hazard_id=GULLY)
    register(conn, decoy, hazard_id=FISSURE)
    due = rain_crossings(storm)
    assert 2 in due and 3 in due and 4 not in due  # the scenario is what the test says
    run_live(db_url, broker, start_gateway, engine_service, [storm, decoy])

    ev = events(conn)
    assert {(e.target_type, e.target_id) for e in ev} == {("hazard", GULLY)}
    rain = [e for e in ev if e.hazard_kind == "rainfall"]
    assert first_time(rain, "rainfall", 1) == due[1]
    assert first_time(rain, "rainfall", 2) == due[2]
    assert first_time(rain, "rainfall", 3) == due[3]
    assert max(e.level for e in rain) == 3
    yellow = next(e for e in rain if e.level == 2)
    ch = yellow.evidence["channels"][0]
    assert ch["device_id"] == "RAIN-TY" and ch["thresholds_mm"]["1h"] == [35, 45, 60, 80]


def test_accelerating_landslide_reaches_red_with_a_forecast_failure_time(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway],
        engine_service: Callable[[], RunningEngine]) -> None:
    load_hazards(conn)
    step, days = 1800.0, 8.0
    creep = accelerating_creep(int(days * 86400 / step), step, v0_mm_per_day=1.0,
                               onset_s=3 * 86400.0, failure_s=days * 86400.0,
                               noise_mm=0.02, quantum_mm=0.01, seed=3)
    slope = Track("CRACK-LS", "crack_meter", START, step, {"opening": 12.0 + creep.displacement})
    decoy = quiet_track("CRACK-QUIET", "crack_meter", START, days, step_s=step, seed=6)
    # Neither crack meter is assigned by id: GIS matching puts each on the hazard point it
    # sits in.
    register(conn, slope, lon=INSIDE[LANDSLIDE][0], lat=INSIDE[LANDSLIDE][1])
    register(conn, decoy, lon=INSIDE[CLIFF][0], lat=INSIDE[CLIFF][1])
    matches = match_devices(conn, within_m=50.0)
    assert apply_device_matches(conn, matches) == 2
    run_live(db_url, broker, start_gateway, engine_service, [slope, decoy])

    ev = events(conn)
    assert {(e.target_type, e.target_id) for e in ev} == {("hazard", LANDSLIDE)}
    red = next(e for e in ev if e.hazard_kind == "deformation" and e.level == 4)
    fail_at = START + timedelta(seconds=creep.failure_s)
    assert START + timedelta(seconds=creep.onset_s) < red.data_time < fail_at
    ch = red.evidence["channels"][0]
    assert ch["device_id"] == "CRACK-LS" and ch["accelerating"] is True
    # Red by the rule the evidence names: the tangent angle at/above its red threshold, or a
    # forecast failure within the red lead time.
    assert ch["rule"] in ("tangent_angle", "forecast")
    if ch["rule"] == "tangent_angle":
        assert ch["tangent_angle_deg"] >= ch["threshold"]["red"] == 85.0
    fc = ch["forecast"]
    forecast, lower, upper, issued = (datetime.fromisoformat(fc[k].replace("Z", "+00:00"))
                                      for k in ("time", "lower", "upper", "issued_at"))
    remaining = (fail_at - red.data_time).total_seconds()
    # Within 10 % of the time left, and the band is ordered around the forecast.
    assert abs((forecast - fail_at).total_seconds()) <= 0.10 * remaining, (forecast, fail_at)
    assert lower <= forecast <= upper and issued <= red.data_time
    assert "failure forecast" in ch["summary_en"] and "预报破坏时间" in ch["summary_zh"]
    # No forecast was shown during the steady creep before the onset.
    steady = [e for e in ev if e.data_time < START + timedelta(seconds=creep.onset_s)]
    assert steady == []


def test_flood_hydrograph_crosses_warning_then_guaranteed_level(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway],
        engine_service: Callable[[], RunningEngine]) -> None:
    load_hazards(conn)
    stage = flood_stage(576, 300.0, base_m=12.0, peak_m=17.2, rise_start=150,
                        peak_index=330, noise_m=0.004, seed=4)
    river = Track("WL-FLOOD", "water_level", START, 300.0, {"level": stage})
    decoy = quiet_track("WL-QUIET", "water_level", START, 2.0, seed=7)
    register(conn, river, site_id="RIVER-F")
    register(conn, decoy, site_id="RIVER-Q")
    stages = {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2}
    assert geowarn_main(["engine", "rules-set", "site", "RIVER-F", json.dumps(stages)]) == 0
    assert geowarn_main(["engine", "rules-set", "site", "RIVER-Q", json.dumps(stages)]) == 0
    run_live(db_url, broker, start_gateway, engine_service, [river, decoy])

    ev = events(conn)
    assert {(e.target_type, e.target_id) for e in ev} == {("site", "RIVER-F")}

    def crossing(h: float) -> datetime:
        return river.time(int(np.argmax(stage >= h)))

    assert first_time(ev, "water_level", 1) == crossing(15.0 - 0.5)  # approach margin
    assert first_time(ev, "water_level", 2) == crossing(15.0)
    assert first_time(ev, "water_level", 3) == crossing(16.5)
    assert max(e.level for e in ev) == 3
    orange = next(e for e in ev if e.level == 3)
    ch = orange.evidence["channels"][0]
    assert ch["stages_m"] == {"warning": 15.0, "guaranteed": 16.5, "historical_max": 18.2}
    assert ch["value"] >= 16.5 and ch["rise_rate_m_per_h"] > 0


def test_pollution_spill_exceeds_class_v(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway],
        engine_service: Callable[[], RunningEngine]) -> None:
    load_hazards(conn)
    n = 72
    spill = Track("WQ-SPILL", "water_quality", START, 3600.0,
                  water_quality_spill(n, arrive=30, cod_peak=120.0, nh3n_peak=6.0, seed=8))
    decoy = quiet_track("WQ-QUIET", "water_quality", START, 3.0, seed=9)
    register(conn, spill, site_id="RIVER-S")
    register(conn, decoy, site_id="RIVER-Q")
    run_live(db_url, broker, start_gateway, engine_service, [spill, decoy])

    ev = events(conn)
    assert {(e.target_type, e.target_id) for e in ev} == {("site", "RIVER-S")}
    cod = spill.values["cod"]
    over_v = int(np.argmax(cod > 40.0))  # GB 3838 class V COD limit: 40 mg/L
    raised = next(e for e in ev if e.hazard_kind == "water_quality" and e.level >= 2)
    # Persistence (2 of the last 3 samples) and the spike gate (a jump counts once the
    # trailing window confirms it) may hold the warning back a few hourly samples, no more.
    assert spill.time(over_v) <= raised.data_time <= spill.time(over_v + 3)
    sensors = {c["sensor"]: c for c in raised.evidence["channels"]}
    assert sensors["water_quality.cod"]["value"] > 40.0
    assert max(e.level for e in ev) == 3  # 3× class V: orange, not red (4×)
    assert ev[-1].level == 0  # the plume washed out and the warning cleared


def test_stage_oscillating_around_the_warning_level_gives_one_alert_not_a_storm(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway],
        engine_service: Callable[[], RunningEngine]) -> None:
    n = 288  # one day of 5-minute stages swinging ±8 cm around the 15 m warning level
    rng = np.random.default_rng(12)
    stage = np.round(15.0 + 0.08 * np.sin(np.arange(n) * 0.9) + rng.normal(0, 0.01, n), 3)
    crossings = int(np.count_nonzero(np.diff(stage >= 15.0)))
    assert crossings > 60  # the input really flaps
    river = Track("WL-FLAP", "water_level", START, 300.0, {"level": stage})
    register(conn, river, site_id="RIVER-FLAP")
    assert geowarn_main(["engine", "rules-set", "site", "RIVER-FLAP", json.dumps(
        {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2})]) == 0
    run_live(db_url, broker, start_gateway, engine_service, [river])

    ev = events(conn)
    assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
    # Raised once to yellow at the first sample at or over 15 m (perhaps via blue on the
    # approach), then held: clearing needs 14.9 m for an hour.
    assert [e.level for e in ev] in ([2], [1, 2])
    assert ev[-1].data_time == river.time(int(np.argmax(stage >= 15.0)))
