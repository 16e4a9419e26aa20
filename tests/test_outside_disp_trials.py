"""Outside trial of the displacement warnings (issue 7), handed over to the displacement owners
(findings in the 2026-12-02 note on issue 7): an accelerating slope on 10-minute GNSS (2 mm
noise, 3 % dropouts, creep 0.5 mm/day for 20 days, then α = 2 tertiary creep over 10 days, data
ending 6 h before failure) must reach red before failure with a forecast whose error is
within 10 % of the remaining time. Found: seed 0 red with the last forecast +18.8 % off;
seed 2 red with no forecast at all; on hourly GNSS (same
series, one sample an hour) nothing at all. Detection (red before failure, hourly included) now
holds and is asserted below; the forecast accuracy is kept as a known failure until it is fixed."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from alerts.engine.rules import ChannelInfo
from alerts.methods.levels import Level
from tests.outside_series import (
    T0,
    Trace,
    first_change,
    live,
    quality_events,
    saito_slope,
    stable_coloured,
)


def accelerating_gnss(seed: int, step: float = 600.0, days: float = 30.0,
                      acc_days: float = 10.0, end_before_h: float = 6.0
                      ) -> tuple[Trace, float]:
    rng = np.random.default_rng(seed)
    tf = T0 + days * 86400
    t = np.arange(T0, tf - end_before_h * 3600, step)
    b = rng.uniform(8, 20)  # mm: velocity = creep + b / (t_f - t) (days)
    td = (tf - t) / 86400
    x = 0.5 * (t - T0) / 86400 + b * np.log(acc_days / np.maximum(td, 1e-6)) * (td < acc_days)
    x = x + rng.normal(0, 2.0, t.size)
    x[rng.uniform(0, 1, t.size) < 0.03] = np.nan
    return Trace(t, np.asarray(np.round(x, 1))), tf


@pytest.mark.xfail(strict=False, reason="issue 7 forecast accuracy: 10-min seed 0 last "
                   "forecast +18.8 % of the remaining time, seed 2 red with no forecast; "
                   "hourly seed 0 red since the scale agreement fix, its forecast not within 10 %")
@pytest.mark.parametrize(("seed", "step"), [(0, 600.0), (2, 600.0), (0, 3600.0)])
def test_accelerating_gnss_red_before_failure_with_a_forecast_within_10_percent(
        seed: int, step: float) -> None:
    tr, tf = accelerating_gnss(seed, step)
    ch = live([ChannelInfo(1, "GN", "gnss", "disp_x", "HP", None, step)], [tr],
              batch_s=3600.0)
    red = first_change(ch, "HP", "deformation", Level.RED)
    assert red is not None and red < tf
    forecasts = [e["forecast"] for c in ch for e in c.evidence.get("channels", [])
                 if isinstance(e, dict) and "forecast" in e]
    assert forecasts, "red without a forecast"
    got = datetime.fromisoformat(forecasts[-1]["time"]).timestamp()
    assert abs(got - tf) <= 0.1 * (tf - tr.t[-1]), (got - tf) / (tf - tr.t[-1])


def stable_with_fault(seed: int, step: float, kind: str, days: float = 20.0) -> Trace:
    """A stable station (0.05 mm/day, 2 mm noise) with one fault at day 12: a 5–30 mm step,
    a reset from +40 mm to zero, or seasonal plus diurnal thermal drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(T0, T0 + days * 86400, step)
    x = 0.05 * (t - T0) / 86400 + rng.normal(0, 2.0, t.size)
    late = t > T0 + 12 * 86400
    if kind == "step":
        x[late] += rng.uniform(5, 30) * rng.choice([-1, 1])
    elif kind == "reset":
        x = x + 40.0 - np.where(late, 40.0 + 0.6, 0.0)
    else:
        x = (x + 6.0 * np.sin(2 * np.pi * (t - T0) / (86400 * 60))
             + 1.5 * np.sin(2 * np.pi * (t - T0) / 86400))
    return Trace(t, np.asarray(np.round(x, 1)))


@pytest.mark.parametrize("step", [600.0, 3600.0])
def test_accelerating_gnss_reaches_red_before_failure_at_10_min_and_hourly(step: float) -> None:
    # Hourly GNSS raised nothing before the non-adjacent scale agreement
    # (alerts/methods/velocity.py _far_agreement): the 6 h scale's error exceeds the signal.
    seeds = range(100, 120)
    made = [accelerating_gnss(seed, step) for seed in seeds]
    ch = live(_stations(len(made), step), [tr for tr, _ in made], batch_s=3600.0)
    reds = 0
    for i, (_, tf) in enumerate(made):
        red = first_change(ch, f"HP{i}", "deformation", Level.RED)
        reds += red is not None and red < tf
    assert reds >= 17, reds  # measured 2026-12-02: 10-min 20/20, hourly 18/20


# The second family (tests/outside_series.py saito_slope: α 1.5–2.5, coloured GNSS noise,
# outliers; not the generator above nor simulators/): red before failure, measured 2026-12-02
# on seeds 100–119 (BENCHMARKS.md "Warning skill"): 1-minute crack meter 17/20 (the other 3
# orange: α > 2 and a daily velocity 10× v̄ at the end, the forecast more than 24 h off),
# 10-minute GNSS 19/20, hourly GNSS 12/20 (10/20 before agreement over time counted for
# adjacent pairs; 16/20 since ordered scales establish after 6 h on hourly channels,
# 2026-12-03). Hourly is the known gap: with α < 2 most of the acceleration falls in the
# last day, and one 2–3 mm sample an hour resolves it only hours before failure; the 4 still
# missed have the 1 d, 3 d and 7 d velocities within ~2 errors until 5–8 h before failure
# (docs/methods.md, "Acceleration").
SAITO_REDS = {60.0: 16, 600.0: 18, 3600.0: 15}


@pytest.mark.parametrize("step", [60.0, 600.0, 3600.0])
def test_saito_type_slopes_reach_red_before_failure(step: float) -> None:
    slopes = [saito_slope(seed, step, crack_meter=step == 60.0) for seed in range(100, 120)]
    kind, spec = ("crack_meter", "opening") if step == 60.0 else ("gnss", "disp_x")
    chans = [ChannelInfo(i + 1, f"GN{i}", kind, spec, f"HP{i}", None, step)
             for i in range(len(slopes))]
    ch = live(chans, [s.trace for s in slopes], batch_s=3600.0)
    reds = 0
    for i, s in enumerate(slopes):
        red = first_change(ch, f"HP{i}", "deformation", Level.RED)
        reds += red is not None and red < s.failure_t
    assert reds >= SAITO_REDS[step], reds


def test_ordered_scales_establish_hourly_acceleration_in_time_for_red() -> None:
    # Hourly seed 111 (α 1.95, 0.4 mm/day creep, 2.9 mm noise): acceleration is seen only from
    # 10.9 h before failure, the last reading 4.9 h before it, so 12 h of persistence never
    # comes; by then 1 d > 3 d > 7 d by 3 and 4 errors. The shorter persistence for ordered
    # scales (docs/methods.md "Acceleration") turns it red; each of its settings, set so the
    # shorter path does not apply, leaves the same series below orange.
    slope = saito_slope(111, 3600.0)
    off = [{"accel_strong_persist_h": 12}, {"accel_strong_z": 5.0},
           {"accel_strong_interval_s": 7200}]
    chans = [ChannelInfo(i + 1, f"GN{i}", "gnss", "disp_x", f"HP{i}", None, 3600.0)
             for i in range(1 + len(off))]
    ch = live(chans, [slope.trace] * len(chans), batch_s=3600.0,
              overrides={("channel", str(i + 2)): o for i, o in enumerate(off)})
    red = first_change(ch, "HP0", "deformation", Level.RED)
    assert red is not None and red < slope.failure_t
    for i, o in enumerate(off):
        assert first_change(ch, f"HP{i + 1}", "deformation", Level.ORANGE) is None, o


@pytest.mark.parametrize("step", [600.0, 3600.0])
def test_creep_with_the_same_coloured_noise_raises_no_orange_or_forecast(step: float) -> None:
    # The negative control of the family above: its noise (white plus ~2 h correlated,
    # outliers, lost samples) on 30 days of constant creep.
    traces = [stable_coloured(seed, step) for seed in range(100, 120)]
    ch = live(_stations(len(traces), step), traces, batch_s=3600.0)
    for i in range(len(traces)):
        assert first_change(ch, f"HP{i}", "deformation", Level.ORANGE) is None, i
        assert not [e for c in ch if c.target_id == f"HP{i}"
                    for e in c.evidence.get("channels", [])
                    if isinstance(e, dict) and "forecast" in e], i


def _stations(n: int, step: float) -> list[ChannelInfo]:
    """n GNSS stations, each its own device and hazard point (one engine run for all)."""
    return [ChannelInfo(i + 1, f"GN{i}", "gnss", "disp_x", f"HP{i}", None, step)
            for i in range(n)]


STABLE_SEEDS = range(100, 120)


@pytest.mark.parametrize("step", [600.0, 3600.0])
def test_stable_gnss_with_steps_resets_or_drift_raise_no_orange_or_forecast(step: float
                                                                           ) -> None:
    kinds = ("step", "reset", "thermal")
    cases = [(seed, kind) for seed in STABLE_SEEDS for kind in kinds]
    traces = [stable_with_fault(seed, step, kind) for seed, kind in cases]
    ch = live(_stations(len(cases), step), traces, batch_s=3600.0)
    found = {kind: 0 for kind in kinds}
    for i, (seed, kind) in enumerate(cases):
        assert first_change(ch, f"HP{i}", "deformation", Level.ORANGE) is None, (seed, kind)
        assert not [e for c in ch if c.target_id == f"HP{i}"
                    for e in c.evidence.get("channels", [])
                    if isinstance(e, dict) and "forecast" in e], (seed, kind)
        events = [c.data_time.timestamp() for c in quality_events(ch, f"GN{i}")]
        if kind == "thermal":
            # A smooth drift is no step: before the fix 5 of 20 10-minute stations had a
            # false step at the diurnal swing's steepest hours.
            assert events == [], (seed, kind, events)
        else:
            step_t = T0 + 12 * 86400
            found[kind] += bool(events) and all(abs(t - step_t) <= 86400 for t in events)
    # Measured 2026-12-02: 10-minute 20/20 steps and 20/20 resets found; hourly 17/20 steps
    # (a 5–30 mm step on one 2 mm sample an hour: the smallest hide), 20/20 resets.
    assert found["reset"] >= 19, found
    assert found["step"] >= (19 if step == 600.0 else 16), found
