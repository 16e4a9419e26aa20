"""Late readings through the real database: a logger's buffered backlog stored after its
live reports resumed, with data times behind the engine's watermark, is fetched by arrival
(alerts/engine/data.py load_late) and judged at the step that receives it, whether the
step is notified, searches every channel, or is the first after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from alerts.engine import arrival
from alerts.engine import data as engine_data
from alerts.engine.rule_params import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H
from alerts.engine.rules import resolve
from alerts.engine.service import Engine
from alerts.engine.tick import EngineState, build_setup
from alerts.methods.levels import classify
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

START = datetime(2024, 7, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
OUT = range(60, 84)  # a 2 h outage; live reports resume at sample 84
RESUME = 84


def _rain() -> np.ndarray:
    i = np.arange(RESUME + 1)
    rain = 0.2 + 0.1 * (i % 3)  # light rain, never the same three times running
    rain[OUT.start:OUT.stop] = 4.0 + 0.4 * (-1.0) ** np.arange(len(OUT))  # 96 mm in 2 h
    return rain


def _hand_level(rain: np.ndarray, at: int) -> int:
    """The raise level at sample `at` from the default table over every sample."""
    t = np.arange(rain.size) * STEP.total_seconds()
    level = 0
    for w, row in zip(RAIN_WINDOWS_H, DEFAULT_RAIN_TABLE, strict=True):
        inwin = (t > t[at] - w * 3600.0) & (t <= t[at])
        tot = np.array([round(float(rain[inwin].sum()), 6)])
        level = max(level, int(classify(tot, np.asarray(row, float))[0]))
    return level


def _write(conn: psycopg.Connection, cid: int, rain: np.ndarray, which: range | list[int]
           ) -> None:
    write_readings(conn, [(cid, START + i * STEP, float(rain[i]), 0) for i in which])


def _rain_events(conn: psycopg.Connection, target: str = "HP1"
                 ) -> list[tuple[int, datetime]]:
    return conn.execute(
        "SELECT e.level, e.data_time FROM alert_events e JOIN alerts a USING (alert_id) "
        "WHERE a.hazard_kind = 'rainfall' AND a.target_id = %s ORDER BY e.data_time, e.level",
        (target,)).fetchall()


def _gauge(conn: psycopg.Connection, device: str, hazard: str) -> int:
    add_device(conn, DeviceSpec(device, kind="rain_gauge", hazard_id=hazard,
                                reporting_interval_s=300))
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s AND "
                       "channel = 'rain'", (device,)).fetchone()
    assert row is not None
    cid: int = row[0]
    return cid


@pytest.mark.parametrize("how", ["notified", "search", "restart"])
def test_a_backlog_stored_after_live_reports_raises_its_level(
        db_url: str, conn: psycopg.Connection, how: str) -> None:
    add_device(conn, DeviceSpec("RAIN-1", kind="rain_gauge", hazard_id="HP1",
                                reporting_interval_s=300))
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'RAIN-1' AND "
                       "channel = 'rain'").fetchone()
    assert row is not None
    cid = row[0]
    rain = _rain()
    expected = _hand_level(rain, RESUME)
    assert expected == 2 and _hand_level(np.where(np.isin(np.arange(rain.size), OUT), 0.0,
                                                  rain), RESUME) == 0
    engine = Engine(db_url)
    try:
        for i in [*range(OUT.start), RESUME]:  # live, then the first report after it
            _write(conn, cid, rain, [i])
            engine.step(now=(START + i * STEP).timestamp(), channel_ids={cid})
        assert _rain_events(conn) == []  # the outage's rain is not known yet
        _write(conn, cid, rain, [*OUT, RESUME])  # the buffer, the current report again
        now = (START + RESUME * STEP + timedelta(seconds=30)).timestamp()
        if how == "restart":
            engine.close()
            engine = Engine(db_url)
        engine.step(now=now, channel_ids={cid} if how == "notified" else None)
        assert _rain_events(conn) == [(expected, START + RESUME * STEP)]
        # Judged once: the next steps find nothing new in it, the resent report counts once.
        engine.step(now=now + 60.0, channel_ids=None)
        assert _rain_events(conn) == [(expected, START + RESUME * STEP)]
        acc = conn.execute(
            "SELECT e.evidence FROM alert_events e JOIN alerts a USING (alert_id) "
            "WHERE a.target_id = 'HP1'").fetchone()
        assert acc is not None
        got = acc[0]["channels"][0]["accumulations_mm"]
        assert got["3h"] == pytest.approx(float(rain[RESUME - 35:RESUME + 1].sum()), abs=1e-6)
    finally:
        engine.close()


def test_a_late_reading_a_writer_commits_after_the_step_read_is_seen_from_the_mark(
        db_url: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The arrival mark (alerts/engine/arrival.py) is taken safely: a writer whose
    transaction began before the step (its readings stamped with that start) and commits
    after the step read them is seen by the next look from the mark; a reading stored
    well before the mark, seen already, is not fetched again; an open session does not
    hold the mark back further than ARRIVAL_OVERLAP_S."""
    cid = _gauge(conn, "RAIN-1", "HP1")
    rain = _rain()
    _write(conn, cid, rain, range(RESUME + 1))
    conn.execute("UPDATE readings SET ingested_at = now() - interval '1 hour'")
    seen = START + 10 * STEP  # stored 40 s before the step, behind the watermark
    conn.execute("UPDATE readings SET ingested_at = now() - interval '40 seconds' "
                 "WHERE channel_id = %s AND ts = %s", (cid, seen))
    channels = engine_data.load_channels(conn)
    setup = build_setup(channels, resolve(channels, {}))
    state = EngineState.initial(setup)
    state.watermark[setup.index[cid]] = (START + RESUME * STEP).timestamp()
    behind = START + OUT.start * STEP
    conn.execute("DELETE FROM readings WHERE channel_id = %s AND ts = %s", (cid, behind))
    with psycopg.connect(db_url) as writer:  # a transaction left open
        row = writer.execute("SELECT now()").fetchone()  # begins it
        assert row is not None
        writer_start = row[0]
        _write(writer, cid, rain, [OUT.start])
        with conn.transaction():  # the step
            mark = arrival.take(conn)
            assert mark <= writer_start
            late = engine_data.load_late(conn, setup, state, mark - timedelta(hours=1))
        assert behind.timestamp() not in late.t.tolist()  # not committed yet
        assert seen.timestamp() in late.t.tolist()
        # An open session holds the mark back at most ARRIVAL_OVERLAP_S.
        monkeypatch.setattr(arrival, "ARRIVAL_OVERLAP_S", 0.0)
        assert arrival.take(conn) > writer_start
        monkeypatch.undo()
        writer.commit()
    marks = arrival.ArrivalMarks.looked_at_all(setup, mark).at
    again = engine_data.load_late(conn, setup, state, marks)
    assert again.t.tolist() == [behind.timestamp()]


def test_a_restart_looks_from_the_oldest_mark_a_notified_step_left(
        db_url: str, conn: psycopg.Connection) -> None:
    """Nothing is lost on restart: a backlog of gauge B arrives without a notification
    (a writer that does not notify); the next steps are notified for gauge A only, so
    B's arrival mark stays behind A's. The oldest mark is what is saved (not the last
    step's time), and the restarted engine looks at every channel from it: B's backlog is
    judged at the first step after the restart."""
    a, b = _gauge(conn, "RAIN-1", "HP1"), _gauge(conn, "RAIN-2", "HP2")
    rain = _rain()
    expected = _hand_level(rain, RESUME)
    engine = Engine(db_url)
    try:
        for i in [*range(OUT.start), RESUME]:
            _write(conn, a, rain, [i])
            _write(conn, b, rain, [i])
            engine.step(now=(START + i * STEP).timestamp(), channel_ids={a, b})
        _write(conn, b, rain, [*OUT])  # the buffer, not notified
        _write(conn, a, np.r_[rain, 0.2], [RESUME + 1])
        now = (START + (RESUME + 1) * STEP).timestamp()
        engine.step(now=now, channel_ids={a})
        ia, ib = engine.setup.index[a], engine.setup.index[b]
        assert engine.arrivals.at[ib] < engine.arrivals.at[ia]
        # Saved: the oldest mark (the gauges' other channels, never notified, hold the
        # first load's), at or before B's.
        saved = arrival.restored(conn, engine.config.name)
        assert saved is not None and saved.timestamp() == pytest.approx(
            engine.arrivals.oldest(), abs=1e-6)
        assert saved.timestamp() <= engine.arrivals.at[ib]
        assert _rain_events(conn, "HP2") == []  # B not looked at
        engine.close()
        engine = Engine(db_url)
        engine.step(now=now + 60.0, channel_ids={a})
        assert _rain_events(conn, "HP2") == [(expected, START + RESUME * STEP)]
    finally:
        engine.close()
