"""Late readings through the real database: a logger's buffered backlog stored after its
live reports resumed, with data times behind the engine's watermark, is fetched by arrival
(alerts/engine/data.py load_late) and judged at the step that receives it, whether the
step is notified, searches every channel, or is the first after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from alerts.engine.rule_params import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H
from alerts.engine.service import Engine
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


def _rain_events(conn: psycopg.Connection) -> list[tuple[int, datetime]]:
    return conn.execute(
        "SELECT e.level, e.data_time FROM alert_events e JOIN alerts a USING (alert_id) "
        "WHERE a.hazard_kind = 'rainfall' AND a.target_id = 'HP1' ORDER BY e.data_time, e.level"
    ).fetchall()


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
