"""Late displacement readings (alerts/engine/disp_late.py), in the pure tick fed as the service
feeds it (tests/disp_late_feed.py: hourly commits, and the stored span a late backlog needs):
a GNSS backlog after a radio outage gives the level, velocities and forecast of the stream in
data order; out-of-order singles on a stable station raise nothing and find no step; readings
older than the checkpoints are counted and left out; a restart after a backlog holds the same
displacement state.

Tolerance: the level, the acceleration run, the reference rate and the forecast are compared
exactly, velocities to 1e-9 relative (the same arithmetic on the same bins; a step taken back
out of float32 bins may differ in the last bit)."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pytest

from alerts.engine import disp_late
from alerts.engine.tick import EngineState, tick
from simulators.displacement_scenarios import HOUR, Series, accelerating, stable
from tests import disp_late_feed as feed
from tests import restart_memory

SEEDS = tuple(range(20))
OUTAGE_H = 6
EXACT = ("accel_since", "accel_last", "established", "v_ref", "fc", "slip_total",
         "last_step_hour", "step_log", "criterion")


def gnss(seed: int) -> Series:
    return accelerating(seed, v0_mm_day=1.0, pre_days=10, tert_days=6, noise_mm=1.5,
                        step_s=1800, end_before_s=6 * HOUR)


def outage(s: Series, seed: int) -> np.ndarray:
    """Arrival times: a 6 h radio outage ending 12–54 h before the data end, its buffered
    solutions (30-minute) arriving 2 h after the link came back (live reports first)."""
    t = np.round(s.t)
    b = float(t.max()) - (12 + 6 * (seed % 8)) * HOUR
    a = b - OUTAGE_H * HOUR
    return np.where((t >= a) & (t < b), b + 2 * HOUR, t)


@pytest.fixture(scope="module")
def backlog() -> tuple[feed.Store, feed.Lived, feed.Store, feed.Lived]:
    series = [gnss(s) for s in SEEDS]
    in_order = feed.store(series)
    late = feed.store(series, [outage(s, k) for k, s in zip(SEEDS, series, strict=True)])
    return in_order, feed.live(in_order), late, feed.live(late)


@pytest.mark.timeout(1800)  # its fixture: two runs of 20 stations over 16 days
def test_an_outage_backlog_gives_the_in_order_level_velocities_and_forecast(
        backlog: tuple[feed.Store, feed.Lived, feed.Store, feed.Lived]) -> None:
    _, a, _, b = backlog
    da, db = a.state.disp, b.state.disp
    assert da is not None and db is not None
    # The scenario means something: the stations accelerate and most reach red with a
    # forecast before the data end, and the backlogs were judged again.
    assert (a.state.level == 4).sum() >= 0.8 * len(SEEDS)
    assert np.isfinite(da.fc[:, 0]).sum() >= 0.8 * len(SEEDS)
    assert any("late_data" in c.evidence for c in b.changes)
    same = np.ones(len(SEEDS), bool)
    for name in EXACT:
        x, y = getattr(da, name), getattr(db, name)
        eq = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        same &= eq.reshape(len(SEEDS), -1).all(axis=1)
    same &= np.isclose(da.vel, db.vel, rtol=1e-9, atol=0, equal_nan=True).all(axis=1)
    same &= np.isclose(da.vel_se, db.vel_se, rtol=1e-9, atol=0, equal_nan=True).all(axis=1)
    same &= a.state.level == b.state.level
    assert same.all(), f"{np.flatnonzero(~same).tolist()} of {len(SEEDS)} differ"
    np.testing.assert_array_equal(a.state.emitted, b.state.emitted)
    rows = np.arange(len(SEEDS))
    np.testing.assert_array_equal(da.hist.window(rows, 24 * 16), db.hist.window(rows, 24 * 16))


def test_changes_found_again_are_stamped_now_and_name_the_late_readings(
        backlog: tuple[feed.Store, feed.Lived, feed.Store, feed.Lived]) -> None:
    _, _, late, b = backlog
    restamped = [c for c in b.changes if "late_data" in c.evidence]
    for c in restamped:
        note = c.evidence["late_data"]
        assert note["readings"] > 0 and note["from"] <= note["to"]
        assert note["to"] < c.data_time.isoformat()  # stamped after the late readings
    # Per target, data times never go back: an alert already sent is not rewritten.
    for tid in {c.target_id for c in b.changes}:
        times = [c.data_time for c in b.changes
                 if c.target_id == tid and c.hazard_kind == "deformation"]
        assert times == sorted(times)


def test_out_of_order_singles_on_a_stable_station_raise_nothing_and_find_no_step() -> None:
    series = [stable(s, days=6, noise_mm=2.0, step_s=600, creep_mm_day=0.2) for s in (1, 2, 3)]
    arrivals = []
    for k, s in enumerate(series):
        t = np.round(s.t)
        rng = np.random.default_rng(100 + k)
        late = rng.random(t.size) < 0.03
        arrivals.append(np.where(late, t + rng.integers(1, 4, t.size) * HOUR, t))
    a = feed.live(feed.store(series))
    b = feed.live(feed.store(series, arrivals))
    assert not [c for c in b.changes if c.hazard_kind in ("deformation", "data_quality")]
    assert b.state.disp is not None and a.state.disp is not None
    assert not np.isfinite(b.state.disp.step_log[:, :, 0]).any()
    assert not np.isfinite(b.state.finding_t).any()
    np.testing.assert_allclose(a.state.disp.vel, b.state.disp.vel, rtol=1e-9)
    assert disp_late.memory(b.state).ignored.sum() == 0


def test_late_readings_older_than_the_checkpoints_are_counted_and_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    s = stable(7, days=5, noise_mm=1.0, step_s=1800, dropout=0.0, outliers=0.0)
    t = np.round(s.t)
    old = t < t.max() - (disp_late.LATE_CLOSES + 5) * HOUR
    pick = np.flatnonzero(old)[-3:]  # three readings from before the oldest checkpoint
    arrival = t.copy()
    arrival[pick] = t.max() - 2 * HOUR
    kept = np.ones(t.size, bool)
    kept[pick] = False
    without = feed.live(feed.store([Series(s.name, s.t[kept], s.v[kept], s.step_s)]))
    with caplog.at_level(logging.WARNING, logger="alerts.engine.disp_late"):
        got = feed.live(feed.store([s], [arrival]))
    assert disp_late.memory(got.state).ignored.tolist() == [3]
    assert "not judged again" in caplog.text
    assert got.state.disp is not None and without.state.disp is not None
    np.testing.assert_array_equal(got.state.disp.vel, without.state.disp.vel)
    assert [c for c in got.changes if c.hazard_kind == "deformation"] == []


def test_a_tick_without_the_stored_span_judges_again_what_its_ring_holds() -> None:
    s = stable(9, days=3, noise_mm=1.0, step_s=600, dropout=0.0, outliers=0.0)
    st = feed.store([s])
    a = feed.live(st)
    t = np.round(s.t)
    held_back = np.flatnonzero(t >= t.max() - 40 * 60)[:1]  # one reading, 40 min late
    arrival = t.copy()
    arrival[held_back] = t.max()
    b2 = feed.store([s], [arrival])
    state = EngineState.initial(b2.setup)
    for k in range(1, b2.edges.size):  # no plan(): the ring (16 readings) covers 40 min
        i = b2.arrived(float(b2.edges[k - 1]), float(b2.edges[k]))
        state, _ = tick(b2.setup, state, b2.samples(i), float(b2.edges[k]))
    assert state.disp is not None and a.state.disp is not None
    np.testing.assert_array_equal(state.disp.vel, a.state.disp.vel)
    assert disp_late.memory(state).ignored.sum() == 0


def test_a_restart_after_a_backlog_holds_the_same_displacement_state(
        backlog: tuple[feed.Store, feed.Lived, feed.Store, feed.Lived]) -> None:
    _, _, late, b = backlog
    st = restart_memory.restarted(late.setup, late.ch, late.t, late.v, b.state)
    assert st.disp is not None and b.state.disp is not None
    for name, x in b.state.disp.saved_arrays().items():
        np.testing.assert_array_equal(x, st.disp.saved_arrays()[name], err_msg=name)
    rows = np.arange(len(SEEDS))
    np.testing.assert_array_equal(st.disp.hist.window(rows, 24 * 16),
                                  b.state.disp.hist.window(rows, 24 * 16))
    np.testing.assert_array_equal(st.level, b.state.level)


def test_a_backlog_delivered_again_reruns_nothing(
        backlog: tuple[feed.Store, feed.Lived, feed.Store, feed.Lived],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The arrival overlap or a re-sent backlog brings readings judged already: told apart
    by the minutes they were seen in, nothing is judged again and nothing changes."""
    _, _, late, b = backlog
    state = copy.deepcopy(b.state)
    reruns: list[int] = []
    restore = disp_late._restore

    def counted(setup: Any, st: EngineState, c: int, r: int, slot: int) -> None:
        reruns.append(c)
        restore(setup, st, c, r, slot)

    monkeypatch.setattr(disp_late, "_restore", counted)
    again = np.flatnonzero(late.arrival > late.t)  # every buffered solution
    i = again[np.lexsort((late.t[again], late.ch[again]))]
    batch = late.samples(i)
    assert disp_late.plan(late.setup, state, batch) == ([], [], [])
    state, res = tick(late.setup, state, batch, float(late.edges[-1]) + 60.0)
    assert reruns == [] and res.changes == []
    assert state.disp is not None and b.state.disp is not None
    np.testing.assert_array_equal(state.disp.vel, b.state.disp.vel)
    np.testing.assert_array_equal(state.disp.fc, b.state.disp.fc)
