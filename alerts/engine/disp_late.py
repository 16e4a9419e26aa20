"""Late displacement readings: folded into the hourly history and judged again in data order,
so the level, velocities and forecast equal those of a stream taken in data order.

A displacement channel is judged when an hour of readings closes (alerts/engine/
displacement.py), and what each close leaves (the acceleration run, the episode's reference
rate, the forecast and its issue time, the steps, the hysteresis) feeds the next. A reading
behind the watermark (a GNSS station's buffered solutions after a radio outage, an
out-of-order message) changes the median of a closed hour, or fills an hour of a gap, and
every close after it. So the channel goes back to the moment before the newest close older
than the late reading and lives through the stored readings from there on:

- checkpoints: before each close the channel's judgement state (DispState's episode fields,
  the history's newest hour and offset, the level and its hysteresis timers, the quality
  gates) is kept, for the newest LATE_CLOSES closes (`add_readings` wraps the tick's call);
- `plan` (the service, before the tick): for each channel with late readings not held yet,
  the checkpoint to go back to, and the stored readings the tick needs: every reading from
  that hour to the watermark, and a ring's worth before it for the screen (the store is the
  truth: the closed hours hold medians, not readings);
- `rewind` (the tick, through alerts/engine/late.py): the checkpoint put back, the steps
  found after it taken back out of the older bins and the step log, the sample ring and the
  screen refilled from the readings before it, the watermark set just before it; the
  readings from it on are returned and judged in rounds along time through the tick's own
  path, as live samples (alerts/engine/tick.py), which re-creates the checkpoints too;
- level changes found while judging again are not stamped in the past: an alert already
  sent stays as it was, and what the rerun ends with, compared with what was emitted before
  it, is one change per target and kind at the channel's newest data time (the time the
  engine learns it), its evidence naming the late readings and the data time the level was
  first reached (`restamp`). A rerun that ends where it began emits nothing.

Bounds: LATE_CLOSES checkpoints per channel (9.6 kB, next to 8.0 kB of DispState; BENCHMARKS.md).
A late reading older than the oldest checkpoint (72 closed hours back, or before the engine
started or the registry last changed: checkpoints are working memory, not saved) is not
judged: it is counted per channel (`LateMemory.ignored`) and logged, and the restart's refill
puts it into the bins from the store. A tick called without the stored span (a caller that
skipped `plan`) judges again only what its sample ring still holds, and counts the rest
ignored. Steps pushed out of the step log (more than STEP_LOG) are not taken back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine import displacement
from alerts.engine import tick_quality as tq
from alerts.engine.disp_history import HOUR
from alerts.engine.displacement import DispResult
from alerts.engine.tick_setup import GROUPS, RING_K, Change, EngineState, Samples, Setup
from alerts.methods.quality import HAMPEL_HALF, ScreenState
from alerts.methods.ragged import FloatArray, IntArray

log = logging.getLogger(__name__)

LATE_CLOSES = 72  # checkpoints per channel: how far back a late reading is judged again
CONTEXT_N = RING_K["displacement"] + 2 * HAMPEL_HALF + 1  # readings before, for the screen
_F = ("accel_since", "accel_last", "v_ref", "v_ref_from", "v_ref_to", "slip_total")
_ENGINE_F = ("lower_since", "changed_at")
_ENGINE_B = ("level", "clean_raise", "clean_hold", "suspicious")
_KINDS = ("deformation", "combined")


@dataclass
class LateMemory:
    """Checkpoints per displacement row, a ring of LATE_CLOSES (slot = count % LATE_CLOSES)."""

    hour: np.ndarray  # (rows, K) int32: the hour about to close when taken
    f: FloatArray  # (rows, K, 13): _F, fc (4), offset, _ENGINE_F
    i: np.ndarray  # (rows, K, 2) int32: history's newest closed hour, last step hour
    b: np.ndarray  # (rows, K, 5) int8: _ENGINE_B, established
    n: IntArray  # checkpoints taken per row
    ignored: IntArray  # late readings not judged again (older than the checkpoints)
    # The minutes of each of the newest LATE_CLOSES hours that held a reading (bit m of
    # seen[r, h % K], for hour seen_hour[r, h % K]): a reading fetched again (the service's
    # arrival overlap, a re-sent backlog) is told from a new one without keeping readings.
    seen: np.ndarray  # (rows, K) uint64
    seen_hour: np.ndarray  # (rows, K) int32
    # channel -> (judged again from, the new late times): set by `plan`, used by `rewind`
    plan: dict[int, tuple[float, FloatArray]] = field(default_factory=dict)
    pending: dict[int, tuple[float, int, float, float]] = field(default_factory=dict)
    folded: dict[int, FloatArray] = field(default_factory=dict)  # last rerun's late times

    @classmethod
    def empty(cls, rows: int) -> LateMemory:
        k = LATE_CLOSES
        return cls(np.full((rows, k), -1, np.int32), np.full((rows, k, 13), np.nan),
                   np.zeros((rows, k, 2), np.int32), np.zeros((rows, k, 5), np.int8),
                   np.zeros(rows, np.int64), np.zeros(rows, np.int64),
                   np.zeros((rows, k), np.uint64), np.full((rows, k), -1, np.int32))

    @property
    def nbytes_per_row(self) -> float:
        rows = max(self.n.size, 1)
        return sum(a.nbytes for a in (self.hour, self.f, self.i, self.b, self.n,
                                      self.ignored, self.seen, self.seen_hour)) / rows

    def note(self, rows: IntArray, t: FloatArray) -> None:
        """Mark the minutes of readings (one per row) as seen."""
        h = np.floor(t / HOUR).astype(np.int64)
        slot = h % LATE_CLOSES
        stale = self.seen_hour[rows, slot] != h
        self.seen[rows[stale], slot[stale]] = 0
        self.seen_hour[rows, slot] = h
        bit = np.left_shift(np.uint64(1), _minute(t, h).astype(np.uint64))
        self.seen[rows, slot] |= bit

    def holds(self, r: int, t: FloatArray) -> np.ndarray:
        """Whether row r saw a reading in the minute of each t."""
        h = np.floor(t / HOUR).astype(np.int64)
        slot = h % LATE_CLOSES
        bit = np.left_shift(np.uint64(1), _minute(t, h).astype(np.uint64))
        return np.asarray((self.seen_hour[r, slot] == h) & ((self.seen[r, slot] & bit) > 0))


def _minute(t: FloatArray, h: IntArray) -> IntArray:
    return np.clip(np.floor((t - h * HOUR) / 60.0), 0, 59).astype(np.int64)


def memory(state: EngineState) -> LateMemory:
    """The checkpoints of this state's displacement rows (working memory that lives with the
    DispState: a restart or a registry splice builds a new one and starts without)."""
    st = state.disp
    assert st is not None
    mem = vars(st).get("late_memory")
    if not isinstance(mem, LateMemory):
        mem = LateMemory.empty(st.first_hour.size)
        vars(st)["late_memory"] = mem
    return mem


def add_readings(setup: Setup, state: EngineState, ch: IntArray, t: FloatArray, v: FloatArray,
                 q: np.ndarray) -> DispResult:
    """displacement.add_readings, with a checkpoint of every row an hour is about to close."""
    st = state.disp
    assert st is not None
    rows = setup.row_in_group[ch]
    open_h = st.hist.open_hour[rows]
    closing = (q < 2) & (open_h >= 0) & (np.floor(t / HOUR) > open_h)
    if closing.any():
        _checkpoint(state, ch[closing], rows[closing])
    memory(state).note(rows, t)
    return displacement.add_readings(st, setup.p, ch, rows, t, v, q)


def _checkpoint(state: EngineState, ch: IntArray, rows: IntArray) -> None:
    st, mem = state.disp, memory(state)
    assert st is not None
    slot = mem.n[rows] % LATE_CLOSES
    mem.hour[rows, slot] = st.hist.open_hour[rows]
    mem.f[rows, slot] = np.c_[tuple(getattr(st, f)[rows] for f in _F) + (st.fc[rows],) + (
        st.hist.offset[rows],) + tuple(getattr(state, f)[ch] for f in _ENGINE_F)]
    mem.i[rows, slot] = np.c_[st.hist.last_hour[rows], st.last_step_hour[rows]]
    mem.b[rows, slot] = np.c_[tuple(getattr(state, f)[ch] for f in _ENGINE_B) + (
        st.established[rows],)]
    mem.n[rows] += 1


def _slot_before(mem: LateMemory, r: int, t: float) -> tuple[int, int] | None:
    """(slot, count index) of row r's newest checkpoint of an hour before the hour of t."""
    n = int(mem.n[r])
    idx = np.arange(max(n - LATE_CLOSES, 0), n)
    if idx.size == 0:
        return None
    hours = mem.hour[r, idx % LATE_CLOSES]
    ok = hours < np.floor(t / HOUR)
    if not ok.any():
        return None
    j = int(idx[ok][np.argmax(hours[ok])])
    return j % LATE_CLOSES, j


def _held(state: EngineState, setup: Setup, c: int) -> FloatArray:
    """Reading times channel c's sample ring and open hour hold (a reading fetched again by
    the arrival overlap is one of these)."""
    ring, st = state.rings["displacement"], state.disp
    assert st is not None
    r = int(setup.row_in_group[c])
    t = ring.t[r][np.isfinite(ring.t[r])]
    oh = st.hist.open_hour[r]
    opened = st.hist.open_sec[r][np.isfinite(st.hist.open_sec[r])] + oh * HOUR
    return np.r_[t, opened if oh >= 0 else opened[:0]]


def _news(setup: Setup, state: EngineState, c: int, t: FloatArray) -> np.ndarray:
    """Which of channel c's readings behind the watermark it has not judged yet. Within a
    minute of one it judged counts as judged (sensors report at most once a minute)."""
    mem = memory(state)
    seen = mem.holds(int(setup.row_in_group[c]), t)
    return (~np.isin(t, _held(state, setup, c)) & ~np.isin(t, mem.folded.get(c, t[:0]))
            & ~seen)


def plan(setup: Setup, state: EngineState, s: Samples
         ) -> tuple[list[int], list[float], list[float]]:
    """For the displacement channels of `s` with readings behind the watermark that are not
    held yet: channel rows and [from, to] (seconds) of the stored readings `rewind` needs
    (the service fetches them into the same tick). Remembers where each is judged again."""
    mem = memory(state)
    disp = setup.group_of[s.ch] == GROUPS.index("displacement")
    late = disp & (s.t <= state.watermark[s.ch])
    out: tuple[list[int], list[float], list[float]] = ([], [], [])
    for c in np.unique(s.ch[late]).tolist():
        t = s.t[late & (s.ch == c)]
        new = _news(setup, state, c, t)
        if not new.any():
            continue
        found = _slot_before(mem, int(setup.row_in_group[c]), float(t[new].min()))
        if found is None:
            continue  # rewind counts it ignored
        start = float(mem.hour[int(setup.row_in_group[c]), found[0]]) * HOUR
        mem.plan[c] = (start, t[new])
        before = CONTEXT_N * float(setup.p["interval_s"][c]) * 1.5
        out[0].append(c)
        out[1].append(start - before)
        out[2].append(float(state.watermark[c]))
    return out


def rewind(setup: Setup, state: EngineState, c: int, t: FloatArray, v: FloatArray,
           q: np.ndarray) -> Samples:
    """Take displacement channel c back to the checkpoint before its oldest new late reading
    and return the readings to judge again from there (`t` ascending, all behind the
    watermark: late readings and the stored span `plan` asked for). Empty: nothing new, or
    too old to judge again (counted)."""
    st, mem = state.disp, memory(state)
    assert st is not None
    r = int(setup.row_in_group[c])
    ring = state.rings["displacement"]
    planned = mem.plan.pop(c, None)
    start = None if planned is None else planned[0]
    new = _news(setup, state, c, t) if planned is None else np.isin(t, planned[1])
    if not new.any():
        return Samples.empty()
    oldest = float(t[new].min())
    found = _slot_before(mem, r, oldest if start is None else start + HOUR)
    held_t = ring.t[r][np.isfinite(ring.t[r])]
    if found is not None and start is None:
        # No stored span came with it: only what the ring holds can be judged again.
        start = float(mem.hour[r, found[0]]) * HOUR
        if int(ring.total[r]) > ring.k and not (held_t < start).any():
            found = None
    if found is None or start is None:
        _ignore(setup, mem, c, int(new.sum()), oldest)
        return Samples.empty()
    slot, j = found
    mark = float(state.watermark[c])
    # Readings: the ones given, and the ring's for times not given (oldest first).
    own = ~np.isin(ring.t[r], t) & np.isfinite(ring.t[r])
    at = np.r_[t, ring.t[r][own]]
    av = np.r_[v, ring.v[r][own]]
    aq = np.r_[q, np.where(ring.q[r][own] == tq.IMPLAUSIBLE_Q, 0, ring.q[r][own])]
    order = np.argsort(at, kind="stable")
    at, av, aq = at[order], av[order], aq[order].astype(np.int8)
    once = np.r_[True, at[1:] != at[:-1]]
    at, av, aq = at[once], av[once], aq[once]
    _restore(setup, state, c, r, slot)
    mem.n[r] = j  # the rerun takes this checkpoint and the later ones again
    before = at < start
    _refill_ring(setup, state, c, r, at[before][-CONTEXT_N:], av[before][-CONTEXT_N:],
                 aq[before][-CONTEXT_N:])
    kept = ring.newest_time(np.array([r]))[0]
    state.watermark[c] = kept if np.isfinite(kept) else np.nextafter(start, -np.inf)
    mem.pending[c] = (mark, int(new.sum()), oldest, float(t[new].max()))
    mem.folded[c] = t[new]
    after = ~before
    return Samples(np.full(int(after.sum()), c, np.int64), at[after], av[after], aq[after])


def _ignore(setup: Setup, mem: LateMemory, c: int, n: int, oldest: float) -> None:
    r = int(setup.row_in_group[c])
    mem.ignored[r] += n
    log.warning("displacement channel %s: %d late reading(s) from %s not judged again: older "
                "than its oldest checkpoint (%d closed hours kept, none before a restart or "
                "registry change) or their stored span was not supplied; %d ignored so far",
                setup.channels[c].channel_id, n, _iso(oldest), LATE_CLOSES,
                int(mem.ignored[r]))


def _restore(setup: Setup, state: EngineState, c: int, r: int, slot: int) -> None:
    st, mem = state.disp, memory(state)
    assert st is not None
    f, i, b = mem.f[r, slot], mem.i[r, slot], mem.b[r, slot]
    for k, name in enumerate(_F):
        getattr(st, name)[r] = f[k]
    st.fc[r] = f[len(_F):len(_F) + 4]
    for k, name in enumerate(_ENGINE_F):
        getattr(state, name)[c] = f[len(_F) + 5 + k]
    for k, name in enumerate(_ENGINE_B):
        getattr(state, name)[c] = b[k]
    st.established[r] = bool(b[4])
    hist = st.hist
    last, step_h = int(i[0]), int(i[1])
    # Steps found after the checkpoint come out again: their jump back into the older bins
    # it was taken from (the rerun takes it out again if it finds the step again), their
    # entries out of the log.
    log_r = st.step_log[r]
    newer = np.isfinite(log_r[:, 0]) & (np.floor(log_r[:, 0] / HOUR) > step_h)
    for tt, jump, _, _ in log_r[newer][::-1]:
        first = int(np.floor(tt / HOUR))
        hours = np.arange(first, last + 1)
        hours = hours[hours > hist.last_hour[r] - hist.bins.shape[1]]
        hist.bins[r, hours % hist.bins.shape[1]] += np.float32(jump)
    k = int(newer.sum())
    if k:
        log_r[k:] = log_r[:-k].copy()
        log_r[:k] = np.nan
    hist.offset[r] = f[len(_F) + 4]
    hist.last_hour[r] = last
    st.last_step_hour[r] = step_h
    hist.open_hour[r], hist.open_n[r] = -1, 0
    hist.open_vals[r], hist.open_sec[r] = np.nan, np.nan
    st.voight_key[r] = -1  # the bins change: the cached fit is not theirs


def _refill_ring(setup: Setup, state: EngineState, c: int, r: int, t: FloatArray,
                 v: FloatArray, q: np.ndarray) -> None:
    """The sample ring, its marks and the screen's memory as after the readings before the
    checkpoint (the screen run afresh over them, as a restart's refill does)."""
    ring = state.rings["displacement"]
    ring.cut(r, -np.inf)
    row, ch = np.array([r], np.int64), np.array([c], np.int64)
    scratch = ScreenState.initial(1)
    for k in range(t.size):
        ring.append(row, t[k:k + 1], v[k:k + 1], q[k:k + 1])
        tq.screen_series(setup, scratch, ring, row, ch, st_rows=np.zeros(1, np.int64))
    for f in fields(ScreenState):
        getattr(state.screen, f.name)[c] = getattr(scratch, f.name)[0]


def restamp(setup: Setup, state: EngineState, changes: list[Change]) -> list[Change]:
    """The changes of a tick up to the end of its reruns, with each rerun target's
    deformation and combined changes folded into the net one, stamped at the newest data
    time of its channels judged again (see the module docstring)."""
    mem = memory(state) if state.disp is not None else None
    if mem is None or not mem.pending:
        return changes
    by_target: dict[tuple[str, str], list[tuple[int, tuple[float, int, float, float]]]] = {}
    for c, info in mem.pending.items():
        by_target.setdefault(setup.targets[int(setup.target[c])], []).append((c, info))
    mem.pending = {}
    out: list[Change] = []
    folded: dict[tuple[tuple[str, str], str], list[Change]] = {}
    for ch in changes:
        key = (ch.target_type, ch.target_id)
        if key in by_target and ch.hazard_kind in _KINDS:
            folded.setdefault((key, ch.hazard_kind), []).append(ch)
        else:
            out.append(ch)
    for (key, _), cs in folded.items():
        net = _net(cs, by_target[key])
        if net is not None:
            out.append(net)
    return out


def _net(cs: list[Change], chans: list[tuple[int, tuple[float, int, float, float]]]
         ) -> Change | None:
    before = int(cs[0].evidence.get("previous_level", cs[0].level))
    last = cs[-1]
    stamp = datetime.fromtimestamp(max(info[0] for _, info in chans), UTC)
    note: dict[str, Any] = {
        "readings": sum(info[1] for _, info in chans),
        "from": _iso(min(info[2] for _, info in chans)),
        "to": _iso(max(info[3] for _, info in chans)),
        "note": "late readings judged again in data order; alerts already sent unchanged"}
    moves = [c for c in cs if c.update_every_s is None]
    if int(last.level) != before:
        k = len(moves)
        while k > 0 and int(moves[k - 1].level) == int(last.level):
            k -= 1
        reached = moves[k] if k < len(moves) else last
        note["level_reached_at_data_time"] = reached.data_time.isoformat()
        ev = {**last.evidence, "previous_level": before, "late_data": note}
        ev.pop("update", None)
        return replace(last, data_time=stamp, evidence=ev, update_every_s=None)
    if last.update_every_s is not None:
        return replace(last, data_time=stamp, evidence={**last.evidence, "late_data": note})
    return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), UTC).isoformat()


__all__ = ["LATE_CLOSES", "LateMemory", "add_readings", "memory", "plan", "restamp",
           "rewind"]
