"""Late water-level and pollution readings through the real database: a logger's buffered
backlog holding a flood peak (and an ammonia episode), stored after the live reports resumed
below every stage, is judged in data-time order at the step that receives it
(alerts/engine/late_series.py): the warning is raised and cleared at the reading times it
happened at, and the alert history equals that of an engine that received every reading in
order (replay equals live), over 20 seeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.engine.service import Engine, EngineConfig
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

START = datetime(2024, 8, 1, tzinfo=UTC)
STEP = 600.0
OUT = range(24, 66)  # a 7 h outage of both loggers after 4 h of reports
ARRIVES = OUT.stop + 3  # the backlog is stored with the third report after they resumed
SLOTS = ARRIVES + 3  # 10-minute reports
CONFIG = EngineConfig(name="engine", clock="data", quiet_s=1000 * 3600.0)
STAGES = {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.0}
HAZARD = ("water_level", "water_quality")


def _stream(seed: int) -> dict[str, np.ndarray]:
    """Values per device and 10-minute slot: a river with a flood wave inside the outage
    (peak 16.8-17.6 m, orange above 16.5 m, back below the stages before the loggers
    resume), and ammonia nitrogen (mg/L) with an episode inside it; sensor noise, one
    outlier each."""
    rng = np.random.default_rng(seed)
    k = np.arange(SLOTS, dtype=float)
    peak = rng.uniform(16.8, 17.6)
    centre = rng.uniform(OUT.start + 16.0, OUT.start + 22.0)
    river = 12.0 + (peak - 12.0) * np.exp(-0.5 * ((k - centre) / 5.0) ** 2)
    river += rng.normal(0.0, 0.01, SLOTS)
    river[int(rng.integers(5, OUT.start - 3))] += 0.8  # a spike the screen leaves out
    nh3 = 0.3 + rng.normal(0.0, 0.02, SLOTS)
    a = int(rng.integers(OUT.start + 4, OUT.stop - 20))
    nh3[a:a + int(rng.integers(5, 9))] = rng.uniform(1.6, 2.4)
    nh3[int(rng.integers(3, OUT.start - 2))] = 1.2  # one high sample: persistence needs more
    return {"WL-1": np.round(river, 2), "WQ-1": np.round(np.abs(nh3), 3)}


def _setup(conn: psycopg.Connection) -> dict[str, int]:
    add_device(conn, DeviceSpec("WL-1", kind="water_level", site_id="RIVER-1",
                                reporting_interval_s=600))
    add_device(conn, DeviceSpec("WQ-1", kind="water_quality", site_id="LAKE-1",
                                reporting_interval_s=600))
    conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES (%s, %s, %s)",
                 ("site", "RIVER-1", Jsonb(STAGES)))
    rows = conn.execute("SELECT device_id, channel_id FROM channels WHERE (device_id, channel) "
                        "IN (('WL-1', 'level'), ('WQ-1', 'nh3n'))").fetchall()
    return {str(d): int(c) for d, c in rows}


def _at(slot: int) -> datetime:
    return START + timedelta(seconds=slot * STEP + 60.0)


def _write(conn: psycopg.Connection, ids: dict[str, int], stream: dict[str, np.ndarray],
           slots: range | list[int]) -> None:
    write_readings(conn, [(ids[d], _at(i), float(v[i]), 0) for d, v in stream.items()
                          for i in slots])


def _hazard_history(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time "
        "FROM alert_events e JOIN alerts a USING (alert_id) WHERE a.hazard_kind = ANY(%s) "
        "ORDER BY e.data_time, a.target_id, a.hazard_kind, e.event_id", (list(HAZARD),)
    ).fetchall()


def _run(url: str, stream: dict[str, np.ndarray], late: bool, restart: bool = False
         ) -> list[tuple[object, ...]]:
    """`late`: the readings before the outage judged in one step (replay equals live,
    tests/test_engine_replay.py), then live from the loggers' resumption, slot by slot, the
    outage's readings stored only with the report ARRIVES (found by arrival,
    alerts/engine/data.py load_late); `restart`: the engine is restarted after they were
    stored. Else every reading stored in order and judged in one step."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = _setup(conn)
        engine = Engine(url, CONFIG)
        try:
            if not late:
                _write(conn, ids, stream, range(SLOTS))
                engine.step(now=_at(SLOTS - 1).timestamp() + 30.0, periodic=True)
                return _hazard_history(conn)
            _write(conn, ids, stream, range(OUT.start))
            engine.step(now=_at(OUT.start - 1).timestamp() + 30.0, periodic=True)
            for slot in range(OUT.stop, SLOTS):
                if slot == ARRIVES:
                    _write(conn, ids, stream, OUT)
                    if restart:
                        engine.close()
                        engine = Engine(url, CONFIG)
                _write(conn, ids, stream, [slot])
                engine.step(now=_at(slot).timestamp() + 30.0, channel_ids=set(ids.values()))
        finally:
            engine.close()
        return _hazard_history(conn)


@pytest.mark.parametrize("restart", [False, True])
def test_a_late_flood_peak_raises_and_clears_at_its_reading_times(db_url: str, restart: bool
                                                                 ) -> None:
    stream = _stream(seed=3)
    got = _run(db_url, stream, late=True, restart=restart)
    river = [e for e in got if e[1] == "water_level"]
    assert river, got
    times = {_at(i) for i in OUT}
    # Every level change lies inside the outage, at a reading's own time, not at the step
    # that received the backlog (ARRIVES) nor at the resumed reports.
    assert all(e[4] in times for e in river), river
    levels = [int(e[3]) for e in river]  # type: ignore[call-overload]
    assert max(levels) >= 3 and levels[-1] == 0, river
    first = min(i for i in OUT if stream["WL-1"][i] >= STAGES["warning_m"])
    raised = [e for e in river if int(e[3]) >= 2]  # type: ignore[call-overload]
    assert raised[0][4] <= _at(first)  # yellow at the first reading at the warning stage
    water = [e for e in got if e[1] == "water_quality"]
    assert water and all(e[4] in times for e in water) and int(water[-1][3]) == 0, water


@pytest.mark.timeout(1800)  # 40 engine runs; the shared 2-core machine is often loaded
def test_late_series_backlog_gives_the_in_order_history_20_seeds(db_url: str, second_db: str
                                                                 ) -> None:
    """Replay equals live: the history with the backlog stored late equals the one with
    every reading stored in order, for each of 20 seeds."""
    differ = []
    for seed in range(20):
        stream = _stream(seed)
        for url in (db_url, second_db):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE devices, engine_rules, engine_state, engine_state_rows, "
                             "readings, alerts, alert_events CASCADE")
        late = _run(db_url, stream, late=True)
        in_order = _run(second_db, stream, late=False)
        assert any(e[1] == "water_level" and int(e[3]) >= 3  # type: ignore[call-overload]
                   for e in in_order), in_order
        if late != in_order:
            differ.append((seed, late, in_order))
    assert not differ, differ[:1]
