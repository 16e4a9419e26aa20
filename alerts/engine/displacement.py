"""The displacement judgement the engine runs, on each channel's hourly history
(engine/disp_history.py), each time an hour of readings closes. See docs/methods.md.

Per closed hour, for the rows that closed one:
1. steps: a jump then a plateau is an offset: removed from the history and reported as a
   data-quality finding (expected, and not reported, inside the device's maintenance window);
   a jump that keeps moving is a slip: reported, kept in the cumulative displacement, and
   taken out of the velocity series so that the faster movement after it is what the
   velocity scales see (a jump is no rate);
2. velocities over `velocity_scales_h` (MIDAS pairs) with their standard errors;
3. acceleration: seen when velocity rises consistently across scales
   (methods/velocity.acceleration_seen), established once seen for `accel_persist_h` (a
   miss shorter than half that does not break the run);
4. the reference rate v̄: the engineer's value, else the rate over `reference_days` ending
   `reference_gap_h` before acceleration was first seen (fixed for the episode), else, while
   nothing accelerates, the same window ending now − `reference_gap_h` (shown, not used);
5. tangent angle on the daily velocity, arctan(v_1d / max(v̄, floor)), levels by
   `tangent_angle_deg`, raising only while acceleration is established;
6. the failure forecast while established, replaced at most every `forecast_refresh_s`,
   withdrawn when acceleration stops: Fukuzono's inverse velocity (methods/inverse_velocity),
   or the Voight fit (methods/voight) where methods/forecast_choice finds α ≠ 2 beyond
   doubt; its outcome is kept per row until a new bin closes (the fit costs 5–25 ms).
Velocity and cumulative thresholds (per site; off by default) use the daily velocity and the
offset-corrected displacement since the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.engine.disp_history import HOUR, DispHistory
from alerts.methods.forecast_choice import voight_forecast
from alerts.methods.inverse_velocity import forecast_failure_time
from alerts.methods.levels import LEVEL_DTYPE, LevelArray, classify
from alerts.methods.ragged import FloatArray, IntArray
from alerts.methods.steps import detect_step, usual_local_jump, usual_trend_jumps
from alerts.methods.velocity import (
    acceleration_seen,
    bin_noise,
    multi_scale,
    ordered_rise,
    pair_velocity,
)

DAY_H = 24.0
ACCEL_GRACE_S = 3 * HOUR
EARLIER_H = 12  # the second window of the non-adjacent scale agreement (methods/velocity.py)
NOISE_BINS = 72
TREND_BINS = 72
CRITERIA = ("tangent_angle", "velocity", "cumulative", "forecast")
REF_SOURCES = ("", "configured", "baseline before acceleration", "recent baseline")


@dataclass(frozen=True)
class StepEvent:
    row: int
    time: float  # seconds: start of the first hour after the jump
    jump_mm: float
    kind: str  # "offset" (removed), "slip" (kept as movement)
    expected: bool  # inside the maintenance window


SAVED_FIELDS = ("first_value", "first_hour", "accel_since", "accel_last", "v_ref", "v_ref_from",
                "v_ref_to", "fc", "vel", "vel_se", "angle", "v_ref_used", "ref_source",
                "established", "criterion", "cumulative", "slip_total", "last_step_hour",
                "step_log")
STEP_LOG = 8  # steps kept per row (the evidence shows the newest 5; a restart replays them)
STEP_KINDS = ("offset", "slip")


@dataclass
class DispState:
    """Per displacement row: history, acceleration run, reference rate and forecast, and
    what the last evaluation found (for the evidence)."""

    hist: DispHistory
    first_value: FloatArray
    first_hour: IntArray
    accel_since: FloatArray
    accel_last: FloatArray
    v_ref: FloatArray  # mm/day, for the current acceleration episode (NaN outside one)
    v_ref_from: FloatArray
    v_ref_to: FloatArray
    fc: FloatArray  # (rows, 4): time, lower, upper, issued_at (NaN: none)
    vel: FloatArray  # (rows, 4) mm/day at each scale
    vel_se: FloatArray
    angle: FloatArray
    v_ref_used: FloatArray
    ref_source: IntArray
    established: np.ndarray
    criterion: IntArray  # index into CRITERIA of the deciding one, -1 none
    cumulative: FloatArray
    slip_total: FloatArray  # slips' jumps: out of the velocity series, in the cumulative
    last_step_hour: IntArray  # first hour after the last step found
    # the newest STEP_LOG steps, oldest first: (time, jump_mm, kind index into STEP_KINDS,
    # expected); NaN time where none
    step_log: FloatArray
    # Working cache, never saved (a restart refits once): the Voight forecast (time, lower,
    # upper; NaN: not the one to show) for the window (last hour, first hour) it was fitted to.
    voight_key: IntArray
    voight_fc: FloatArray

    @classmethod
    def empty(cls, rows: int) -> DispState:
        def nan(*shape: int) -> FloatArray:
            return np.full((rows, *shape), np.nan)
        return cls(DispHistory.empty(rows), nan(), np.full(rows, -1, np.int64), nan(), nan(),
                   nan(), nan(), nan(), nan(4), nan(4), nan(4), nan(), nan(),
                   np.zeros(rows, np.int64), np.zeros(rows, bool), np.full(rows, -1, np.int64),
                   nan(), np.zeros(rows), np.full(rows, -(10 ** 9), np.int64),
                   nan(STEP_LOG, 4), np.full((rows, 2), -1, np.int64), nan(3))

    def step_events(self, r: int) -> list[StepEvent]:
        """Row r's logged steps, oldest first."""
        return [StepEvent(r, float(t), float(j), STEP_KINDS[int(k)], bool(e))
                for t, j, k, e in self.step_log[r] if np.isfinite(t)]

    @property
    def steps(self) -> list[list[StepEvent]]:
        """Every row's logged steps (for inspection and tests; the evidence reads one row)."""
        return [self.step_events(r) for r in range(self.step_log.shape[0])]

    @property
    def nbytes_per_row(self) -> float:
        rows = max(self.first_value.size, 1)
        arrays = [getattr(self, f) for f in SAVED_FIELDS]
        return (self.hist.nbytes + sum(a.nbytes for a in arrays)) / rows

    def saved_arrays(self) -> dict[str, np.ndarray]:
        """What the engine saves per displacement channel (alerts/engine/state.py, scope
        "disp"): everything living through the data built except the hourly history, which
        a restart rebuilds from the readings with the logged steps and the running offset
        (alerts/engine/disp_restart.py)."""
        return {**{f"disp_{f}": getattr(self, f) for f in SAVED_FIELDS},
                "disp_offset": self.hist.offset}


@dataclass(frozen=True)
class DispResult:
    rows: IntArray  # group rows evaluated (an hour closed)
    raise_level: LevelArray
    hold_level: LevelArray
    steps: list[StepEvent]


def add_readings(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
                 t: FloatArray, v: FloatArray, q: np.ndarray) -> DispResult:
    """One reading per row (the tick's round); `p` the setup's per-channel parameters and
    `ch` the channel of each row. Bad readings (quality >= 2) are left out."""
    good = q < 2
    ch, rows, t, v = ch[good], rows[good], t[good], v[good] * p["sign"][ch[good]]
    fresh = st.first_hour[rows] < 0
    st.first_hour[rows[fresh]] = np.floor(t[fresh] / HOUR).astype(np.int64)
    base = p["baseline"][ch]
    st.first_value[rows] = np.where(np.isnan(st.first_value[rows]),
                                    np.where(np.isnan(base), v, base * p["sign"][ch]),
                                    st.first_value[rows])
    closed = st.hist.add(rows, t, v)
    if closed.size == 0:
        return DispResult(closed, np.zeros(0, LEVEL_DTYPE), np.zeros(0, LEVEL_DTYPE), [])
    cch = ch[np.isin(rows, closed)]
    order = np.argsort(rows[np.isin(rows, closed)])
    closed, cch = np.sort(closed), cch[order]
    now = t[np.isin(rows, closed)][order]
    steps = _steps(st, p, cch, closed, now)
    r, h = _judge(st, p, cch, closed, now)
    return DispResult(closed, r, h, steps)


def in_maintenance(p: dict[str, np.ndarray], ch: IntArray, t: FloatArray) -> np.ndarray:
    """Whether time t of channel ch lies in one of its maintenance windows (the rule's or
    its device's, alerts/engine/tick_setup.py)."""
    tt = np.asarray(t, np.float64)[:, None]
    return np.asarray(((p["maint_from"][ch] <= tt) & (tt <= p["maint_until"][ch])).any(axis=1))


def _steps(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
           now: FloatArray) -> list[StepEvent]:
    out: list[StepEvent] = []
    m_all = p["step_confirm_h"][ch].astype(np.int64)
    for m in np.unique(m_all):
        sel = m_all == m
        # A window still holding the last step's jump is that step's, not a new one.
        free = st.hist.last_hour[rows[sel]] - st.last_step_hour[rows[sel]] >= 2 * m
        sel = np.flatnonzero(sel)[free]
        r, c = rows[sel], ch[sel]
        if r.size == 0:
            continue
        y = st.hist.window(r, 2 * int(m))
        noise = bin_noise(st.hist.window(r, NOISE_BINS))
        trend = pair_velocity(st.hist.window(r, TREND_BINS, end_back=2 * int(m)), 1.0,
                              noise).v
        past = st.hist.window(r, TREND_BINS, end_back=2 * int(m))
        usual = usual_local_jump(past, int(m))
        usual_j = usual_trend_jumps(past, int(m), trend)
        verdict = detect_step(y, int(m), trend, noise, p["step_z"][c], p["step_min_mm"][c],
                              usual, usual_j)
        hit = verdict.offset | verdict.slip
        if not hit.any():
            continue
        off = verdict.offset
        # Both leave the velocity series: a jump is no rate. A slip's jump is movement, so
        # it stays in the cumulative displacement (slip_total), and what follows it is judged.
        st.hist.remove_offset(r[hit], verdict.jump[hit], int(m))
        st.last_step_hour[r[hit]] = st.hist.last_hour[r[hit]] - m + 1
        slip = verdict.slip
        st.slip_total[r[slip]] += verdict.jump[slip]
        expected = in_maintenance(p, c, now[sel])
        t_step = (st.hist.last_hour[r] - m + 1) * HOUR
        for i in np.flatnonzero(hit):
            ev = StepEvent(int(r[i]), float(t_step[i]), float(verdict.jump[i]),
                           "offset" if off[i] else "slip", bool(expected[i]))
            log = st.step_log[int(r[i])]
            log[:-1] = log[1:].copy()
            log[-1] = (ev.time, ev.jump_mm, STEP_KINDS.index(ev.kind), ev.expected)
            out.append(ev)
    return out


def _judge(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
           now: FloatArray) -> tuple[LevelArray, LevelArray]:
    scales = p["velocity_scales_h"][ch].astype(np.int64)
    noise = bin_noise(st.hist.window(rows, NOISE_BINS))
    vel = np.full((rows.size, 4), np.nan)
    se = np.full_like(vel, np.nan)
    daily = np.argmax(scales == 24, axis=1)
    vel0, se0 = np.full_like(vel, np.nan), np.full_like(vel, np.nan)  # half a day before
    for key in np.unique(scales, axis=0):
        sel = np.all(scales == key, axis=1)
        sc = tuple(int(k) for k in key)
        y = st.hist.window(rows[sel], int(key[-1]))
        vel[sel], se[sel] = multi_scale(y, HOUR, sc, noise[sel])
        y0 = st.hist.window(rows[sel], int(key[-1]), end_back=EARLIER_H)
        vel0[sel], se0[sel] = multi_scale(y0, HOUR, sc, noise[sel])
    vel, se = vel * HOUR * DAY_H, se * HOUR * DAY_H  # mm/day
    vel0, se0 = vel0 * HOUR * DAY_H, se0 * HOUR * DAY_H
    seen = np.zeros(rows.size, bool)
    for d in np.unique(daily):
        sel = daily == d
        seen[sel] = acceleration_seen(vel[sel], se[sel], int(d), p["accel_z"][ch[sel]],
                                      p["accel_min_pairs"][ch[sel]],
                                      earlier=(vel0[sel], se0[sel]))
    persist = p["accel_persist_h"][ch] * HOUR
    since, last = st.accel_since[rows], st.accel_last[rows]
    # A miss of up to ACCEL_GRACE_S does not break a run (near failure the scales straddle
    # an ever steeper curve and one evaluation can disagree); a longer one does.
    broken = ~seen & ~(now - last <= np.minimum(persist / 4.0, ACCEL_GRACE_S))
    since = np.where(broken, np.nan, np.where(seen & np.isnan(since), now, since))
    last = np.where(seen, now, np.where(broken, np.nan, last))
    # Strong, consistent evidence justifies less waiting: on sparse channels (hourly GNSS,
    # whose short scales cannot resolve the last hours) the scales from the daily one up
    # ordered by accel_strong_z errors each establish a run seen for accel_strong_persist_h.
    # Denser channels resolve the rise on the short scales in time, and there a diurnal swing
    # can order 1 d > 3 d > 7 d for hours. Once established, a run stays so until it breaks.
    strong = np.zeros(rows.size, bool)
    sparse = p["interval_s"][ch] >= p["accel_strong_interval_s"][ch]
    for d in np.unique(daily):
        sel = daily == d
        strong[sel] = ordered_rise(vel[sel], se[sel], int(d), p["accel_strong_z"][ch[sel]])
    strong &= sparse
    run = now - since
    established = np.isfinite(since) & (
        (run >= persist) | (st.established[rows] & sparse)
        | (strong & (run >= p["accel_strong_persist_h"][ch] * HOUR)))
    st.accel_since[rows], st.accel_last[rows] = since, last
    v_ref, source = _reference(st, p, ch, rows, now, established)
    v1d = vel[np.arange(rows.size), daily]
    floor = p["reference_floor_mm_per_day"][ch]
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.degrees(np.arctan(v1d / np.fmax(v_ref, floor)))
    angle = np.where(np.isfinite(v_ref), angle, np.nan)
    ta = p["tangent_angle_deg"][ch].copy()
    ta[:, 1] = np.nextafter(ta[:, 1], np.inf)  # yellow needs α strictly above its edge
    angle_all = classify(angle, ta)
    maint = in_maintenance(p, ch, now)
    angle_r = np.where(established & ~maint, angle_all, 0)
    angle_h = np.where(established | (angle_all >= 2), angle_all, 0)
    cum = st.hist.window(rows, 1)[:, 0] - st.first_value[rows] + st.slip_total[rows]
    ratio = p["clear_ratio"][ch][:, None]
    vthr, cthr = p["velocity_mm_per_day"][ch], p["cumulative_mm"][ch]
    vel_r = classify(v1d, vthr)
    cum_r = classify(cum, cthr)
    vel_h = np.maximum(classify(v1d, vthr - (1 - ratio) * np.abs(vthr)), vel_r)
    cum_h = np.maximum(classify(cum, cthr - (1 - ratio) * np.abs(cthr)), cum_r)
    _forecast(st, p, ch, rows, now, established)
    with np.errstate(invalid="ignore"):
        near = (st.fc[rows, 0][:, None] - now[:, None]) <= p["forecast_lead_h"][ch] * HOUR
    fc_lv = np.where(near, np.arange(1, 5)[None, :], 0).max(axis=1)
    crit = np.stack([angle_r, np.where(maint, 0, vel_r), np.where(maint, 0, cum_r),
                     np.where(maint, 0, fc_lv)], axis=1)
    raise_lv = crit.max(axis=1).astype(LEVEL_DTYPE)
    hold = np.maximum.reduce([angle_h, vel_h, cum_h, raise_lv]).astype(LEVEL_DTYPE)
    st.criterion[rows] = np.where(raise_lv > 0, crit.argmax(axis=1), -1)
    st.vel[rows], st.vel_se[rows], st.angle[rows] = vel, se, angle
    st.v_ref_used[rows], st.ref_source[rows] = v_ref, source
    st.established[rows], st.cumulative[rows] = established, cum
    return raise_lv, hold


def _reference(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
               now: FloatArray, established: np.ndarray) -> tuple[FloatArray, IntArray]:
    conf = p["reference_rate_mm_per_day"][ch]
    lock = established & np.isnan(st.v_ref[rows])
    for i in np.flatnonzero(lock & np.isnan(conf)):  # once per acceleration episode
        r, c = int(rows[i]), int(ch[i])
        end = st.accel_since[r] - p["reference_gap_h"][c] * HOUR
        st.v_ref[r], st.v_ref_from[r], st.v_ref_to[r] = baseline_rate(st, p, c, r, end)
    # The episode's v̄ stays while acceleration holds or the angle still holds a level (a
    # slope that slipped to a faster creep keeps its warning); it ends after that.
    keep = established | (st.angle[rows] > p["tangent_angle_deg"][ch, 1])
    st.v_ref[rows] = np.where(keep, st.v_ref[rows], np.nan)
    src = np.where(np.isfinite(conf), 1, np.where(np.isfinite(st.v_ref[rows]), 2, 0))
    return np.where(np.isfinite(conf), conf, st.v_ref[rows]), src.astype(np.int64)


def baseline_rate(st: DispState, p: dict[str, np.ndarray], c: int, r: int, end: float
                  ) -> tuple[float, float, float]:
    """v̄ (mm/day) over the reference window ending at `end` (seconds), and its bounds."""
    end_h = int(np.floor(end / HOUR))
    n = min(int(p["reference_days"][c] * DAY_H), end_h - int(st.first_hour[r]) + 1)
    if n < p["reference_min_days"][c] * DAY_H:
        return np.nan, np.nan, np.nan
    back = int(st.hist.last_hour[r]) - end_h
    y = st.hist.window(np.array([r]), n, end_back=max(back, 0))
    v = pair_velocity(y, HOUR).v[0] * HOUR * DAY_H
    return float(v), float((end_h - n + 1) * HOUR), float((end_h + 1) * HOUR)


def _forecast(st: DispState, p: dict[str, np.ndarray], ch: IntArray, rows: IntArray,
              now: FloatArray, established: np.ndarray) -> None:
    st.fc[rows[~established]] = np.nan  # withdrawn when acceleration stops
    for i in np.flatnonzero(established):  # only channels in acceleration
        r, c, t_now = int(rows[i]), int(ch[i]), float(now[i])
        prev = st.fc[r]
        if np.isfinite(prev[3]) and t_now - prev[3] < p["forecast_refresh_s"][c]:
            continue
        start = max(st.accel_since[r] - p["forecast_pre_h"][c] * HOUR,
                    t_now - p["forecast_max_h"][c] * HOUR)
        n = int(min(st.hist.last_hour[r] - np.floor(start / HOUR) + 1, 720))
        y = st.hist.window(np.array([r]), n)[0]
        # Each bin at its readings' mean time, not mid-hour (hourly GNSS comes on the hour).
        tt = st.hist.window_times(np.array([r]), n)[0]
        conf = float(p["forecast_confidence"][c])
        key = (int(st.hist.last_hour[r]), n)
        if tuple(st.voight_key[r]) != key:  # one Voight fit per window of bins
            fv, _ = voight_forecast(tt, y, t_now, conf)
            st.voight_fc[r] = np.nan if fv is None else (fv.t_failure, fv.t_lower, fv.t_upper)
            st.voight_key[r] = key
        if st.voight_fc[r, 0] > t_now:
            st.fc[r] = (*st.voight_fc[r], t_now)
            continue
        f = forecast_failure_time(tt, y, t_now, conf)
        if f.issued:
            st.fc[r] = (f.t_failure, f.t_lower, f.t_upper, t_now)
