"""Restart: a `geowarn engine` process killed with SIGKILL in the middle of a storm, a slope
accelerating and a flood rising, then started again, gives the same alerts (same events, same
data times, same evidence) as an engine that never died, and no duplicates.

The path is the real one: simulator → Mosquitto → ingest gateway → PostgreSQL → the engine as
a subprocess (data clock, woken by NOTIFY). The reference is the same stored data judged by a
fresh engine in one catch-up step, which the rounds of alerts.engine.tick make equal to living
through it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from geowarn.cli import main as geowarn_main
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.scenarios import (
    Track,
    accelerating_creep,
    flood_stage,
    messages,
    typhoon_rain,
)
from tests.fixtures.broker import Broker
from tests.fixtures.engine_reference import all_events, assert_decided_once, rejudged
from tests.fixtures.gateway import ServiceProcess, wait_for_count
from tests.test_engine_scenarios import GULLY, INSIDE, LANDSLIDE, START, load_hazards, register

QUIET_HOURS = 1000.0  # no auto-resolve inside the scenario: its timing follows the wall clock


def scenario() -> list[Track]:
    creep = accelerating_creep(288, 600.0, v0_mm_per_day=2.0, onset_s=0.6 * 86400,
                               failure_s=2 * 86400.0, noise_mm=0.02, quantum_mm=0.01, seed=3)
    return [
        Track("RAIN-R", "rain_gauge", START, 300.0,
              typhoon_rain(576, 300.0, peak_index=300, peak_mm_h=32.0, width_h=2.0, seed=1)),
        Track("CRACK-R", "crack_meter", START, 600.0, {"opening": 5.0 + creep.displacement}),
        Track("WL-R", "water_level", START, 300.0,
              {"level": flood_stage(576, 300.0, base_m=12.0, peak_m=17.2, rise_start=150,
                                    peak_index=330, noise_m=0.004, seed=4)}),
    ]


@pytest.fixture
def engine_process(db_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    ep = ServiceProcess(
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url},
        log_path=tmp_path / "engine.log",
        args=("engine", "--clock", "data", "--period", "1", "--quiet-hours", str(QUIET_HOURS)))
    yield ep
    ep.stop()


def caught_up(db_url: str, newest: float) -> int:
    return wait_for_count(db_url, "SELECT count(*) FROM engine_state WHERE clock >= %s", 1,
                          timeout=90, params=(newest,))


@pytest.mark.slow
def test_sigkill_mid_scenario_and_restart_give_the_same_alerts(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], engine_process: ServiceProcess) -> None:
    load_hazards(conn)
    tracks = scenario()
    register(conn, tracks[0], hazard_id=GULLY)
    register(conn, tracks[1], lon=INSIDE[LANDSLIDE][0], lat=INSIDE[LANDSLIDE][1],
             hazard_id=LANDSLIDE)
    register(conn, tracks[2], site_id="RIVER-R")
    assert geowarn_main(["engine", "rules-set", "site", "RIVER-R", json.dumps(
        {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2})]) == 0
    # Two days of record are too short for a baseline and a weekly scale: the engineer sets
    # the slope's reference creep rate and lets two scales (6 h and 1 d) establish acceleration.
    assert geowarn_main(["engine", "rules-set", "hazard", LANDSLIDE, json.dumps(
        {"reference_rate_mm_per_day": 2.0, "accel_min_pairs": 1})]) == 0
    msgs = list(messages(tracks))
    total = sum(len(m.expected) for m in msgs)
    # First part: the engine keeps up. Second: it is killed while the storm peaks and
    # messages keep arriving. Third: published while no engine runs.
    cuts = (int(len(msgs) * 0.45), int(len(msgs) * 0.55), len(msgs))
    start_gateway(broker)
    engine_process.start()
    pub = Publisher("127.0.0.1", broker.port, inflight=100)
    try:
        sent = 0
        for i, cut in enumerate(cuts):
            for m in msgs[sent:cut]:
                pub.publish(m.topic, m.payload)
            assert pub.wait_acked(60)
            stored = sum(len(m.expected) for m in msgs[:cut])
            if i == 0:
                assert wait_for_count(db_url, "SELECT count(*) FROM readings", stored) == stored
                newest = max(e[2].timestamp() for m in msgs[:cut] for e in m.expected)
                assert caught_up(db_url, newest) == 1, engine_process.log
            if i == 1:
                engine_process.kill9()  # mid-stream: ticks and commits are in flight
            sent = cut
    finally:
        pub.close()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", total) == total
    before = len(all_events(conn))
    engine_process.start()
    newest = max(e[2].timestamp() for m in msgs for e in m.expected)
    assert caught_up(db_url, newest) == 1, engine_process.log
    engine_process.stop()
    got = all_events(conn)
    assert len(got) > before  # the restarted engine had work left to do

    assert_decided_once(conn, got)
    kinds = {(r[2], r[4]) for r in got}
    assert {("rainfall", 3), ("deformation", 4), ("water_level", 3)} <= kinds

    # The reference: the same stored data judged by an engine that never died.
    assert rejudged(conn, db_url, QUIET_HOURS * 3600.0) == got
