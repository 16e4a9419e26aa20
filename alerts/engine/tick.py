"""One engine tick: new samples in, channel levels and target level changes out. Pure: no I/O.

`tick(setup, state, samples, now, regional)` evaluates every channel that received samples,
vectorised per method group (alerts/engine/tick_methods.py), then for all channels at once applies
the quality gate (a flagged sample can only confirm the level of the last clean one), the
hysteresis state machine (raise at once; lower only after `dwell_s` below the clear line,
measured in the channel's own data time), silence detection on the engine clock, fusion per
target and hazard kind, and the regional floor. What comes out is a list of `Change`s: a
target's level for one hazard kind moved (a level change is an event, not a new alert).

Time: every sample is judged at its own timestamp (a tick with several new samples of one
channel evaluates them in rounds, one sample per channel per round); `now` (the engine clock,
driven by the caller) only decides silence. So a backlog, a burst or a replay yields the same
changes at the same data times as living through it sample by sample. Rounds align samples
by rank, not by time: a target whose channels report at different intervals gets its fused
level's data time from the newest member of each round.

Targets and kinds: a channel's warnings land on its hazard point, else its site, else its own
device (rules.ChannelInfo.target). Per target there is one level per hazard kind (rainfall,
deformation, water_level, water_quality, air_quality), fused over that kind's channels by
maximum or k-of-n. Hazard points also get a "combined" level when fusion across kinds says
more than any single kind: rainfall ≥ yellow with deformation ≥ blue raises by one (rain
explains why the slope moves), and a valid regional warning sets a floor. Silent devices get a
"maintenance" change on their device (blue while silent; it never feeds a hazard level).

The state owns working memory (sample rings) that the tick updates in place: a caller hands
the state to `tick` and uses only the returned one. `Setup` is immutable and rebuilt when the
registry or the rules change. The types, `build_setup` and `fill_memory` live in
alerts/engine/tick_setup.py (re-exported here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine import tick_methods as tm
from alerts.engine.rules import AQI_TABLE, GB3838_ITEM, RAIN_WINDOWS_H
from alerts.engine.tick_setup import (
    COMBINED,
    GROUPS,
    KINDS,
    N_FAM,
    RING_K,
    SPIKE_Q,
    Change,
    EngineState,
    Samples,
    Setup,
    TickResult,
    build_setup,
    fill_memory,
)
from alerts.methods.levels import LEVEL_DTYPE, Level, LevelArray
from alerts.methods.ragged import FloatArray, IntArray
from geowarn.errors import InvalidInput

__all__ = ["KINDS", "RING_K", "Change", "EngineState", "Samples", "Setup", "TickResult",
           "build_setup", "fill_memory", "tick"]


def tick(setup: Setup, state: EngineState, s: Samples, now: float,
         regional: LevelArray | None = None) -> tuple[EngineState, TickResult]:
    """Evaluate new samples at engine clock `now` (seconds); see the module docstring."""
    n = setup.n
    if s.ch.size:
        if s.ch.min() < 0 or s.ch.max() >= n:
            raise InvalidInput("sample channel index out of range")
        fresh = ~(s.t <= state.watermark[s.ch])  # replays of processed samples are skipped
        s = Samples(s.ch[fresh], s.t[fresh], s.v[fresh], s.q[fresh])
    state.first_watch = np.where(np.isnan(state.first_watch), now, state.first_watch)
    changes: list[Change] = []
    last_raise = np.zeros(n, LEVEL_DTYPE)
    seen = np.zeros(n, bool)
    # Round j holds the j-th new sample of every channel, so each sample is judged at its own
    # time: a backlog (catch-up after a restart, a burst through the broker) gives the same
    # levels at the same data times as living through it one sample per channel per tick.
    for part in _rounds(s):
        u, r, changed_ch = _judge(setup, state, part)
        last_raise[u], seen[u] = r, True
        changes += _target_changes(setup, state, now, changed_ch, regional)
    silent = _silence(setup, state, now)
    changes += _maintenance_changes(setup, state, now, silent)
    silent_devs = [setup.devices[i] for i in np.flatnonzero(silent)]
    u = np.flatnonzero(seen)
    return state, TickResult(changes, u, last_raise[u], silent_devs)


def _rounds(s: Samples) -> list[Samples]:
    """Split samples (sorted by channel, then time) by their rank within their channel."""
    if s.ch.size == 0:
        return [s]
    start = np.flatnonzero(np.r_[True, s.ch[1:] != s.ch[:-1]])
    cnt = np.diff(np.r_[start, s.ch.size])
    rank = np.arange(s.ch.size) - np.repeat(start, cnt)
    if rank.max() == 0:
        return [s]
    order = np.argsort(rank, kind="stable")  # keeps channel order inside each round
    bounds = np.searchsorted(rank[order], np.arange(1, rank.max() + 1))
    return [Samples(s.ch[i], s.t[i], s.v[i], s.q[i]) for i in np.split(order, bounds)]


def _judge(setup: Setup, state: EngineState, s: Samples
           ) -> tuple[IntArray, LevelArray, IntArray]:
    """Evaluate at most one new sample per channel; returns the channels evaluated, their
    raise levels after the quality gate, and the channels whose level changed."""
    n = setup.n
    raise_lv = np.zeros(n, LEVEL_DTYPE)
    hold = np.zeros(n, LEVEL_DTYPE)
    flagged = np.zeros(n, bool)
    updated_mask = np.zeros(n, bool)
    for g in GROUPS:
        in_g = np.isin(s.ch, setup.group_rows[g]) if s.ch.size else np.zeros(0, bool)
        if not in_g.any():
            continue
        idx = s.ch[in_g]
        res, chans = _evaluate_group(setup, state, g, idx, s.t[in_g], s.v[in_g], s.q[in_g])
        if res.spike is not None and res.spike.any():
            state.rings[g].mark_last(setup.row_in_group[chans[res.spike]], SPIKE_Q)
        raise_lv[chans], hold[chans], flagged[chans] = res.raise_level, res.hold_level, \
            res.flagged
        updated_mask[chans] = True
        for name, col in res.evidence.items():
            full = state.evidence.setdefault(
                name, np.full((n,) + col.shape[1:], np.nan))
            full[chans] = col
    if s.ch.size:
        np.fmax.at(state.watermark, s.ch, s.t)
    u = np.flatnonzero(updated_mask)
    r, h, f = raise_lv[u], hold[u], flagged[u]
    r = np.where(f, np.minimum(r, state.clean_raise[u]), r).astype(LEVEL_DTYPE)
    h = np.where(f, np.minimum(h, state.clean_hold[u]), h).astype(LEVEL_DTYPE)
    state.clean_raise[u] = np.where(f, state.clean_raise[u], r)
    state.clean_hold[u] = np.where(f, state.clean_hold[u], h)
    changed_ch = _hysteresis(setup, state, u, r, np.maximum(h, r).astype(LEVEL_DTYPE))
    return u, r, changed_ch


def _evaluate_group(setup: Setup, state: EngineState, g: str, idx: IntArray, t: FloatArray,
                    v: FloatArray, q: np.ndarray) -> tuple[tm.MethodResult, IntArray]:
    rows_in = setup.row_in_group[idx]
    ring = state.rings[g]
    p = setup.p
    if g == "rainfall":
        assert state.rain is not None
        uniq = state.rain.update(ring, rows_in, t, v, q)
        ch = setup.group_rows[g][uniq]
        acc = state.rain.totals_mm(ring, uniq)
        _, _, q_last = ring.last(uniq, 1)
        return tm.rainfall(acc, p["rain_table_mm"][ch], p["clear_ratio"][ch], q_last[:, 0]), ch
    if g == "displacement":
        _learn_reference(setup, state, idx, t, v)
    uniq, _, _ = ring.append(rows_in, t, v, q)
    ch = setup.group_rows[g][uniq]
    ratio, hk, hm = p["clear_ratio"][ch], p["hampel_k"][ch], p["hampel_min_deviation"][ch]
    if g == "displacement":
        tt, vv, qq = ring.last(uniq, tm.DISP_LOOKBACK)
        return tm.displacement(
            tt, vv, qq, sign=p["sign"][ch], baseline=state.baseline[ch],
            v_ref=_v_ref(setup, state, ch), vel_thr=p["velocity_mm_per_day"][ch],
            cum_thr=p["cumulative_mm"][ch], ratio=ratio, hampel_k=hk, hampel_min=hm,
            stuck=p["stuck_count"][ch]), ch
    if g == "water_level":
        tt, vv, qq = ring.last(uniq, ring.k)
        stages = np.stack([p["warning_m"][ch] - p["approach_margin_m"][ch], p["warning_m"][ch],
                           p["guaranteed_m"][ch], p["historical_max_m"][ch]], axis=1)
        return tm.water_level(tt, vv, qq, stages=stages, rate_thr=p["rise_rate_m_per_h"][ch],
                              ratio=ratio, hampel_k=hk, hampel_min=hm), ch
    tt, vv, qq = ring.last(uniq, ring.k)
    if g in ("water_quality", "air_quality"):
        names = GB3838_ITEM if g == "water_quality" else AQI_TABLE
        items = [names[setup.channels[c].spec] for c in ch]
        return tm.pollution(vv, qq, items, g == "air_quality", persist_n=p["persist_n"][ch],
                            persist_m=p["persist_m"][ch], hampel_k=hk, hampel_min=hm), ch
    return tm.threshold(vv, qq, thr=p["thresholds"][ch], ratio=ratio, hampel_k=hk,
                        hampel_min=hm, stuck=p["stuck_count"][ch]), ch


def _learn_reference(setup: Setup, state: EngineState, idx: IntArray, t: FloatArray,
                     v: FloatArray) -> None:
    """Baseline = first value; v̄ = least-squares rate over the first reference_hours."""
    first = np.isnan(state.ref_t0[idx])
    np.fmin.at(state.ref_t0, idx[first], t[first])
    base_nan = np.isnan(state.baseline[idx])
    if base_nan.any():
        order = np.flatnonzero(base_nan)
        uniq, pos = np.unique(idx[order], return_index=True)
        state.baseline[uniq] = v[order[pos]]
    rel = t - state.ref_t0[idx]
    use = rel < setup.p["reference_hours"][idx] * 3600.0
    x, y, i = rel[use] / 3600.0, v[use] * setup.p["sign"][idx[use]], idx[use]
    for arr, val in ((state.ref_n, np.ones_like(x)), (state.ref_st, x), (state.ref_sd, y),
                     (state.ref_stt, x * x), (state.ref_std, x * y)):
        np.add.at(arr, i, val)


def _v_ref(setup: Setup, state: EngineState, ch: IntArray) -> FloatArray:
    conf = setup.p["reference_rate_mm_per_day"][ch] / 86400.0
    n, st, sd = state.ref_n[ch], state.ref_st[ch], state.ref_sd[ch]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope_h = (n * state.ref_std[ch] - st * sd) / (n * state.ref_stt[ch] - st * st)
    done = state.watermark[ch] >= state.ref_t0[ch] + setup.p["reference_hours"][ch] * 3600.0
    learnt = np.where(done & (n >= 3), slope_h / 3600.0, np.nan)
    return np.where(np.isnan(conf), learnt, conf)


def _hysteresis(setup: Setup, state: EngineState, u: IntArray, r: LevelArray,
                h: LevelArray) -> IntArray:
    """alerts.methods.hysteresis.step_levels with per-channel data time and dwell; returns the
    channels whose level changed."""
    now = state.watermark[u]
    cur = state.level[u]
    up = r > cur
    wants_down = h < cur
    since = np.where(wants_down & np.isnan(state.lower_since[u]), now, state.lower_since[u])
    since = np.where(wants_down, since, np.nan)
    down = wants_down & (now - since >= setup.p["dwell_s"][u])
    new = np.where(up, r, np.where(down, h, cur)).astype(LEVEL_DTYPE)
    changed = new != cur
    state.level[u] = new
    state.lower_since[u] = np.where(changed, np.nan, since)
    state.changed_at[u] = np.where(changed, now, state.changed_at[u])
    return u[changed]


def _silence(setup: Setup, state: EngineState, now: float) -> np.ndarray:
    """Devices all of whose channels have been silent longer than their offline_after_s."""
    seen = np.fmax(state.watermark, state.first_watch)
    quiet = ~(now - seen <= setup.p["offline_after_s"])
    alive = np.bincount(setup.device, weights=(~quiet).astype(np.float64),
                        minlength=len(setup.devices))
    return np.asarray(alive == 0)


def _family_levels(setup: Setup, state: EngineState) -> LevelArray:
    n_t = len(setup.targets)
    grp = setup.target * N_FAM + setup.family
    n_ch = np.bincount(grp, minlength=n_t * N_FAM)
    need = np.minimum(np.repeat(setup.fusion_k, N_FAM), np.maximum(n_ch, 1))
    out = np.zeros(n_t * N_FAM, LEVEL_DTYPE)
    for lv in range(1, 5):
        reach = np.bincount(grp, weights=(state.level >= lv).astype(np.float64),
                            minlength=n_t * N_FAM)
        out = np.where((reach >= need) & (n_ch > 0), lv, out).astype(LEVEL_DTYPE)
    return out.reshape(n_t, N_FAM)


def _target_changes(setup: Setup, state: EngineState, now: float, changed_ch: IntArray,
                    regional: LevelArray | None) -> list[Change]:
    fam = _family_levels(setup, state)
    best = fam.max(axis=1)
    fused = best.copy()
    both = (fam[:, 0] >= Level.YELLOW) & (fam[:, 1] >= Level.BLUE)
    fused = np.where(both, np.minimum(fused + 1, int(Level.RED)), fused)
    if regional is not None:
        fused = np.maximum(fused, np.asarray(regional, LEVEL_DTYPE))
    is_hazard = np.array([t[0] == "hazard" for t in setup.targets], bool)
    combined = np.where(is_hazard & (fused > best), fused, 0)
    new = np.concatenate([fam, combined[:, None]], axis=1).astype(LEVEL_DTYPE)
    diff = np.argwhere(new != state.emitted)
    changes = []
    data_t = np.full(len(setup.targets), np.nan)
    if changed_ch.size:
        np.fmax.at(data_t, setup.target[changed_ch], state.watermark[changed_ch])
    for ti, ki in diff:
        members = np.flatnonzero(setup.target == ti)
        if ki != COMBINED:
            members = members[setup.family[members] == ki]
        when = data_t[ti] if np.isfinite(data_t[ti]) else now
        ev: dict[str, Any] = {"channels": [_channel_evidence(setup, state, int(c))
                                           for c in members if state.level[c] > 0
                                           or c in changed_ch],
                              "previous_level": int(state.emitted[ti, ki])}
        if ki == COMBINED:
            ev["kind_levels"] = {KINDS[j]: int(fam[ti, j]) for j in range(N_FAM)}
            ev["regional_floor"] = int(regional[ti]) if regional is not None else 0
            ev["rain_and_deformation"] = bool(both[ti])
        ttype, tid = setup.targets[ti]
        changes.append(Change(ttype, tid, KINDS[ki], Level(int(new[ti, ki])),
                              _dt(when), ev))
    state.emitted = new
    return changes


def _maintenance_changes(setup: Setup, state: EngineState, now: float, silent: np.ndarray
                         ) -> list[Change]:
    new = np.where(silent, int(Level.BLUE), 0).astype(LEVEL_DTYPE)
    out = []
    for d in np.flatnonzero(new != state.maintenance):
        members = np.flatnonzero(setup.device == d)
        last = np.nanmax(state.watermark[members]) if np.isfinite(
            state.watermark[members]).any() else None
        out.append(Change("device", setup.devices[d], "maintenance", Level(int(new[d])),
                          _dt(now), {"reason": "silent" if new[d] else "reporting again",
                                     "last_reading": _iso(last),
                                     "offline_after_s": float(np.max(
                                         setup.p["offline_after_s"][members]))}))
    state.maintenance = new
    return out


def _channel_evidence(setup: Setup, state: EngineState, c: int) -> dict[str, Any]:
    info, p = setup.channels[c], setup.params[c]
    ev: dict[str, Any] = {"channel_id": info.channel_id, "device_id": info.device_id,
                          "sensor": f"{info.kind}.{info.spec}", "method": p.method,
                          "level": int(state.level[c]), "data_time": _iso(state.watermark[c])}
    for name, col in state.evidence.items():
        x = col[c]
        if np.ndim(x) == 0 and np.isnan(x):
            continue
        if name in ("failure_time", "time_to_crossing"):
            ev[name] = [_iso(v) for v in np.atleast_1d(x)]
        elif name == "accumulations_mm":
            ev[name] = {f"{w:g}h": _num(v) for w, v in zip(RAIN_WINDOWS_H, x, strict=True)}
        else:
            ev[name] = _num(x) if np.ndim(x) == 0 else [_num(v) for v in x]
    if p.method == "rainfall":
        ev["thresholds_mm"] = {f"{w:g}h": [_num(v) for v in row] for w, row in
                               zip(RAIN_WINDOWS_H, p.rain_table_mm, strict=True)}
    elif p.method == "water_level":
        ev["stages_m"] = {"warning": _num(p.warning_m), "guaranteed": _num(p.guaranteed_m),
                          "historical_max": _num(p.historical_max_m)}
    elif p.method == "displacement":
        ev["reference_rate_mm_per_day"] = _num(float(_v_ref(setup, state, np.array([c]))[0])
                                               * 86400.0)
    elif p.method == "threshold":
        ev["thresholds"] = [_num(v) for v in p.thresholds]
    return ev


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def _iso(seconds: Any) -> str | None:
    if seconds is None or not np.isfinite(seconds):
        return None
    return _dt(float(seconds)).isoformat()
