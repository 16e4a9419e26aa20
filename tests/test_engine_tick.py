"""The pure engine tick: incremental rain windows against the from-scratch method, flapping,
the quality gate, silence, fusion and batch-size invariance."""

from __future__ import annotations

import numpy as np

from alerts.engine.ring import RainWindows, Ring
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, Setup, build_setup, tick
from alerts.methods.levels import Level
from alerts.methods.ragged import Ragged
from alerts.methods.rainfall import window_accumulations

T0 = 1_720_000_000.0


def test_incremental_rain_windows_equal_the_from_scratch_sums() -> None:
    rng = np.random.default_rng(7)
    n, k = 40, 300
    windows = np.array([1.0, 3.0]) * 3600.0
    ring, rw = Ring.empty(n, k), RainWindows.empty(n, windows)
    times: list[list[float]] = [[] for _ in range(n)]
    vals: list[list[float]] = [[] for _ in range(n)]
    for step in range(300):
        rows, ts, vs = [], [], []
        for c in range(n):
            m = int(rng.integers(0, 3 if step % 40 else 15))
            for i in range(m):
                t = T0 + step * 60.0 + (i + 1) * 60.0 / (m + 1)
                v = round(float(rng.random()) * 2, 1)
                rows.append(c)
                ts.append(t)
                vs.append(v)
                times[c].append(t)
                vals[c].append(v)
        if rows:
            rw.update(ring, np.array(rows), np.array(ts), np.array(vs),
                      np.zeros(len(rows), np.int8))
    got = rw.totals_mm(ring, np.arange(n))
    ref = window_accumulations(Ragged.from_lists([np.array(t) for t in times],
                                                 [np.array(v) for v in vals]),
                               ring.newest_time(np.arange(n)), (1.0, 3.0))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=1e-9)


def _engine(channels: list[ChannelInfo], overrides: dict | None = None
            ) -> tuple[Setup, EngineState]:
    setup = build_setup(channels, resolve(channels, overrides or {}))
    return setup, EngineState.initial(setup)


def _run(setup, state, values: np.ndarray, step_s: float, batch: int = 1
         ) -> list[Change]:
    """values (samples, channels); feeds `batch` samples per tick."""
    out: list[Change] = []
    n_s, n_c = values.shape
    for start in range(0, n_s, batch):
        idx = np.arange(start, min(start + batch, n_s))
        ch = np.repeat(np.arange(n_c), idx.size)
        t = np.tile(T0 + idx * step_s, n_c)
        v = values[idx].T.ravel()
        state, res = tick(setup, state, Samples(ch, t, v, np.zeros(t.size, np.int8)),
                          float(t.max()))
        out += res.changes
    return out


def test_flapping_around_a_threshold_gives_one_alert_level() -> None:
    ch = [ChannelInfo(1, "GW1", "groundwater_level", "level", "HP1", None, 600)]
    setup, state = _engine(ch, {("channel", "1"): {"method": "threshold",
                                                    "thresholds": [10, 20, 30, 40]}})
    rng = np.random.default_rng(3)
    # Oscillates ±0.8 around the yellow threshold (20) for two days, 10-minute samples.
    x = 20.0 + 0.8 * np.sin(np.arange(288) * 0.7) + rng.normal(0, 0.05, 288)
    changes = [c for c in _run(setup, state, x[:, None], 600.0)
               if c.hazard_kind != "maintenance"]
    assert [c.level for c in changes] == [Level.YELLOW]


def test_a_lone_spike_never_raises() -> None:
    ch = [ChannelInfo(1, "GW1", "groundwater_level", "level", "HP1", None, 600)]
    setup, state = _engine(ch, {("channel", "1"): {"method": "threshold",
                                                    "thresholds": [10, 20, 30, 40]}})
    x = 5.0 + np.random.default_rng(1).normal(0, 0.1, 100)
    x[50] = 35.0
    assert not [c for c in _run(setup, state, x[:, None], 600.0)
                if c.hazard_kind != "maintenance"]


def test_silent_device_gets_a_maintenance_change_and_returns() -> None:
    ch = [ChannelInfo(1, "R1", "rain_gauge", "rain", "HP1", None, 300),
          ChannelInfo(2, "R2", "rain_gauge", "rain", "HP1", None, 300)]
    setup, state = _engine(ch)
    state, _ = tick(setup, state, Samples(np.array([0, 1]), np.array([T0, T0]),
                                          np.zeros(2), np.zeros(2, np.int8)), T0)
    # R2 keeps reporting every 5 minutes, R1 is silent for an hour (offline after 15 min):
    # silent from its last reading + 15 min, stamped so whenever the tick notices.
    t2 = T0 + 300.0 * np.arange(1, 13)
    state, res = tick(setup, state, Samples(np.ones(12, np.int64), t2, np.zeros(12),
                                            np.zeros(12, np.int8)), T0 + 3600)
    assert [(c.target_id, c.hazard_kind, c.level, c.data_time.timestamp())
            for c in res.changes] == [("R1", "maintenance", Level.BLUE, T0 + 900)]
    assert res.silent_devices == ["R1"]
    state, res = tick(setup, state, Samples(np.array([0]), np.array([T0 + 3700]),
                                            np.zeros(1), np.zeros(1, np.int8)), T0 + 3700)
    assert [(c.target_id, c.level, c.data_time.timestamp()) for c in res.changes] == [
        ("R1", Level.NONE, T0 + 3700)]


def test_a_silence_inside_a_backlog_gives_the_changes_living_through_it_gives() -> None:
    ch = [ChannelInfo(1, "R1", "rain_gauge", "rain", "HP1", None, 300)]
    t = T0 + 300.0 * np.r_[np.arange(0, 10), np.arange(30, 40)]  # 100 minutes silent
    live_setup, live = _engine(ch)
    lived: list[Change] = []
    for x in np.arange(T0, t[-1] + 1, 300.0):
        have = t[t == x]
        live, res = tick(live_setup, live, Samples(np.zeros(have.size, np.int64), have,
                                                   np.zeros(have.size),
                                                   np.zeros(have.size, np.int8)), float(x))
        lived += res.changes
    setup, state = _engine(ch)
    state, res = tick(setup, state, Samples(np.zeros(t.size, np.int64), t, np.zeros(t.size),
                                            np.zeros(t.size, np.int8)), float(t[-1]))
    key = [(c.target_id, c.hazard_kind, c.level, c.data_time) for c in lived]
    assert key == [(c.target_id, c.hazard_kind, c.level, c.data_time) for c in res.changes]
    assert [c[2] for c in key] == [Level.BLUE, Level.NONE]


def _storm(n: int = 400) -> np.ndarray:
    rain = np.zeros(n)
    # Varying increments (a gauge repeating one value is suspicious: test_engine_quality.py)
    wiggle = 0.4 * (-1.0) ** np.arange(12)
    rain[100:112] = 4.0 + wiggle  # 48 mm in an hour: yellow on the 1 h window
    rain[112:118] = 6.0 + wiggle[:6]  # then 36 mm more
    return rain


def test_rain_and_deformation_raise_the_combined_level_and_batches_agree() -> None:
    ch = [ChannelInfo(1, "R1", "rain_gauge", "rain", "HP1", None, 300),
          ChannelInfo(2, "C1", "crack_meter", "opening", "HP1", None, 300)]
    rules = {("hazard", "HP1"): {"cumulative_mm": [1, 5, 10, 20]}}
    crack = 12.0 + np.where(np.arange(400) > 90, 0.02 * (np.arange(400) - 90), 0.0)
    values = np.stack([_storm(), crack], axis=1)
    runs = []
    for batch in (1, 7):
        setup, state = _engine(ch, rules)
        runs.append([(c.hazard_kind, c.level, c.data_time) for c in
                     _run(setup, state, values, 300.0, batch) if c.hazard_kind != "maintenance"])
    kinds = {k for k, _, _ in runs[0]}
    assert {"rainfall", "deformation", "combined"} <= kinds
    rain_levels = [lv for k, lv, _ in runs[0] if k == "rainfall"]
    assert rain_levels[:2] == [Level.BLUE, Level.YELLOW] and Level.ORANGE in rain_levels
    # Every change at the same data time whatever the batch size: a tick cuts its samples
    # into rounds along data time.
    assert runs[0] == runs[1]

