"""Restart equals live for displacement, in the pure tick: an engine state saved in the middle
of an acceleration episode and restored (the saved arrays put back, the memory refilled from
the readings a restart reloads, as alerts/engine/service.py does) gives exactly the changes,
data times and evidence of the engine that lived on, and the same displacement state.

The slopes: 50 days of 30-minute GNSS solutions (1 mm noise, dropouts, outliers), a 12 mm
antenna re-mount on day 3 (an offset older than the 45 days a restart reloads), 38 days of
creep, then tertiary acceleration for 12 days, data ending 6 h before failure. Restart points:
while acceleration is first seen, once established with a baseline reference rate, after a
forecast was issued, and near the end (forecast levels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from alerts.engine import disp_restart
from alerts.engine import tick_quality as tq
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, Setup, build_setup, tick
from alerts.engine.tick_quality import fill_memory
from simulators.displacement_scenarios import DAY, HOUR, Series, accelerating
from tests import restart_memory

SEEDS = (11, 12, 13)


def slope(seed: int) -> Series:
    s = accelerating(seed, v0_mm_day=1.0, pre_days=38, tert_days=12, noise_mm=1.0,
                     step_s=1800, end_before_s=6 * HOUR)
    v = s.v + np.where(s.t >= s.t[0] + 3 * DAY, 12.0, 0.0)  # re-mounted antenna
    return Series(s.name, s.t, v, s.step_s, failure_t=s.failure_t, meta=s.meta)


@dataclass
class Feed:
    setup: Setup
    ch: np.ndarray
    t: np.ndarray
    v: np.ndarray
    edges: np.ndarray

    def batch(self, k: int) -> Samples:
        i = np.flatnonzero((self.t > self.edges[k - 1]) & (self.t <= self.edges[k]))
        i = i[np.lexsort((self.t[i], self.ch[i]))]
        return Samples(self.ch[i], self.t[i], self.v[i], np.zeros(i.size, np.int8))


def feed(series: list[Series]) -> Feed:
    chans = [ChannelInfo(i + 1, f"GNSS-{i}", "gnss", "disp_x", None, None, s.step_s)
             for i, s in enumerate(series)]
    setup = build_setup(chans, resolve(chans, {}))
    ch = np.concatenate([np.full(s.t.size, i, np.int64) for i, s in enumerate(series)])
    t = np.round(np.concatenate([s.t for s in series]))  # whole seconds, as stored
    v = np.concatenate([s.v for s in series])
    start = float(t.min())
    edges = np.arange(start - start % HOUR, float(t.max()) + HOUR, HOUR)  # hourly commits
    return Feed(setup, ch, t, v, edges)


def restarted(f: Feed, live: EngineState) -> EngineState:
    """What a restart holds (tests/restart_memory.py) for this feed's readings."""
    return restart_memory.restarted(f.setup, f.ch, f.t, f.v, live)


def key(c: Change) -> tuple[object, ...]:
    return (c.target_id, c.hazard_kind, int(c.level), c.data_time, c.evidence)


def same_disp(a: EngineState, b: EngineState) -> None:
    assert a.disp is not None and b.disp is not None
    for name, x in a.disp.saved_arrays().items():
        np.testing.assert_array_equal(x, b.disp.saved_arrays()[name], err_msg=name)
    rows = np.arange(len(SEEDS))
    # The history the refill rebuilt is the live one, bit for bit (45 days less the hour
    # the reload cuts in two).
    np.testing.assert_array_equal(a.disp.hist.window(rows, 24 * 45 - 1),
                                  b.disp.hist.window(rows, 24 * 45 - 1), err_msg="history")
    held = np.isfinite(a.disp.hist.window(rows, 24 * 45 - 1))
    np.testing.assert_array_equal(a.disp.hist.window_times(rows, 24 * 45 - 1)[held],
                                  b.disp.hist.window_times(rows, 24 * 45 - 1)[held],
                                  err_msg="bin times")
    for name in ("last_hour", "open_hour", "open_vals", "open_sec", "open_n", "offset"):
        np.testing.assert_array_equal(getattr(a.disp.hist, name), getattr(b.disp.hist, name),
                                      err_msg=name)


MOMENTS = ("acceleration first seen", "acceleration established", "forecast issued", "late")


def moment(st: EngineState) -> set[str]:
    assert st.disp is not None
    d = st.disp
    return {name for name, now in zip(MOMENTS[:3], (np.isfinite(d.accel_since).any(),
                                                    d.established.any(),
                                                    np.isfinite(d.fc[:, 3]).any()),
                                      strict=True) if now}


@pytest.fixture(scope="module")
def lived() -> tuple[Feed, list[list[Change]], dict[str, tuple[int, EngineState]]]:
    """Live through the feed, keeping each batch's changes, and restart at the first batch
    each moment of the episode is reached (and 20 hours before the data end)."""
    f = feed([slope(s) for s in SEEDS])
    n = f.edges.size
    state = EngineState.initial(f.setup)
    per_batch: list[list[Change]] = [[]]
    restarts: dict[str, tuple[int, EngineState]] = {}
    for k in range(1, n):
        state, res = tick(f.setup, state, f.batch(k), float(f.edges[k]))
        per_batch.append(res.changes)
        for m in moment(state) | ({"late"} if k == n - 20 else set()):
            if m not in restarts:
                restarts[m] = (k, restarted(f, state))
                same_disp(restarts[m][1], state)
    return f, per_batch, restarts


def test_the_scenario_is_an_episode_worth_restarting_in(
        lived: tuple[Feed, list[list[Change]], dict[str, tuple[int, EngineState]]]) -> None:
    f, per_batch, restarts = lived
    changes = [c for b in per_batch for c in b]
    red = {c.target_id for c in changes if c.hazard_kind == "deformation" and c.level == 4}
    assert red == {f"GNSS-{i}" for i in range(len(SEEDS))}
    flagged = {c.target_id for c in changes if c.hazard_kind == "data_quality"
               and c.level > 0}
    assert flagged == red  # the day-3 re-mount, found and flagged
    assert set(restarts) == set(MOMENTS)
    # Late in the episode every slope has a baseline v̄, and the re-mount is older than the
    # 45 days a restart reloads.
    late = restarts["late"][1].disp
    assert late is not None
    assert np.isfinite(late.v_ref).all() and (late.hist.offset > 10).all()
    assert f.edges[restarts["late"][0]] - f.t.min() > 45 * DAY


def test_a_restart_mid_episode_gives_the_changes_of_the_engine_that_lived_on(
        lived: tuple[Feed, list[list[Change]], dict[str, tuple[int, EngineState]]]) -> None:
    f, per_batch, restarts = lived
    for m, (k0, st) in restarts.items():
        got: list[Change] = []
        for k in range(k0 + 1, f.edges.size):
            st, res = tick(f.setup, st, f.batch(k), float(f.edges[k]))
            got += res.changes
        want = [c for b in per_batch[k0 + 1:] for c in b]
        assert want, m  # something happens after each restart point
        assert [key(c) for c in got] == [key(c) for c in want], m


def test_the_refill_leaves_out_what_the_screen_found_implausible() -> None:
    # A channel with a rate limit: the reading beyond it never enters the history, live or
    # replayed (and the screen's mark is the one the history leaves out).
    assert disp_restart.IMPLAUSIBLE_Q == tq.IMPLAUSIBLE_Q
    chans = [ChannelInfo(1, "CM-1", "crack_meter", "opening", None, None, 600.0)]
    setup = build_setup(chans, resolve(chans, {("kind", "crack_meter"): {
        "implausible_rate_per_h": 30.0}}))
    t = 1_780_000_000.0 + np.arange(0, 3 * DAY, 600.0)
    v = 5.0 + 0.001 * np.arange(t.size)
    v[200] += 40.0  # 40 mm in ten minutes: implausible
    live = EngineState.initial(setup)
    for i in range(t.size):
        live, _ = tick(setup, live, Samples(np.array([0]), t[i:i + 1], v[i:i + 1],
                                            np.zeros(1, np.int8)), float(t[i]))
    st = EngineState.initial(setup)
    saved = live.saved_arrays()
    for name, a in st.saved_arrays().items():
        a[...] = saved[name]
    fill_memory(setup, st, Samples(np.zeros(t.size, np.int64), t, v, np.zeros(t.size, np.int8)))
    assert live.disp is not None and st.disp is not None
    w_live = live.disp.hist.window(np.array([0]), 72)
    np.testing.assert_allclose(st.disp.hist.window(np.array([0]), 72), w_live, atol=1e-5)
    assert np.nanmax(w_live) < 6.0  # the implausible reading is in no bin
