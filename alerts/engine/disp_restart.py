"""The displacement state across a restart: restored state plus a history rebuilt from the
readings equals, bit for bit, the state of an engine that lived through them.

A save keeps per displacement channel `DispState.saved_arrays()`: the acceleration run, the
episode's reference rate, the issued forecast with its issue time, the first value and hour,
slips, the step log (the newest STEP_LOG steps: time, jump, kind), what the last evaluation
found, and the history's running offset. The hourly history itself is not saved (45 days ×
24 bins would make every save of a displacement channel ~5 kB); `refill` rebuilds it from
the stored readings:
- a channel with saved state: the readings go into the history as the tick put them there
  (sign applied, readings marked bad or found implausible left out), and each logged step is
  removed at the hour the live engine removed it (the hour its plateau was confirmed) with
  the live jump, so the bins are the live ones. Offsets removed before the reloaded readings
  (older than 45 days, or before the log) are taken off from the start. Nothing is judged:
  the saved arrays hold the judgement (and restoring them is all a restart needs);
- a channel without saved displacement state (saved by an engine before this existed, or
  new) is replayed through the tick's own code (displacement.add_readings), which finds the
  steps again and rebuilds the episode state from the reloaded span.
The older hours of the reloaded readings arrive as the two middle values of each hour
(alerts/engine/data.py `disp_hours`), whose median is the hour's: the same bins.
Implausible readings: the live screen's range and rate rules (alerts/methods/quality.screen)
are applied over the reloaded readings in order, so the same ones stay out of the history.
Limits: steps older than the log (more than STEP_LOG in 45 days) count from the start of the
reloaded span, and a step confirmation time (`step_confirm_h`) changed between the step and
the restart moves its replay.
"""

from __future__ import annotations

import numpy as np

from alerts.engine.displacement import HOUR, DispState, add_readings
from alerts.methods.ragged import FloatArray, IntArray

IMPLAUSIBLE_Q = 3  # as alerts/engine/tick_quality.IMPLAUSIBLE_Q: left out of the history


def refill(st: DispState, p: dict[str, np.ndarray], ch: IntArray, row_of: IntArray,
           t: FloatArray, v: FloatArray, q: np.ndarray) -> None:
    """Rebuild the history of the displacement channels `ch` (channel indices; `row_of` maps
    a channel to its displacement row) from their stored readings (sorted or not)."""
    if ch.size == 0:
        return
    order = np.lexsort((t, row_of[ch]))
    ch, t, v, q = ch[order], t[order], v[order], q[order]
    rows_all = row_of[ch]
    rows = np.unique(rows_all)
    saved = st.first_hour[rows] >= 0
    offset = st.hist.offset[rows[saved]].copy()
    # Sorted by row, then time: each row's first reading, and its channel.
    first_i = np.searchsorted(rows_all, rows)
    plan = _plan(st, p, ch[first_i[saved]], t[first_i[saved]], rows[saved])
    fresh = DispState.empty(1).saved_arrays()
    for k, a in st.saved_arrays().items():  # replayed rows start from nothing
        a[rows[~saved]] = fresh[k][0]
    known = np.isin(rows_all, rows[saved])
    ok_t = np.full(rows.size, np.nan)
    ok_v = np.full(rows.size, np.nan)
    # Round j holds every row's j-th reading (one sort, not a scan per round).
    rank = np.arange(ch.size) - np.repeat(first_i, np.diff(np.r_[first_i, ch.size]))
    order = np.argsort(rank, kind="stable")
    for i in np.split(order, np.searchsorted(rank[order], np.arange(1, int(rank.max()) + 1))):
        qi = _screened(p, ch[i], t[i], v[i], q[i], ok_t, ok_v,
                       np.searchsorted(rows, rows_all[i]))
        a, b = i[known[i]], i[~known[i]]
        _history(st, p, ch[a], rows_all[a], t[a], v[a], qi[known[i]], plan)
        if b.size:
            add_readings(st, p, ch[b], rows_all[b], t[b], v[b], qi[~known[i]])
    st.hist.offset[rows[saved]] = offset  # as saved (the replay's sum may differ by an ulp)


Plan = dict[int, list[tuple[int, float, int]]]  # row -> (hour of removal, jump, hours)


def _plan(st: DispState, p: dict[str, np.ndarray], ch: IntArray, t0: FloatArray,
          rows: IntArray) -> Plan:
    """Set each saved row's starting offset; the logged steps its replay removes (`ch`,
    `t0`: each row's channel and first reloaded reading)."""
    plan: Plan = {}
    for r, c, t_first in zip(rows.tolist(), ch.tolist(), t0.tolist(), strict=True):
        first = int(np.floor(t_first / HOUR))
        m = int(p["step_confirm_h"][c])
        todo = [(int(np.floor(tt / HOUR)) + m - 1, float(jump), m)
                for tt, jump, _, _ in st.step_log[r] if np.isfinite(tt)]
        # A step is removed when the hour closing its plateau closes; that hour must come
        # after the first reloaded one (the first close), else it is older than the replay.
        todo = [s for s in todo if s[0] >= first]
        st.hist.offset[r] -= sum(jump for _, jump, _ in todo)
        plan[r] = todo
    return plan


def _history(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
             t: FloatArray, v: FloatArray, q: np.ndarray, plan: Plan) -> None:
    """What add_readings does to the history, with the logged steps for step detection."""
    good = q < 2
    ch, rows, t, v = ch[good], rows[good], t[good], v[good] * p["sign"][ch[good]]
    closed = st.hist.add(rows, t, v)
    for r in closed.tolist():
        todo = plan.get(r)
        if todo and st.hist.last_hour[r] >= todo[0][0]:
            _, jump, m = todo.pop(0)
            st.hist.remove_offset(np.array([r]), np.array([jump]), m)


def _screened(p: dict[str, np.ndarray], ch: IntArray, t: FloatArray, v: FloatArray,
              q: np.ndarray, ok_t: FloatArray, ok_v: FloatArray, k: IntArray) -> np.ndarray:
    """Stored qualities with the readings the live screen judged implausible marked so (the
    range and rate rules of alerts/methods/quality.screen); updates ok_t/ok_v at k."""
    dt = t - ok_t[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.abs(v - ok_v[k]) / np.where(dt > 0, dt, np.nan)
        bad = ((v < p["implausible_min"][ch]) | (v > p["implausible_max"][ch])
               | (rate > p["implausible_rate_per_h"][ch] / 3600.0))
    ok_t[k] = np.where(bad, ok_t[k], t)
    ok_v[k] = np.where(bad, ok_v[k], v)
    return np.where(bad, IMPLAUSIBLE_Q, q).astype(q.dtype)
