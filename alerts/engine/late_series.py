"""Late samples of a series channel (water level, pollution, thresholds): judged again in
data-time order, from just before the oldest late sample on.

A water-level or pollution rule judges the newest sample against the ones before it, and its
level runs through the hysteresis state machine sample by sample, so a flood peak that
arrives late after the live reports resumed is only seen if the samples are judged in the
order they were taken. `rewind` therefore cuts the channel back to its samples before the
oldest late one (alerts/engine/ring.py `Ring.cut`): the ring, the watermark, the screen's
memory (run again over the samples kept, as a restart does, alerts/engine/tick_quality.py
`fill_memory`) and the hysteresis timer of a lowering that began after that time. The late
samples together with the cut ones come back as samples for the tick to judge in rounds
along time, through the same path as live samples, so every level change is stamped with
the reading time it happened at (a peak raises at the peak's reading, its clearing at the
reading after the dwell), and a backlog yields the changes living through the stream in
order would have, when nothing changed level in the span judged again.

What a rewind cannot undo: a change already emitted in that span stays emitted (the level
the channel holds is where the rerun starts); the other channels of the target are fused at
their current levels; the device's silence events of the span stay as they were. Pure.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from alerts.engine import tick_quality as tq
from alerts.engine.ring import Ring
from alerts.engine.tick_setup import GROUPS, EngineState, Samples, Setup
from alerts.methods.quality import ScreenState

SERIES = ("water_level", "water_quality", "air_quality", "threshold")


def rewind(setup: Setup, state: EngineState, c: int, t: np.ndarray, v: np.ndarray,
           q: np.ndarray) -> Samples:
    """Cut channel c back to before its oldest new late sample (`t` ascending, every one at
    or behind the watermark) and return the samples to judge again, oldest first: the late
    ones and the ones cut (a time both hold: the late copy, which carries the stored
    quality; the ring's may carry the screen's marks). Nothing (an empty result): every late
    time is held already, or none fits a full ring (older than its oldest sample)."""
    g = GROUPS[int(setup.group_of[c])]
    ring = state.rings[g]
    row = int(setup.row_in_group[c])
    tot = int(ring.total[row])
    m = min(tot, ring.k)
    held = ring.t[row, (tot - m + np.arange(m)) % ring.k]
    new = ~np.isin(t, held)
    if tot >= ring.k and m:
        new &= t > held.min()
    if not new.any():
        return Samples.empty()
    first = float(t[new].min())
    ct, cv, cq = ring.cut(row, first)
    # The screen's own marks are not stored quality: an implausible mark is judged again.
    cq = np.where(cq == tq.IMPLAUSIBLE_Q, 0, cq).astype(np.int8)
    mine = t >= first
    lt, lv, lq = t[mine], v[mine], q[mine]
    keep = ~np.isin(ct, lt)
    at, av = np.r_[lt, ct[keep]], np.r_[lv, cv[keep]]
    aq = np.r_[lq, cq[keep]].astype(np.int8)
    order = np.argsort(at, kind="stable")
    at, av, aq = at[order], av[order], aq[order]
    once = np.r_[True, at[1:] != at[:-1]]
    at, av, aq = at[once], av[once], aq[once]
    kept_t = ring.newest_time(np.array([row]))[0]
    state.watermark[c] = kept_t if np.isfinite(kept_t) else np.nextafter(first, -np.inf)
    # A lowering that began in the span is timed again by the rerun.
    if state.lower_since[c] >= first:
        state.lower_since[c] = np.nan
    _screen_again(setup, state, ring, row, c)
    return Samples(np.full(at.size, c, np.int64), at, av, aq)


def _screen_again(setup: Setup, state: EngineState, ring: Ring, row: int, c: int) -> None:
    """The screen's memory of channel c as it was after its samples kept in the ring: the
    screen run afresh over them on a scratch ring (their marks stay as live judging set
    them)."""
    tot = int(ring.total[row])
    m = min(tot, ring.k)
    pos = (tot - m + np.arange(m)) % ring.k
    t, v, q = ring.t[row, pos], ring.v[row, pos], ring.q[row, pos]
    ok = np.isfinite(t)
    t, v = t[ok], v[ok]
    q = np.where(q[ok] == tq.IMPLAUSIBLE_Q, 0, q[ok]).astype(np.int8)
    scratch = ScreenState.initial(1)
    tmp = Ring.empty(1, ring.k)
    zero, ch = np.zeros(1, np.int64), np.array([c], np.int64)
    for j in range(t.size):
        tmp.append(zero, t[j:j + 1], v[j:j + 1], q[j:j + 1])
        tq.screen_series(setup, scratch, tmp, zero, ch, st_rows=zero)
    for f in fields(ScreenState):
        getattr(state.screen, f.name)[c] = getattr(scratch, f.name)[0]


def cut_refilled(setup: Setup, state: EngineState, late: Samples) -> Samples:
    """After a restart: the refilled rings hold the late readings that arrived while no
    engine ran, as if judged. Cut each series channel back to before its oldest such
    reading and return what was cut, for the first step to judge again (as `rewind` does
    for a live engine)."""
    out: list[Samples] = []
    for c in np.unique(late.ch).tolist():
        gi = int(setup.group_of[c])
        if gi < 0 or GROUPS[gi] not in SERIES:
            continue
        first = float(late.t[late.ch == c].min())
        t, v, q = state.rings[GROUPS[gi]].cut(int(setup.row_in_group[c]), first)
        q = np.where(q == tq.IMPLAUSIBLE_Q, 0, q).astype(np.int8)
        out.append(Samples(np.full(t.size, c, np.int64), t, v, q))
    if not out:
        return Samples.empty()
    return Samples(np.concatenate([s.ch for s in out]), np.concatenate([s.t for s in out]),
                   np.concatenate([s.v for s in out]),
                   np.concatenate([s.q for s in out]).astype(np.int8))
