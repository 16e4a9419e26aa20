"""The engine's displacement velocities over a time range, per scale with standard errors,
for the console's chart (GET /api/devices/{id}/velocity).

Not a second implementation: the channel's stored readings are replayed through the code
the engine's tick runs (alerts/engine/displacement.add_readings: hourly medians, steps found
and removed, MIDAS velocities per scale from alerts/methods/velocity.py with their errors),
with the channel's effective rule (engine_rules resolved as the engine resolves them), and
what each closed hour found is recorded. The readings come as the restart reloads them
(alerts/engine/data.py `disp_hours`: the two middle values of each hour, whose median is the
hour's bin; the restart's range and rate screen, alerts/engine/disp_restart.py), so the
bins are the engine's own.

The replay starts `warmup_hours` before the range (the longest scale, plus the window the
step detector and the bin noise look back over), so every velocity recorded has the bins it
needs. What differs from the live engine is only what lies before that: a step whose jump
is older than the replay is already in every replayed bin (it moves no velocity), and a
reference rate or an acceleration run older than the replay is not seen (neither moves a
velocity either; the chart draws the alert's own reference rate from its evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from alerts.engine.data import load_channels, load_overrides
from alerts.engine.disp_history import HOUR, OPEN_K, middle_times
from alerts.engine.disp_restart import _screened
from alerts.engine.displacement import NOISE_BINS, TREND_BINS, DispState, StepEvent, add_readings
from alerts.engine.rule_params import RuleParams
from alerts.engine.rules import resolve
from alerts.engine.tick_setup import build_setup
from alerts.methods.ragged import FloatArray
from geowarn import readings_bulk
from geowarn.errors import InvalidInput, NotFound

DAY_S = 86400.0


@dataclass(frozen=True)
class VelocitySeries:
    scales_h: tuple[int, ...]
    t: FloatArray  # (n,) seconds: the end of the hour each evaluation closed
    v: FloatArray  # (n, scales) mm/day, NaN where a scale had too few bins
    se: FloatArray  # (n, scales) its standard error
    steps: list[StepEvent]  # steps the replay found (offsets removed, slips kept)
    replay_from: float  # seconds: the first hour replayed


def warmup_hours(rule: RuleParams) -> int:
    """Hours of bins before the first velocity recorded: the longest scale, plus what the
    step detector (2 × its confirmation, after its trend window) and the noise estimate need."""
    look_back = max(NOISE_BINS, TREND_BINS + 2 * int(rule.step_confirm_h))
    return int(max(rule.velocity_scales_h)) + look_back


def replay(rule: RuleParams, p: dict[str, np.ndarray], t: FloatArray, v: FloatArray,
           q: np.ndarray, record_from: float) -> VelocitySeries:
    """Feed one channel's readings (oldest first; `p` its one-channel setup arrays) to the
    engine's displacement code, recording each closed hour's velocities that ends at or
    after `record_from` (seconds)."""
    if rule.method != "displacement":
        raise InvalidInput(f"the channel is judged by {rule.method!r}, not displacement")
    # No forecast is drawn from here (the alert's evidence holds the engine's): one per
    # acceleration episode at most, not one per replayed hour. Velocities do not depend on it.
    p = {**p, "forecast_refresh_s": np.array([np.inf])}
    st = DispState.empty(1)
    one = np.zeros(1, np.int64)
    ok_t, ok_v = np.full(1, np.nan), np.full(1, np.nan)
    scales = tuple(int(h) for h in rule.velocity_scales_h)
    times: list[float] = []
    vel: list[FloatArray] = []
    se: list[FloatArray] = []
    steps: list[StepEvent] = []
    for i in range(t.size):
        ti, vi = t[i:i + 1], v[i:i + 1]
        qi = _screened(p, one, ti, vi, q[i:i + 1], ok_t, ok_v, one)
        res = add_readings(st, p, one, one, ti, vi, qi)
        steps.extend(res.steps)
        end = float(st.hist.last_hour[0] + 1) * HOUR
        if res.rows.size and end >= record_from:
            times.append(end)
            vel.append(st.vel[0].copy())
            se.append(st.vel_se[0].copy())
    k = len(scales)
    return VelocitySeries(scales, np.array(times, np.float64),
                          np.array(vel, np.float64).reshape(-1, k),
                          np.array(se, np.float64).reshape(-1, k), steps,
                          float(t[0]) if t.size else record_from)


def _hour_edge(t: datetime, up: bool = False) -> datetime:
    floor = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return floor + timedelta(hours=1) if up and floor != t else floor


def load(conn: psycopg.Connection, channel_id: int, start: datetime, end: datetime
         ) -> VelocitySeries:
    """The engine's velocities of one displacement channel for the hours ending in
    [start, end]: its rule, its stored readings, the replay."""
    infos = load_channels(conn, [channel_id])
    if not infos:
        raise NotFound(f"channel {channel_id} is not judged (no such channel, or its device "
                       "is retired)")
    rule = resolve(infos, load_overrides(conn))[0]
    if rule.method != "displacement":
        raise InvalidInput(f"the channel is judged by {rule.method!r}, not displacement: it "
                           "has no velocity")
    p = build_setup(infos, [rule]).p
    lo = _hour_edge(start) - timedelta(hours=warmup_hours(rule))
    # The hour ending at `end` closes with the first reading of the next one.
    hi = _hour_edge(end, up=True) + timedelta(hours=1)
    got = readings_bulk.hourly_middles(conn, [channel_id], [lo], [hi],
                                       [float(p["implausible_min"][0])],
                                       [float(p["implausible_max"][0])], newest=OPEN_K)
    # As alerts/engine/data.disp_hours gives them to the restart: both middle values at the
    # kept readings' mean second.
    t = np.repeat(middle_times(got.sec), 2)
    v = np.c_[got.lo, got.hi].ravel()
    series = replay(rule, p, t, v, np.zeros(t.size, np.int8), start.timestamp())
    keep = series.t <= end.timestamp()
    return replace(series, t=series.t[keep], v=series.v[keep], se=series.se[keep],
                   replay_from=lo.timestamp())
