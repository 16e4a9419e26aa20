"""The displacement history a restart reloads (alerts/engine/data.py load_memory): older
hours as their two middle values from the store, the ring's span raw. Fed to the hourly
history as the tick feeds readings, they give exactly the bins that every raw reading of the
45 days gives, on channels with bad readings, implausible values, more readings an hour than
the history keeps, gaps, and a rate rule (which needs every reading)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import data as engine_data
from alerts.engine.disp_history import DispHistory
from alerts.engine.rules import resolve
from alerts.engine.tick import EngineState, Samples, build_setup
from alerts.engine.tick_quality import IMPLAUSIBLE_Q
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

END = datetime(2026, 6, 30, 12, 7, tzinfo=UTC)


def _replay(rows: int, row_of: dict[int, int], s: Samples, low: np.ndarray,
            high: np.ndarray) -> DispHistory:
    """The history as the tick builds it: one reading per row per round, in time order,
    reliable and in-range readings only (the range rule marks the rest IMPLAUSIBLE_Q)."""
    hist = DispHistory.empty(rows)
    with np.errstate(invalid="ignore"):
        bad = (s.q >= 2) | (s.v < low[s.ch]) | (s.v > high[s.ch])
    q = np.where(bad, IMPLAUSIBLE_Q, s.q)
    ch, t, v = s.ch[q < 2], s.t[q < 2], s.v[q < 2]
    start = np.flatnonzero(np.r_[True, ch[1:] != ch[:-1]])
    rank = np.arange(ch.size) - np.repeat(start, np.diff(np.r_[start, ch.size]))
    for j in range(int(rank.max()) + 1 if rank.size else 0):
        i = np.flatnonzero(rank == j)
        hist.add(np.array([row_of[int(c)] for c in ch[i]], np.int64), t[i], v[i])
    return hist


def test_history_from_hourly_middles_equals_every_raw_reading(
        db_url: str, conn: psycopg.Connection) -> None:
    rng = np.random.default_rng(11)
    # (device, reporting interval s, days of data, rule)
    plan = [("CM-10MIN", 600, 50, {}), ("CM-1MIN", 60, 4, {}),  # > OPEN_K readings an hour
            ("CM-RANGE", 600, 20, {"implausible_min": -5.0, "implausible_max": 40.0}),
            ("CM-RATE", 600, 10, {"implausible_rate_per_h": 30.0}),
            ("CM-GAPPY", 600, 12, {})]
    rows = []
    ids = {}
    for dev, interval, days, rule in plan:
        add_device(conn, DeviceSpec(dev, kind="crack_meter", reporting_interval_s=interval))
        cid = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s",
                           (dev,)).fetchone()[0]  # type: ignore[index]
        ids[dev] = cid
        if rule:
            conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES "
                         "('channel', %s, %s)", (str(cid), Jsonb(rule)))
        n = int(days * 86400 / interval)
        t = END - np.arange(n)[::-1] * timedelta(seconds=interval)
        v = np.cumsum(rng.normal(0.01, 0.3, n)) + rng.normal(0, 1.5, n)
        v[rng.random(n) < 0.01] += 80.0  # implausible where a range rule holds
        q = np.where(rng.random(n) < 0.05, 2, 0)
        keep = np.ones(n, bool)
        if dev == "CM-GAPPY":
            keep[n - 30: n - 8] = False  # a gap inside the ring's raw span
        rows += [(cid, ti, float(vi), int(qi)) for ti, vi, qi, k in zip(t, v, q, keep,
                                                                          strict=True) if k]
    write_readings(conn, rows)

    channels = engine_data.load_channels(conn)
    setup = build_setup(channels, resolve(channels, engine_data.load_overrides(conn)))
    state = EngineState.initial(setup)
    state.watermark[:] = END.timestamp()
    loaded = engine_data.load_memory(conn, setup, state)
    assert np.all(np.diff(loaded.ch) >= 0)
    assert np.all((np.diff(loaded.t) >= 0) | (np.diff(loaded.ch) > 0))
    # Every reading of the hours the history holds (the oldest one whole, as living
    # through it gave it)
    oldest = (END - timedelta(days=45)).replace(minute=0)
    every = engine_data._fetch(conn, setup, [c.channel_id for c in setup.channels],
                               [oldest] * setup.n, [END] * setup.n, inclusive_lower=True)
    # Bounded: the 10-minute channel's 50 days load as ~2 samples an hour, not 6.
    ten = setup.index[ids["CM-10MIN"]]
    assert (loaded.ch == ten).sum() < 0.4 * (every.ch == ten).sum()
    rate = setup.index[ids["CM-RATE"]]
    assert (loaded.ch == rate).sum() == (every.ch == rate).sum()  # a rate rule: every reading
    gappy = setup.index[ids["CM-GAPPY"]]
    assert (loaded.ch == gappy).sum() == (every.ch == gappy).sum()  # a gap: every reading

    rows_of = {int(c): int(setup.row_in_group[c]) for c in setup.group_rows["displacement"]}
    low, high = setup.p["implausible_min"], setup.p["implausible_max"]
    live = _replay(len(rows_of), rows_of, every, low, high)
    restart = _replay(len(rows_of), rows_of, loaded, low, high)
    assert np.array_equal(live.last_hour, restart.last_hour)
    assert np.array_equal(live.open_hour, restart.open_hour)
    assert np.array_equal(live.bins, restart.bins, equal_nan=True)
    assert np.array_equal(live.open_vals, restart.open_vals, equal_nan=True)
    # and the same bin times: each bin at its readings' mean second, not mid-hour
    assert np.array_equal(np.where(np.isfinite(live.bins), live.sec, -1),
                          np.where(np.isfinite(restart.bins), restart.sec, -1))
    assert np.array_equal(live.open_sec, restart.open_sec, equal_nan=True)
    assert np.unique(live.sec[np.isfinite(live.bins)]).size > 3
    assert np.isfinite(live.bins).sum() > 2000
