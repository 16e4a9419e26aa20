"""`geowarn replay --engine` judges in batches of data time (simulators/replay_engine.py) and
decides exactly what stepping at every reading's time decides.

One stored stream, judged twice by a data-clock engine in two databases: once stepped at every
distinct reading time (each step holds at most one sample per channel: one sample at a time,
as a live engine after each commit, periodic work at every step), once by `judge_in_batches`
in day-long steps. The stream has what batching could get wrong: a typhoon rainband (rainfall
blue to orange), a slope creeping into tertiary creep (deformation to red with a
failure forecast, refreshed hourly), and a rain gauge that falls silent for most of a day
and comes back (maintenance alert opened at the silence's data time, cleared at the return,
auto-resolved in data time). Both alert histories (target, hazard kind, event, level, data
time, and the forecast of every event) must be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from alerts.engine.service import Engine, EngineConfig
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from simulators.library import Placement, scenario
from simulators.replay_engine import boundaries, judge_in_batches
from simulators.scenarios import QuietFaults, Track, quiet_track

START = datetime(2025, 8, 1, tzinfo=UTC)
DAYS = 8
CONFIG = EngineConfig(name="replay", clock="data", quiet_s=3 * 3600.0)
SILENT = (2.5, 3.4)  # days after START during which R-SILENT sends nothing
DEVICES = (("CM-SLOPE", "crack_meter", "S-SLOPE", 1800), ("RG-STORM", "rain_gauge", "S-GULLY",
                                                        1800),
           ("R-SILENT", "rain_gauge", "S-HILL", 3600))


def _tracks() -> list[Track]:
    creep = scenario("creep").tracks([Placement("CM-SLOPE", "crack_meter")], START, 3)[0]
    typhoon = scenario("typhoon").tracks([Placement("RG-STORM", "rain_gauge")],
                                         START + timedelta(days=DAYS - 3), 5)[0]
    # The 5-minute storm on a gauge reporting every 30 minutes (each report the rain of the
    # six intervals it closes), on the slope's time grid: fewer distinct times to step at.
    five = np.nan_to_num(typhoon.values["rain"])
    storm = Track(typhoon.device_id, typhoon.kind, typhoon.start + timedelta(minutes=25),
                  1800.0, {"rain": np.round(five.reshape(-1, 6).sum(axis=1), 1)})
    quiet = quiet_track("R-SILENT", "rain_gauge", START, DAYS, step_s=3600.0,
                        faults=QuietFaults(spikes=0), seed=9)
    hours = np.arange(quiet.n) / 24.0
    gap = (hours >= SILENT[0]) & (hours < SILENT[1])
    silent = Track(quiet.device_id, quiet.kind, quiet.start, quiet.step_s,
                   {"rain": np.where(gap, np.nan, quiet.values["rain"])})
    return [creep, storm, silent]


def _store(url: str, tracks: list[Track]) -> list[float]:
    """Register and store the stream; returns every distinct reading time (seconds)."""
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        for device_id, kind, site, interval_s in DEVICES:
            add_device(conn, DeviceSpec(device_id, kind=kind, site_id=site,
                                        reporting_interval_s=interval_s))
        ids = {(str(d), str(c)): int(i) for i, d, c in conn.execute(
            "SELECT channel_id, device_id, channel FROM channels")}
        for tr in tracks:
            for channel, values in tr.values.items():
                for i, v in enumerate(values):
                    if not np.isnan(v):
                        rows.append((ids[(tr.device_id, channel)], tr.time(i), float(v), 0))
        write_readings(conn, rows)
    return sorted({r[1].timestamp() for r in rows})


def _history(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time, "
            "e.evidence -> 'channels' -> 0 -> 'forecast' FROM alert_events e "
            "JOIN alerts a USING (alert_id) "
            "ORDER BY e.data_time, a.target_id, a.hazard_kind, e.event_id").fetchall()


def _judged(url: str, drive: Callable[[Engine], int]) -> tuple[list[tuple[Any, ...]], int]:
    engine = Engine(url, CONFIG)
    try:
        steps = drive(engine)
    finally:
        engine.close()
    return _history(url), steps


def test_batched_replay_decides_as_stepping_one_sample_at_a_time(db_url: str,
                                                                 second_db: str) -> None:
    tracks = _tracks()
    times = _store(db_url, tracks)
    assert _store(second_db, tracks) == times

    def per_sample(engine: Engine) -> int:
        for t in times:
            engine.step(now=t, periodic=True)
        return len(times)

    def batched(engine: Engine) -> int:
        first, last = (datetime.fromtimestamp(t, UTC) for t in (times[0], times[-1]))
        return judge_in_batches(engine, first, last, timedelta(days=1)).steps

    one_by_one, n_single = _judged(db_url, per_sample)
    in_batches, n_batched = _judged(second_db, batched)
    assert n_batched == DAYS + 1 and n_single > 50 * n_batched
    events = {(r[0], r[1], r[2]) for r in one_by_one}
    # What the claim is about is in the stream: rain and deformation warnings raised, the
    # silent gauge's alert opened, cleared and auto-resolved, forecasts refreshed.
    assert {("S-GULLY", "rainfall", "raised"), ("S-SLOPE", "deformation", "opened"),
            ("S-SLOPE", "deformation", "updated"), ("R-SILENT", "maintenance", "opened"),
            ("R-SILENT", "maintenance", "cleared"), ("R-SILENT", "maintenance", "resolved")
            } <= events, sorted(events)
    assert max(r[3] for r in one_by_one if r[1] == "rainfall") >= 3
    assert max(r[3] for r in one_by_one if r[1] == "deformation") >= 3
    assert any(r[5] is not None for r in one_by_one)
    silence = [r for r in one_by_one if r[0] == "R-SILENT" and r[1] == "maintenance"]
    assert START + timedelta(days=SILENT[0]) < silence[0][4] < START + timedelta(
        days=SILENT[1]) <= silence[1][4]
    assert in_batches == one_by_one


def test_boundaries_end_at_the_last_reading() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    assert list(boundaries(t0, t0 + 2.5 * day, day)) == [t0, t0 + day, t0 + 2 * day,
                                                         t0 + 2.5 * day]
    assert list(boundaries(t0, t0 + 2 * day, day)) == [t0, t0 + day, t0 + 2 * day]
    assert list(boundaries(t0, t0 + 2 * day, None)) == [t0 + 2 * day]
    assert list(boundaries(t0, t0, day)) == [t0]
    with pytest.raises(ValueError, match="positive"):
        list(boundaries(t0, t0 + day, timedelta(0)))
