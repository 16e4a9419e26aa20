"""Which alerts the soak's faults must raise, and which they must not, computed from what the
fleet sent and from the rules the engine resolves from the store (bench/soak_checks.py).

A fault only has to be seen when it is long enough for the rule that judges it, so the
expectation holds for any duration and fleet size:
- a stuck gauge must have a data-quality alert when its longest run of identical values
  reaches the channel's `stuck_count`, and must not have one when no view of it could;
- an offline device must have a maintenance (silent) alert when its gap between readings
  exceeds `offline_after_s`, and must not have one when even the widest view of the gap,
  plus the engine clock's lead, stays within it;
- a flooding gauge must have a water-level alert when enough consecutive readings stand at
  or above its blue stage (warning_m − approach_margin_m): the sample itself and the
  `onset_confirm_samples` that confirm it as an onset, plus one.
The engine skips a reading older than its channel's watermark, so an out-of-order message
may or may not be judged: "must" is computed without the late readings that could be
skipped, "must not" with the widest view they allow. Between the two, nothing is required.
Pure: arrays in, sets out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from alerts.engine.rules import RuleParams

CLOCK_LEAD_S = 120.0  # how far the data clock may run ahead of a device's newest reading


@dataclass
class Expectations:
    stuck_must: set[int] = field(default_factory=set)
    stuck_must_not: set[int] = field(default_factory=set)
    offline_must: set[int] = field(default_factory=set)
    offline_must_not: set[int] = field(default_factory=set)
    flood_must: set[int] = field(default_factory=set)
    notes: dict[str, object] = field(default_factory=dict)


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of every maximal run of equal values in x."""
    if x.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1]]))
    return starts, np.diff(np.concatenate([starts, [x.size]]))


def run_bounds(values: np.ndarray, late: np.ndarray) -> tuple[int, int]:
    """Bounds on the longest run of identical values the engine sees when any subset of the
    `late` samples is skipped: (lower, upper)."""
    starts, lengths = _runs(values)
    if not starts.size:
        return 0, 0
    csum = np.concatenate([[0], np.cumsum(~late)])
    lo = int((csum[starts + lengths] - csum[starts]).max())  # a run's in-order members
    _, kept = _runs(values[~late])
    hi = int(kept.max() if kept.size else 0) + int(late.sum())
    return lo, hi


def gap_bounds(t: np.ndarray, late: np.ndarray) -> tuple[float, float]:
    """Bounds on the longest gap between consecutive samples the engine sees (seconds)."""
    lo = float(np.diff(t).max()) if t.size > 1 else 0.0
    k = t[~late]
    hi = float(np.diff(k).max()) if k.size > 1 else np.inf
    return lo, hi


def longest_above(values: np.ndarray, late: np.ndarray, threshold: float) -> int:
    """The longest stretch of consecutive samples at or above `threshold`, counting only its
    in-order members (a late one below the threshold still breaks it if it is judged)."""
    above = values >= threshold
    if not above.any():
        return 0
    starts, lengths = _runs(above)
    csum = np.concatenate([[0], np.cumsum(~late)])
    kept = csum[starts + lengths] - csum[starts]
    return int(kept[above[starts]].max())


def expectations(plan_stuck: set[int], plan_offline: set[int], plan_flood: set[int],
                 series: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
                 rule: Mapping[int, RuleParams], max_skew_s: float) -> Expectations:
    """`series`: device -> (ts seconds, value, late) in time order, for the faulty devices;
    `rule`: device -> its channel's effective rule."""
    out = Expectations()
    runs, gaps, floods = {}, {}, {}
    for d in sorted(plan_stuck):
        t, v, late = series[d]
        lo, hi = run_bounds(v, late)
        n = rule[d].stuck_count
        runs[d] = (lo, hi, n)
        if n > 0 and lo >= n:
            out.stuck_must.add(d)
        elif n <= 0 or hi < n:
            out.stuck_must_not.add(d)
    for d in sorted(plan_offline):
        t, v, late = series[d]
        g_lo, g_hi = gap_bounds(t, late)
        off = rule[d].offline_after_s
        gaps[d] = (g_lo, g_hi, off)
        if g_lo > off:
            out.offline_must.add(d)
        elif g_hi + CLOCK_LEAD_S + max_skew_s <= off:
            out.offline_must_not.add(d)
    for d in sorted(plan_flood):
        t, v, late = series[d]
        p = rule[d]
        blue = p.warning_m - p.approach_margin_m
        need = p.onset_confirm_samples + 2
        floods[d] = (longest_above(v, late, blue), need, blue)
        if floods[d][0] >= need:
            out.flood_must.add(d)
    out.notes = {"stuck runs (lo, hi, stuck_count)": runs,
                 "offline gaps s (lo, hi, offline_after_s)": gaps,
                 "flood samples at blue (run, needed, blue m)": floods}
    return out
