"""Late samples: readings older than their channel's newest judged one (a backlog that
arrives after live reports resumed, typical of field loggers after a comms outage).

`merge_late(setup, state, late)` merges them into the channels' sample rings in data-time
order (alerts/engine/ring.py `Ring.merge`), so every rule evaluated afterwards sees them:

- rain: the sample enters the 1…72 h running sums (the row's windows are recounted from the
  ring); a sample at or before (newest − longest window) can no longer count toward any
  window and is ignored. A late increment beyond the plausibility envelope of its interval
  counts as no rain, as a live one does; the stateful patterns of the screen (a repeating
  gauge) judge live samples only. The rain channels whose sums moved are returned: the tick
  judges them again at their newest data time, so a level the late rain implies is raised
  at the step that received it (late rather than never).
- water level, pollution, thresholds: the channel is cut back to before its oldest late
  sample and the late samples with the ones cut are returned to be judged again in time
  order (alerts/engine/late_series.py), so their level changes are stamped at the reading
  times they happened (the samples older than the ring's oldest held one when it is full
  are ignored).
- displacement: the channel goes back to its checkpoint before the newest close older than
  the oldest new late reading, and the late readings with the stored ones since (which the
  service fetched into the same tick) are returned to be judged again in time order
  (alerts/engine/disp_late.py); the level changes that rerun ends with are stamped at the
  channel's newest data time, naming the late readings.

Duplicates (a time the ring already holds) are ignored, so a sample delivered twice, or
fetched again where the arrival marks overlap (alerts/engine/arrival.py), counts once.
Pure: no I/O.
"""

from __future__ import annotations

import numpy as np

from alerts.engine import disp_late, late_series, rain_interval
from alerts.engine.ring import RAIN_RING_MAX, Ring
from alerts.engine.tick_setup import GROUPS, EngineState, Samples, Setup
from alerts.methods.quality import rain_envelope_mm
from alerts.methods.ragged import IntArray

IMPLAUSIBLE_Q = 3  # as alerts/engine/tick_quality.IMPLAUSIBLE_Q (counts as no rain)


def merge_late(setup: Setup, state: EngineState, late: Samples) -> tuple[IntArray, Samples]:
    """Merge `late` (sorted by channel, then time, every one older than or at its channel's
    watermark) into the rings; returns the rain channels whose window sums changed, and the
    series channels' samples to judge again in time order (sorted by channel, then time)."""
    rejudge: list[int] = []
    again: list[Samples] = []
    if not late.ch.size:
        return np.zeros(0, np.int64), Samples.empty()
    rain_g = GROUPS.index("rainfall")
    starts = np.flatnonzero(np.r_[True, late.ch[1:] != late.ch[:-1]])
    ends = np.r_[starts[1:], late.ch.size]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        c = int(late.ch[a])
        gi = int(setup.group_of[c])
        if gi < 0:  # not judged
            continue
        g = GROUPS[gi]
        ring = state.rings[g]
        row = int(setup.row_in_group[c])
        t, v, q = late.t[a:b], late.v[a:b], late.q[a:b].astype(np.int8)
        if g == "displacement":
            again.append(disp_late.rewind(setup, state, c, t, v, q))
            continue
        if int(setup.group_of[c]) != rain_g:
            again.append(late_series.rewind(setup, state, c, t, v, q))
            continue
        assert state.rain is not None
        newest = float(ring.newest_time(np.array([row]))[0])
        since = newest - float(state.rain.windows_s.max()) if np.isfinite(newest) else -np.inf
        q = _screen_rain(setup, c, ring.t[row], t, v, q)
        _room(ring, row, since, int(np.count_nonzero(t > since)))
        added, lost = ring.merge(row, t, v, q, since)
        if added:
            state.rain.dropped_t[row] = np.fmax(state.rain.dropped_t[row], lost)
            state.rain._recount(ring, np.array([row]))
            rejudge.append(c)
    redo = (Samples(np.concatenate([a.ch for a in again]), np.concatenate([a.t for a in again]),
                    np.concatenate([a.v for a in again]),
                    np.concatenate([a.q for a in again]).astype(np.int8))
            if again else Samples.empty())
    return np.asarray(rejudge, np.int64), redo


def _screen_rain(setup: Setup, c: int, held_t: np.ndarray, t: np.ndarray, v: np.ndarray,
                 q: np.ndarray) -> np.ndarray:
    """Late increments beyond the plausibility envelope of the time they cover (since the
    previous sample, at most one reporting interval) are marked as counting no rain."""
    p = setup.p
    tt = np.sort(held_t[np.isfinite(held_t)])[-(rain_interval.SPACINGS + 1):]
    tt = np.r_[np.full(rain_interval.SPACINGS + 1 - tt.size, np.nan), tt]
    every = float(rain_interval.observed(tt[None, :], p["interval_s"][c:c + 1])[0])
    known = np.sort(np.r_[held_t[np.isfinite(held_t)], t])
    prev = known[np.maximum(np.searchsorted(known, t) - 1, 0)]
    dt = np.where(prev < t, t - prev, every)
    if every > 0:
        dt = np.minimum(dt, every)
    env = rain_envelope_mm(dt, np.full(t.size, p["rain_implausible_mm_10min"][c]),
                           np.full(t.size, p["rain_implausible_mm_1h"][c]))
    with np.errstate(invalid="ignore"):
        bad = (v > env) | (v < p["implausible_min"][c]) | (v > p["implausible_max"][c])
    return np.where(bad, IMPLAUSIBLE_Q, q).astype(np.int8)


def _room(ring: Ring, row: int, since: float, n_new: int) -> None:
    """Grow the rain ring (doubling, at most RAIN_RING_MAX) so the row's samples inside the
    longest window and the late ones all fit."""
    held = ring.t[row]
    need = int(np.count_nonzero(np.isfinite(held) & (held > since))) + n_new
    k = ring.k
    while k < need and k < RAIN_RING_MAX:
        k *= 2
    ring.grow(min(k, RAIN_RING_MAX))
