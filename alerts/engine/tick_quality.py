"""The data-quality step of an engine tick: alerts/methods/quality.py's `screen` run on each
method group's newest samples, its verdicts written into the sample rings, the hold of
suspicious patterns until corroborated, and the devices' data-quality levels.

Ring marks (the stored quality column of the engine's working memory): an implausible sample
gets IMPLAUSIBLE_Q and an outlier pending confirmation SPIKE_Q, both ≥ 2, so every method
leaves them out (rain totals count them as no rain); a confirmed onset gets its pending
samples back. `fill_memory` recomputes the marks when the rings are refilled after a restart
by running the same screen over the refilled samples.

Data-quality alerts (hazard kind "data_quality", on the device): blue while any channel of
the device had an implausible value or a suspicious pattern within its `quality_hold_s`
(data time); the evidence names each finding. A maintainer's alert, never a hazard level.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine import rain_interval
from alerts.engine.ring import Ring
from alerts.engine.rule_params import RAIN_WINDOWS_H
from alerts.engine.tick_setup import (
    GROUPS,
    Change,
    EngineState,
    Samples,
    Setup,
    gather,
    refill_displacement,
)
from alerts.methods.levels import LEVEL_DTYPE, Level, LevelArray
from alerts.methods.quality import (
    HAMPEL_HALF,
    MAX_CONFIRM,
    SPIKE_Q,
    ScreenParams,
    ScreenState,
    Verdict,
    rain_envelope_mm,
    screen,
)
from alerts.methods.ragged import FloatArray, IntArray
from alerts.methods.rain_runs import RUN_MIN, run_implied_level

IMPLAUSIBLE_Q = 3
IMPLAUSIBLE, REPEATING = 1, 2
STEP, SLIP = 3, 4  # displacement steps (alerts/engine/displacement.py)
DRY = 5  # a rain gauge reporting zeros while a neighbour warns


def _params(setup: Setup, ch: IntArray) -> ScreenParams:
    p = setup.p
    rain = setup.group_of[ch] == GROUPS.index("rainfall")
    nan = np.full(ch.size, np.nan)
    return ScreenParams(
        hampel=~rain, hampel_k=p["hampel_k"][ch], min_dev=p["hampel_min_deviation"][ch],
        confirm=p["onset_confirm_samples"][ch],
        fast_rate_per_s=np.where(setup.group_of[ch] == GROUPS.index("water_level"),
                                 p["onset_max_rate_per_h"][ch] / 3600.0, np.nan),
        fast_confirm=p["onset_fast_confirm_samples"][ch], stuck_count=p["stuck_count"][ch],
        exempt_zero=rain, low=p["implausible_min"][ch], high=p["implausible_max"][ch],
        rate_per_s=np.where(rain, nan, p["implausible_rate_per_h"][ch] / 3600.0),
        rain_10min=np.where(rain, p["rain_implausible_mm_10min"][ch], nan),
        rain_1h=np.where(rain, p["rain_implausible_mm_1h"][ch], nan))


def screen_rain(setup: Setup, st: ScreenState, ring: Ring, rows: IntArray, ch: IntArray,
                t: FloatArray, v: FloatArray, q: np.ndarray) -> tuple[np.ndarray, Verdict]:
    """Judge new rain increments before they enter the running sums; returns the qualities
    to store (implausible ones count as no rain)."""
    tt, _, _ = ring.last(rows, rain_interval.SPACINGS + 1)
    every = rain_interval.observed(tt, setup.p["interval_s"][ch])
    prev_t = rain_since(ring.newest_time(rows), t, every)
    prev = np.full((ch.size, 2 * HAMPEL_HALF), np.nan)
    sp = _params(setup, ch)
    sp = replace(sp, stuck_count=rain_interval.stuck_count(
        sp.stuck_count, setup.p["interval_s"][ch], every))
    verdict = screen(st, ch, sp, t, v, q, prev, prev_t)
    # A run whose own rain would lift the level above the hold's cap is held from its
    # RUN_MIN-th sample, not only from its stuck_count-th (alerts/methods/rain_runs.py).
    lifts = run_implied_level(st.run_val[ch], st.run_len[ch], every,
                              setup.p["rain_table_mm"][ch], RAIN_WINDOWS_H) > setup.p[
        "suspicious_max_level"][ch]
    early = (~verdict.implausible & (sp.stuck_count > 0) & (v > 0) & lifts
             & (st.run_len[ch] >= np.minimum(RUN_MIN, sp.stuck_count)))
    verdict = replace(verdict, suspicious=verdict.suspicious | early)
    return np.where(verdict.implausible, IMPLAUSIBLE_Q, q).astype(np.int8), verdict


def rain_since(prev_t: FloatArray, t: FloatArray, interval_s: FloatArray) -> FloatArray:
    """Start of the time a rain increment at t covers: its previous sample, but never more
    than one reporting interval back (the interval the gauge keeps, alerts/engine/
    rain_interval.py; NaN prev: the gauge's first). A gauge reporting every
    10 minutes sends 10 minutes of rain after a data gap too (the lost reports are lost, or
    come later with their own times), so a 95.5 mm sample after a 2-hour gap is judged
    against the 10-minute envelope, not the 2-hour one (outside trial, issue 7)."""
    return np.asarray(np.where(interval_s > 0, np.fmax(prev_t, t - interval_s), prev_t))


def screen_series(setup: Setup, st: ScreenState, ring: Ring, rows: IntArray, ch: IntArray,
                  st_rows: IntArray | None = None) -> Verdict:
    """Judge the newest sample of each row just appended to `ring`, and mark the ring.
    `st_rows`: the rows of `st` that are these channels' (default: `ch`, the engine's)."""
    tt, vv, qq = ring.last(rows, 2 * HAMPEL_HALF + 1)
    prev = np.where(qq[:, :-1] >= SPIKE_Q, np.nan, vv[:, :-1])
    prev_all = np.where(qq[:, :-1] >= IMPLAUSIBLE_Q, np.nan, vv[:, :-1])
    verdict = screen(st, ch if st_rows is None else st_rows, _params(setup, ch), tt[:, -1],
                     vv[:, -1], qq[:, -1], prev, tt[:, -2], prev_all)
    ring.mark_last(rows[verdict.pending], SPIKE_Q)
    ring.mark_last(rows[verdict.implausible], IMPLAUSIBLE_Q)
    back = np.isfinite(verdict.reinstate_from)
    if back.any():
        ring.reinstate(rows[back], verdict.reinstate_from[back], verdict.reinstate_q[back],
                       SPIKE_Q, MAX_CONFIRM + 1)
    return verdict


def record(state: EngineState, ch: IntArray, t: FloatArray, v: FloatArray, verdict: Verdict
           ) -> None:
    """Remember each channel's newest finding and whether it is suspicious now."""
    code = np.where(verdict.implausible, IMPLAUSIBLE, np.where(verdict.suspicious,
                                                               REPEATING, 0))
    has = code > 0
    c = ch[has]
    state.finding_t[c], state.finding_code[c] = t[has], code[has]
    state.finding_value[c], state.finding_limit[c] = v[has], verdict.limit[has]
    state.suspicious[ch] = verdict.suspicious


def record_dry(setup: Setup, state: EngineState, ch: IntArray, t: FloatArray) -> None:
    """A rain gauge that has reported only zeros for its stuck run (two hours of samples)
    while a neighbouring gauge warns on clean data is a finding for the maintainer (a
    blocked funnel or a dead bucket): outside trial, a gauge at 0 beside one at 166 mm
    raised nothing. It never changes a level: no rain is no evidence."""
    p, sc = setup.p, state.screen
    dry = (sc.run_val[ch] == 0) & (p["stuck_count"][ch] > 0) & (
        sc.run_len[ch] >= p["stuck_count"][ch])
    if not dry.any():
        return
    c = ch[dry]
    hit = corroborated(setup, state, c, None)
    c, when = c[hit], t[dry][hit]
    state.finding_t[c], state.finding_code[c] = when, DRY
    state.finding_value[c], state.finding_limit[c] = 0.0, np.nan


def record_step(state: EngineState, c: int, found_at: float, step_t: float, jump_mm: float,
                kind: str) -> None:
    """A displacement step of channel c, found at data time `found_at` (its plateau confirmed):
    an offset removed from the velocity series, or a slip kept as movement."""
    state.finding_t[c] = found_at
    state.finding_code[c] = STEP if kind == "offset" else SLIP
    state.finding_value[c] = jump_mm
    state.finding_limit[c] = step_t  # for a step: when it happened


def corroborated(setup: Setup, state: EngineState, u: IntArray,
                 regional: LevelArray | None) -> np.ndarray:
    """A neighbour of the same method warns on clean data, or a regional warning covers the
    channel's target."""
    off, nb = setup.neighbours
    lengths = off[u + 1] - off[u]  # only these channels' neighbours, not every pair
    starts = np.cumsum(lengths) - lengths
    mine = nb[np.arange(int(lengths.sum())) - np.repeat(starts - off[u], lengths)]
    good = (state.level[mine] >= Level.BLUE) & ~state.suspicious[mine]
    out = np.bincount(np.repeat(np.arange(u.size), lengths), weights=good,
                      minlength=u.size) > 0
    if regional is not None:
        out |= np.asarray(regional)[setup.target[u]] >= Level.BLUE
    return np.asarray(out)


def hold_suspicious(setup: Setup, state: EngineState, u: IntArray, r: LevelArray,
                    h: LevelArray, regional: LevelArray | None
                    ) -> tuple[LevelArray, LevelArray]:
    """Cap the raise and hold levels of suspicious, uncorroborated channels at
    suspicious_max_level (or the level their last clean sample held, if higher)."""
    held = state.suspicious[u] & ~corroborated(setup, state, u, regional)
    cap_r = np.maximum(setup.p["suspicious_max_level"][u], state.clean_raise[u])
    cap_h = np.maximum(setup.p["suspicious_max_level"][u], state.clean_hold[u])
    return (np.where(held, np.minimum(r, cap_r), r).astype(LEVEL_DTYPE),
            np.where(held, np.minimum(h, cap_h), h).astype(LEVEL_DTYPE))


def quality_changes(setup: Setup, state: EngineState, touched: IntArray) -> list[Change]:
    """Data-quality level changes of the devices of channels `touched` this round."""
    if touched.size == 0:
        return []
    devs = np.unique(setup.device[touched])
    members, starts = gather(setup.device_members, devs)  # only these devices' channels
    with np.errstate(invalid="ignore"):
        active = np.isfinite(state.finding_t[members]) & (
            state.watermark[members] - state.finding_t[members]
            <= setup.p["quality_hold_s"][members])
    new = np.where(np.logical_or.reduceat(active, starts), int(Level.BLUE), 0).astype(
        LEVEL_DTYPE)
    out = []
    ends = np.r_[starts[1:], members.size]
    for i in np.flatnonzero(new != state.quality[devs]):
        d, mine = int(devs[i]), members[starts[i]:ends[i]]
        when = float(np.nanmax(state.watermark[mine]))
        findings = [_finding(setup, state, int(c)) for c in mine[active[starts[i]:ends[i]]]]
        out.append(Change("device", setup.devices[d], "data_quality", Level(int(new[i])),
                          datetime.fromtimestamp(when, UTC),
                          {"reason": "data-quality finding" if new[i] else "data clean again",
                           "channels": findings}))
        state.quality[d] = new[i]
    return out


def _finding(setup: Setup, state: EngineState, c: int) -> dict[str, Any]:
    info = setup.channels[c]
    code = int(state.finding_code[c])
    if code in (STEP, SLIP):
        return {"channel_id": info.channel_id, "device_id": info.device_id,
                "sensor": f"{info.kind}.{info.spec}",
                "finding": ("step: offset removed from velocity" if code == STEP
                            else "slip: a step that keeps moving, judged as movement"),
                "offset_mm": round(float(state.finding_value[c]), 1),
                "step_time": datetime.fromtimestamp(float(state.finding_limit[c]),
                                                    UTC).isoformat()}
    name = "implausible" if code == IMPLAUSIBLE else "dry while a neighbour warns" if (
        code == DRY) else ("repeating" if setup.params[c].method == "rainfall" else "flat")
    ev: dict[str, Any] = {"channel_id": info.channel_id, "device_id": info.device_id,
                          "sensor": f"{info.kind}.{info.spec}", "finding": name,
                          "value": float(state.finding_value[c]),
                          "data_time": datetime.fromtimestamp(float(state.finding_t[c]),
                                                              UTC).isoformat()}
    if code == IMPLAUSIBLE and np.isfinite(state.finding_limit[c]):
        ev["limit"] = round(float(state.finding_limit[c]), 3)
    if code in (REPEATING, DRY):
        ev["repeated"] = int(state.screen.run_len[c])
    if code == REPEATING:
        ev["held_at_most"] = Level(int(setup.p["suspicious_max_level"][c])).name.lower()
    return ev


def fill_memory(setup: Setup, state: EngineState, s: Samples) -> None:
    """Put already-evaluated samples back into the rings (after a restart), with the marks
    the screen gives them (run afresh over the refilled samples; the saved screen state is
    left as it was). Rain: every sample (the sums need them), screened at once; other
    groups: only what their rings keep, plus a Hampel window to judge the first of those."""
    scratch = ScreenState.initial(setup.n)
    rain = np.isin(s.ch, setup.group_rows["rainfall"])
    if rain.any():
        assert state.rain is not None
        ch, t, v, q = s.ch[rain], s.t[rain], s.v[rain], s.q[rain]
        first = np.r_[True, ch[1:] != ch[:-1]]
        prev_t = rain_since(np.where(first, np.nan, np.r_[np.nan, t[:-1]]), t,
                            rain_interval.observed_before(ch, t, setup.p["interval_s"][ch]))
        # The only rain marks are implausible increments, which need only the interval: one
        # vector over all samples gives the marks the ticks gave.
        p = setup.p
        with np.errstate(invalid="ignore"):
            bad = ((v > rain_envelope_mm(t - prev_t, p["rain_implausible_mm_10min"][ch],
                                         p["rain_implausible_mm_1h"][ch]))
                   | (v < p["implausible_min"][ch]) | (v > p["implausible_max"][ch]))
        q = np.where(bad, IMPLAUSIBLE_Q, q).astype(np.int8)
        state.rain.update(state.rings["rainfall"], setup.row_in_group[ch], t, v, q)
    # Displacement: its hourly history needs every reloaded reading, not only the ring's.
    disp = np.isin(s.ch, setup.group_rows["displacement"])
    refill_displacement(setup, state, s.ch[disp], s.t[disp], s.v[disp], s.q[disp])
    keep = _last_per_channel(s.ch, max(state.rings[g].k for g in GROUPS if g != "rainfall")
                             + 2 * HAMPEL_HALF + 1) & ~rain
    series = Samples(s.ch[keep], s.t[keep], s.v[keep], s.q[keep])
    for part in split_by_rank(series):
        for g in GROUPS:
            sel = np.isin(part.ch, setup.group_rows[g])
            if g == "rainfall" or not sel.any():
                continue
            ch, rows = part.ch[sel], setup.row_in_group[part.ch[sel]]
            ring = state.rings[g]
            ring.append(rows, part.t[sel], part.v[sel], part.q[sel])
            screen_series(setup, scratch, ring, rows, ch)


def _last_per_channel(ch: IntArray, n: int) -> np.ndarray:
    """Mask of each channel's last n samples (samples sorted by channel, then time)."""
    if ch.size == 0:
        return np.zeros(0, bool)
    end = np.r_[np.flatnonzero(ch[1:] != ch[:-1]), ch.size - 1]
    last_of = np.repeat(end, np.diff(np.r_[-1, end]))
    return np.asarray(last_of - np.arange(ch.size) < n)


def split_by_rank(s: Samples) -> list[Samples]:
    """Samples (sorted by channel, then time) split by their rank within their channel."""
    if s.ch.size == 0:
        return []
    start = np.flatnonzero(np.r_[True, s.ch[1:] != s.ch[:-1]])
    cnt = np.diff(np.r_[start, s.ch.size])
    rank = np.arange(s.ch.size) - np.repeat(start, cnt)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(1, rank.max() + 1))
    return [Samples(s.ch[i], s.t[i], s.v[i], s.q[i]) for i in np.split(order, bounds)]
