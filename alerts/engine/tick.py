"""One engine tick: new samples in, channel levels and target level changes out. Pure: no I/O.

`tick(setup, state, samples, now, regional, reports)` evaluates every channel that received samples:
first the data-quality screen (alerts/engine/tick_quality.py: implausible values left out,
outliers pending until the next samples confirm an onset, repeating or flat series held at
yellow until corroborated), then each method group vectorised (alerts/engine/tick_methods.py),
the quality gate (a flagged sample can only confirm the level of the last clean one), the
hysteresis state machine of alerts/methods/hysteresis.py (raise at once; lower only after
`dwell_s` below the clear line, in the channel's own data time), the fusion of
alerts/methods/fusion.py per target and hazard kind with the regional and field-report floors
(alerts/engine/field_reports.py), and silence
(alerts/engine/silence.py). What comes out is a list of `Change`s: a target's level for one
hazard kind moved (a level change is an event, not a new alert), or, with `update_every_s`
set, a forecast refreshed while the deformation level held (alerts/engine/updates.py).

Time: every sample is judged at its own timestamp, in data-time order. A tick with several
new samples per channel cuts them into rounds along time (each round the longest run of the
time-sorted samples with at most one per channel), so a backlog, a burst or a replay yields
the same changes at the same data times as living through it sample by sample; `now` (the
engine clock, driven by the caller) only decides silence at the end, and every silence,
data-quality and level change is stamped with the data time that caused it. A sample at or
behind its channel's watermark (a backlog arriving after live reports) is merged into the
channel's history (alerts/engine/late.py); the rain channels it moved are judged again at
their newest data time, first in the tick: late rather than never. A series channel (water
level, pollution, thresholds) is cut back to before its oldest late sample and judged again
from there in time order, so its changes carry the reading times they happened at
(alerts/engine/late_series.py).

Targets and kinds: a channel's warnings land on its hazard point, else its site, else its own
device (rules.ChannelInfo.target). Per target there is one level per hazard kind (rainfall,
deformation, water_level, water_quality, air_quality); hazard points also get a "combined"
level when fusion across kinds says more than any single kind. Devices get "maintenance"
(silent) and "data_quality" (findings) changes; neither ever feeds a hazard level.

The state owns working memory (sample rings) that the tick updates in place: a caller hands
the state to `tick` and uses only the returned one. `Setup` is immutable and rebuilt when the
registry or the rules change (alerts/engine/tick_setup.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine import disp_late, silence
from alerts.engine import tick_methods as tm
from alerts.engine import tick_quality as tq
from alerts.engine.channel_evidence import channel_evidence
from alerts.engine.displacement import in_maintenance
from alerts.engine.late import merge_late
from alerts.engine.rules import AQI_TABLE, GB3838_ITEM
from alerts.engine.tick_quality import fill_memory
from alerts.engine.tick_setup import (
    COMBINED,
    GROUPS,
    KINDS,
    N_FAM,
    RING_K,
    Change,
    EngineState,
    Samples,
    Setup,
    TickResult,
    build_setup,
    gather,
)
from alerts.engine.updates import forecast_updates
from alerts.methods import fusion
from alerts.methods.hysteresis import HysteresisState, step_levels
from alerts.methods.levels import LEVEL_DTYPE, Level, LevelArray
from alerts.methods.quality import Verdict
from alerts.methods.ragged import FloatArray, IntArray
from alerts.methods.water_level import StationThresholds
from geowarn.errors import InvalidInput

__all__ = ["KINDS", "RING_K", "Change", "EngineState", "Samples", "Setup", "TickResult",
           "build_setup", "fill_memory", "tick"]


def tick(setup: Setup, state: EngineState, s: Samples, now: float,
         regional: LevelArray | None = None,
         reports: LevelArray | None = None,
         rejudge_more: IntArray | None = None) -> tuple[EngineState, TickResult]:
    """Evaluate new samples at engine clock `now` (seconds); see the module docstring.
    `rejudge_more`: rain channels to judge again at their newest sample (late samples a restart
    put in their rings before this tick)."""
    n = setup.n
    if s.ch.size:
        if s.ch.min() < 0 or s.ch.max() >= n:
            raise InvalidInput("sample channel index out of range")
        # A sample sent twice in one batch (sorted: the copy is adjacent) counts once
        # (outside trial: it entered the rain sums twice, blue with no rain to match) ...
        once = np.r_[True, (s.ch[1:] != s.ch[:-1]) | (s.t[1:] != s.t[:-1])]
        # ... and one at or behind its channel's watermark is late (a backlog after live
        # reports resumed) or a replay: merged into the history, judged at this step.
        behind = s.t <= state.watermark[s.ch]
        late = once & behind
        fresh = once & ~behind
        mark = state.watermark.copy() if late.any() else state.watermark
        rejudge, redo = merge_late(setup, state, Samples(s.ch[late], s.t[late], s.v[late],
                                                         s.q[late]))
        late_ch = np.unique(s.ch[late])
        s = Samples(s.ch[fresh], s.t[fresh], s.v[fresh], s.q[fresh])
    else:
        rejudge = late_ch = np.zeros(0, np.int64)
        redo, mark = Samples.empty(), state.watermark
    unwatched = np.isnan(state.first_watch)
    if unwatched.any():  # a fresh start or a registry change: every device's silence anew
        state.first_watch = np.where(unwatched, now, state.first_watch)
        state.silent_at = None
    changes: list[Change] = []
    last_raise = np.zeros(n, LEVEL_DTYPE)
    seen = np.zeros(n, bool)
    assert state.disp is not None
    targets: list[IntArray] = []
    # Rain channels whose sums late samples moved and that get no new sample now are judged
    # again at their newest data time (alerts/engine/late.py), before the new samples.
    if rejudge_more is not None:
        rejudge = np.union1d(rejudge, rejudge_more[np.isfinite(state.watermark[rejudge_more])])
    rejudge = np.setdiff1d(rejudge, s.ch)
    # Series channels cut back by late samples are judged again in time order before the
    # new samples (alerts/engine/late_series.py); the silence of that span was judged live.
    redo_parts = time_rounds(redo) if redo.ch.size else []
    parts = redo_parts + time_rounds(s)
    if rejudge.size:
        parts = [Samples(rejudge, state.watermark[rejudge], np.zeros(rejudge.size),
                         np.zeros(rejudge.size, np.int8))] + parts
    last_redo = len(redo_parts) - (0 if rejudge.size else 1)
    for i, part in enumerate(parts):
        again = bool(rejudge.size) and i == 0
        issued = state.disp.fc[:, 3].copy()
        if not again and i > last_redo:
            changes += silence.returns(setup, state, part)
        u, r, changed_ch = _judge(setup, state, part, regional, again)
        last_raise[u], seen[u] = r, True
        changes += tq.quality_changes(setup, state, u)
        level_changes, fused = _target_changes(setup, state, now, changed_ch, regional,
                                               reports)
        changes += level_changes + forecast_updates(
            setup, state, issued, level_changes, lambda c: channel_evidence(setup, state, c))
        targets.append(fused)
        if i == last_redo and redo.ch.size:  # judged again up to where they were
            changes = disp_late.restamp(setup, state, changes)
            back = np.unique(redo.ch)
            state.watermark[back] = np.fmax(state.watermark[back], mark[back])
            silence.touch(setup, state, back)
    maintenance = state.maintenance.copy()
    quiet, silent_devs = silence.at_clock(setup, state, now)
    changes += quiet
    u = np.flatnonzero(seen)
    # What this tick can have changed in the saved state (alerts/engine/state.py compares
    # only these rows): the channels that got samples or were first watched, their devices
    # and those that fell silent, and the targets fused again.
    ch = np.union1d(np.union1d(s.ch, np.union1d(late_ch, rejudge)),
                    np.flatnonzero(unwatched))
    disp = ch[setup.group_of[ch] == GROUPS.index("displacement")]
    touched = {"channel": ch, "target": np.unique(np.concatenate(targets)),
               "device": np.union1d(setup.device[ch],
                                    np.flatnonzero(state.maintenance != maintenance)),
               "disp": setup.row_in_group[disp]}
    return state, TickResult(changes, u, last_raise[u], silent_devs, touched)


def time_rounds(s: Samples) -> list[Samples]:
    """Cut samples (sorted by channel, then time) into rounds along data time: each round is
    the longest run of the time-sorted samples holding at most one sample per channel,
    sorted by channel. One round when no channel has two samples (the steady state)."""
    if s.ch.size == 0:
        return [s]
    if np.all(s.ch[1:] != s.ch[:-1]):
        return [s]
    order = np.lexsort((s.ch, s.t))
    round_of = np.empty(order.size, np.int64)
    last: dict[int, int] = {}
    r = 0
    for i, c in enumerate(s.ch[order].tolist()):  # sequential by nature; backlogs only
        if last.get(c) == r:
            r += 1
        last[c] = r
        round_of[i] = r
    final = order[np.lexsort((s.ch[order], round_of))]
    bounds = np.searchsorted(np.sort(round_of), np.arange(1, r + 1))
    return [Samples(s.ch[i], s.t[i], s.v[i], s.q[i]) for i in np.split(final, bounds)]


def _judge(setup: Setup, state: EngineState, s: Samples, regional: LevelArray | None,
           again: bool = False) -> tuple[IntArray, LevelArray, IntArray]:
    """Evaluate at most one new sample per channel; returns the channels evaluated, their
    raise levels after the quality gate, and the channels whose level changed. `again`:
    rain channels judged again at their newest sample (late samples moved their sums)."""
    n = setup.n
    raise_lv = np.zeros(n, LEVEL_DTYPE)
    hold = np.zeros(n, LEVEL_DTYPE)
    flagged = np.zeros(n, bool)
    updated_mask = np.zeros(n, bool)
    group = setup.group_of[s.ch]
    for gi, g in enumerate(GROUPS):
        in_g = group == gi
        if not in_g.any():
            continue
        idx = s.ch[in_g]
        res, chans = _evaluate_group(setup, state, g, idx, s.t[in_g], s.v[in_g], s.q[in_g],
                                     again)
        raise_lv[chans], hold[chans], flagged[chans] = res.raise_level, res.hold_level, \
            res.flagged
        updated_mask[chans] = True
        for name, col in res.evidence.items():
            full = state.evidence.setdefault(
                name, np.full((n,) + col.shape[1:], np.nan))
            full[chans] = col
    if s.ch.size and not again:
        np.fmax.at(state.watermark, s.ch, s.t)
        silence.touch(setup, state, s.ch)
    u = np.flatnonzero(updated_mask)
    r, h, f = raise_lv[u], hold[u], flagged[u]
    r = np.where(f, np.minimum(r, state.clean_raise[u]), r).astype(LEVEL_DTYPE)
    h = np.where(f, np.minimum(h, state.clean_hold[u]), h).astype(LEVEL_DTYPE)
    r, h = tq.hold_suspicious(setup, state, u, r, np.maximum(h, r).astype(LEVEL_DTYPE),
                              regional)
    clean = ~f & ~state.suspicious[u]
    state.clean_raise[u] = np.where(clean, r, state.clean_raise[u])
    state.clean_hold[u] = np.where(clean, h, state.clean_hold[u])
    # A device's maintenance window: its readings neither raise nor lower the level.
    maint = in_maintenance(setup.p, u, state.watermark[u])
    r = np.where(maint, 0, r).astype(LEVEL_DTYPE)
    h = np.where(maint, state.level[u], h).astype(LEVEL_DTYPE)
    before = HysteresisState(state.level[u], state.lower_since[u], state.changed_at[u])
    after, changed = step_levels(before, r, h, state.watermark[u], setup.p["dwell_s"][u])
    state.level[u], state.lower_since[u], state.changed_at[u] = (
        after.level, after.lower_since, after.changed_at)
    return u, r, u[changed]


def _evaluate_group(setup: Setup, state: EngineState, g: str, idx: IntArray, t: FloatArray,
                    v: FloatArray, q: np.ndarray, again: bool = False
                    ) -> tuple[tm.MethodResult, IntArray]:
    rows_in = setup.row_in_group[idx]
    ring = state.rings[g]
    p = setup.p
    verdict: Verdict
    if g == "rainfall" and again:  # the sums as late samples left them: nothing appended
        assert state.rain is not None
        acc = state.rain.totals_mm(ring, rows_in)
        _, _, q_last = ring.last(rows_in, 1)
        return tm.rainfall(acc, p["rain_table_mm"][idx], p["clear_ratio"][idx],
                           q_last[:, 0]), idx
    if g == "rainfall":
        assert state.rain is not None
        q, verdict = tq.screen_rain(setup, state.screen, ring, rows_in, idx, t, v, q)
        uniq = state.rain.update(ring, rows_in, t, v, q)
        ch = setup.group_rows[g][uniq]
        tq.record(state, ch, t, v, _muted(setup, ch, t, verdict))
        awake = ~in_maintenance(setup.p, ch, t)
        tq.record_dry(setup, state, ch[awake], t[awake])
        acc = state.rain.totals_mm(ring, uniq)
        _, _, q_last = ring.last(uniq, 1)
        return tm.rainfall(acc, p["rain_table_mm"][ch], p["clear_ratio"][ch], q_last[:, 0]), ch
    uniq, _, _ = ring.append(rows_in, t, v, q)
    ch = setup.group_rows[g][uniq]
    tq.record(state, ch, t, v, _muted(setup, ch, t, tq.screen_series(
        setup, state.screen, ring, uniq, ch)))
    ratio = p["clear_ratio"][ch]
    if g == "displacement":
        # Each newest sample; the history leaves out what the device marked bad and what the
        # screen found implausible, but keeps outliers pending confirmation: its hourly
        # medians absorb a spike, and the fast rise before a failure is no spike.
        tt, vv, qq = ring.last(uniq, 1)
        stored = q[np.argsort(rows_in, kind="stable")]  # one sample per channel per round
        q_hist = np.where(qq[:, 0] == tq.IMPLAUSIBLE_Q, qq[:, 0], stored)
        return _evaluate_displacement(setup, state, ch, tt[:, 0], vv[:, 0], q_hist)
    if g == "water_level":
        tt, vv, qq = ring.last(uniq, ring.k)
        th = StationThresholds.build(p["warning_m"][ch], p["guaranteed_m"][ch],
                                     p["historical_max_m"][ch], p["approach_margin_m"][ch])
        return tm.water_level(tt, vv, qq, th=th, rate_thr=p["rise_rate_m_per_h"][ch],
                              ratio=ratio), ch
    tt, vv, qq = ring.last(uniq, ring.k)
    if g in ("water_quality", "air_quality"):
        names = GB3838_ITEM if g == "water_quality" else AQI_TABLE
        items = [names[setup.channels[c].spec] for c in ch]
        return tm.pollution(vv, qq, items, g == "air_quality", persist_n=p["persist_n"][ch],
                            persist_m=p["persist_m"][ch]), ch
    return tm.threshold(vv, qq, thr=p["thresholds"][ch], ratio=ratio), ch


def _muted(setup: Setup, ch: IntArray, t: FloatArray, v: Verdict) -> Verdict:
    """Quality findings inside a maintenance window are expected, not reported."""
    m = in_maintenance(setup.p, ch, t)
    if not m.any():
        return v
    return replace(v, implausible=v.implausible & ~m, suspicious=v.suspicious & ~m)


def _evaluate_displacement(setup: Setup, state: EngineState, ch: IntArray, t: FloatArray,
                          v: FloatArray, q: np.ndarray) -> tuple[tm.MethodResult, IntArray]:
    """Displacement is judged per closed hour (alerts/engine/displacement.py); channels whose
    hour is still open are not evaluated. A step found outside a maintenance window is a
    data-quality finding of its channel (tick_quality's device alert names it)."""
    assert state.disp is not None
    res = disp_late.add_readings(setup, state, ch, t, v, q)  # checkpoints for late ones
    for e in res.steps:
        if not e.expected:
            c = int(setup.group_rows["displacement"][e.row])
            found_at = float(t[np.flatnonzero(ch == c)[0]])  # the reading that confirmed it
            tq.record_step(state, c, found_at, e.time, e.jump_mm, e.kind)
    out = setup.group_rows["displacement"][res.rows]
    nothing = np.zeros(out.size, bool)
    return tm.MethodResult(res.raise_level, res.hold_level, nothing, {}), out


def _target_changes(setup: Setup, state: EngineState, now: float, changed_ch: IntArray,
                    regional: LevelArray | None,
                    reports: LevelArray | None = None) -> tuple[list[Change], IntArray]:
    """Level changes of the targets whose channels changed level or whose floor (regional
    warnings, field reports) moved, and those targets; every other target's fused levels
    are what was emitted last (fusion reads only its own channels' levels and its floor),
    so only these are fused again."""
    n_t = len(setup.targets)
    # Field reports floor the combined level as regional warnings do (field_reports.py).
    floor = regional if reports is None else (
        reports if regional is None else np.maximum(regional, reports))
    reg = np.zeros(n_t, LEVEL_DTYPE) if floor is None else np.asarray(floor, LEVEL_DTYPE)
    if state.fused_regional is None or state.fused_regional.shape != reg.shape:
        ts = np.arange(n_t)  # first fusion of this state: every target
    else:
        ts = np.union1d(setup.target[changed_ch], np.flatnonzero(reg != state.fused_regional))
    state.fused_regional = reg.copy()
    if ts.size == 0:
        return [], ts
    members, starts = gather(setup.target_members, ts)
    local = np.repeat(np.arange(ts.size), np.diff(np.r_[starts, members.size]))
    fam = fusion.kind_levels(state.level[members], local, setup.family[members], ts.size,
                             setup.fusion_k[ts])
    fused, both = fusion.combine(fam, setup.fusion_at_least[ts, 0],
                                 setup.fusion_at_least[ts, 1],
                                 None if floor is None else reg[ts])
    combined = np.where(setup.is_hazard[ts] & (fused > fam.max(axis=1)), fused, 0)
    new = np.concatenate([fam, combined[:, None]], axis=1).astype(LEVEL_DTYPE)
    diff = np.argwhere(new != state.emitted[ts])
    changes = []
    data_t = np.full(ts.size, np.nan)
    if changed_ch.size:
        np.fmax.at(data_t, np.searchsorted(ts, setup.target[changed_ch]),
                   state.watermark[changed_ch])
    for li, ki in diff:
        ti = int(ts[li])
        members_t, _ = gather(setup.target_members, np.array([ti]))
        if ki != COMBINED:
            members_t = members_t[setup.family[members_t] == ki]
        when = data_t[li] if np.isfinite(data_t[li]) else now
        ev: dict[str, Any] = {"channels": [channel_evidence(setup, state, int(c))
                                           for c in members_t if state.level[c] > 0
                                           or c in changed_ch],
                              "previous_level": int(state.emitted[ti, ki])}
        if ki == COMBINED:
            ev["kind_levels"] = {KINDS[j]: int(fam[li, j]) for j in range(N_FAM)}
            ev["regional_floor"] = int(regional[ti]) if regional is not None else 0
            ev["field_report_floor"] = int(reports[ti]) if reports is not None else 0
            ev["rain_and_deformation"] = bool(both[li])
        ttype, tid = setup.targets[ti]
        changes.append(Change(ttype, tid, KINDS[ki], Level(int(new[li, ki])),
                              _dt(when), ev))
    state.emitted[ts] = new
    return changes, ts


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)
