"""The displacement engine on whole classes of generated slopes, through the pure tick (the
broker is not the point here; tests/test_engine_scenarios.py goes through it).

Accelerating families (20 seeds each; creep 0.2–2 mm/day, tertiary 3–30 days, noise 0.1–3 mm,
1-minute to hourly sampling, 2–5 % dropouts, outliers; α = 2, α ≠ 2 and velocity staircases;
data ending 4–8 h before failure): red before failure and a forecast issued before failure,
with the fraction that must pass per family. Forecast accuracy is asserted where the data
allow it (see BENCHMARKS.md, "Warning skill", for every family's figures).
Negative controls (20 seeds each): stable stations with 5–30 mm steps, sensor resets to zero,
daily thermal swings with seasonal drift, a noisy week, and 60 days of slow constant creep:
no orange or red, no forecast, and a data-quality event for each step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.warning_skill import FAMILIES, MINUTE_FAMILY, Run, Skill, families_run, run, skill
from simulators.displacement_scenarios import DAY, T0, Series, stable
from tests.fixtures.shared import shared_file

SEEDS = range(20)


@pytest.fixture(scope="module")
def skills() -> dict[str, Skill]:
    out = {}
    for fams in (FAMILIES, (MINUTE_FAMILY,)):
        for f, series, r in families_run(fams, SEEDS):
            out[f.name] = skill(f, r, series)
    return out


@pytest.mark.parametrize("family", [f.name for f in (*FAMILIES, MINUTE_FAMILY)])
def test_every_family_reaches_red_before_failure_with_a_forecast(
        skills: dict[str, Skill], family: str) -> None:
    k = skills[family]
    assert k.n == 20
    assert k.red_before_failure >= 18, k  # ≥ 90 % of the seeds
    assert k.forecast_at_end >= 18, k


def test_forecast_within_ten_percent_where_the_noise_allows(skills: dict[str, Skill]) -> None:
    # Crack meters (0.1–0.5 mm) on the α = 2 law: within 10 % of the remaining time for
    # at least 90 % of the seeds, at 10-minute and at 1-minute sampling.
    for name in ("crack meter 10 min, 0.1–0.5 mm, α = 2", "crack meter 1 min, 0.1 mm, α = 2"):
        k = skills[name]
        assert k.within_10pct >= 18, k
    # GNSS at 1.5–3 mm and the velocity staircase: the forecast is coarser (BENCHMARKS.md);
    # most seeds still land within half the remaining time.
    for name in ("GNSS 10 min, 1.5–3 mm, α = 2", "GNSS hourly, 1–2 mm, α = 2",
                 "GNSS 10 min, velocity staircase"):
        k = skills[name]
        assert sum(e <= 50.0 for e in k.err_pct) >= 16, k


NEGATIVE: tuple[tuple[str, Callable[[int], Series], int], ...] = (
    # (name, generator, steps put in per series)
    ("GNSS 10 min with two steps", lambda s: stable(
        s, days=30, noise_mm=float(np.random.default_rng(s).uniform(0.5, 1.5)), step_s=600,
        steps=((8.0 + s % 5, 5.0 + s % 6), (20.0, -(10.0 + s % 21)))), 2),
    ("GNSS hourly 3 mm with a 20–30 mm step", lambda s: stable(
        s, days=30, noise_mm=3.0, step_s=3600, creep_mm_day=0.5,
        steps=((15.0 + s % 7, 20.0 + s % 11),)), 1),
    ("crack meter reset to zero", lambda s: stable(
        s, days=30, noise_mm=0.1, step_s=600, creep_mm_day=0.3, reset_at_days=18.0 + s % 5,
        kind="crack_meter"), 1),
    ("thermal daily swing and seasonal drift", lambda s: stable(
        s, days=30, noise_mm=1.0, step_s=600, thermal_mm=1.0 + s % 3 * 0.5,
        seasonal_mm=8.0), 0),
    ("a noisy week", lambda s: stable(
        s, days=7, noise_mm=3.0, step_s=600, outliers=0.03), 0),
    ("60 days of slow constant creep", lambda s: stable(
        s, days=60, noise_mm=float(np.random.default_rng(s).uniform(0.1, 2.0)), step_s=1800,
        creep_mm_day=float(np.random.default_rng([s, 1]).uniform(0.2, 2.0))), 0),
)


@pytest.fixture(scope="module")
def negative() -> tuple[list[tuple[str, int]], list[Series], Run]:
    labels, series = [], []
    for name, make, n_steps in NEGATIVE:
        for s in SEEDS:
            labels.append((name, n_steps))
            series.append(make(1000 + s))
    return labels, series, run(series)


def test_negative_controls_raise_no_orange_no_forecast_and_flag_each_step(
        negative: tuple[list[tuple[str, int]], list[Series], Run]) -> None:
    labels, series, r = negative
    steps = missed = 0
    for i, ((name, _n), s) in enumerate(zip(labels, series, strict=True)):
        assert r.peak(i) <= 2, (name, i, r.levels(i))
        assert r.forecasts_ever(i) == [], (name, i)
        assert not np.isfinite(r.forecast(i)[0]), (name, i)
        found = r.quality_events(i)
        for t_step in s.steps_t:  # a data-quality event within a day of each step
            steps += 1
            missed += not any(abs(t - t_step) <= DAY for t in found)
    # At least 95 % of the 80 steps (a 20 mm step under 3 mm hourly noise can hide).
    assert steps == 80 and missed <= 4, missed
    # Data-quality events only where there are steps: at most one spurious event per
    # series on average over the step-free families.
    free = [i for i, (_, n) in enumerate(labels) if n == 0]
    spurious = sum(len(r.quality_events(i)) for i in free)
    assert spurious <= len(free), spurious


def test_maintenance_window_expects_the_offset_and_raises_nothing() -> None:
    s = stable(7, days=20, noise_mm=0.5, step_s=600, steps=((10.0, 25.0),))
    start = s.t[0] + 9.5 * DAY
    window = {"maintenance_from": _iso(start), "maintenance_until": _iso(start + DAY)}
    quiet = run([s], {("kind", "gnss"): window})
    assert quiet.quality_events(0) == []  # expected: no finding for the maintainer
    assert quiet.state.disp is not None and quiet.state.disp.steps[0][0].expected
    assert quiet.state.disp.hist.offset[0] == pytest.approx(25.0, abs=2.0)  # still removed
    loud = run([s])
    assert len(loud.quality_events(0)) == 1


def test_a_slip_that_keeps_moving_still_warns() -> None:
    # A 15 mm jump after which the slope moves 20× faster than its creep: not an offset (it
    # does not plateau): reported as a slip, kept in the cumulative displacement, and the
    # faster movement after it establishes acceleration: the tangent angle goes red.
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 20 * DAY, 600.0)
    t = t[rng.random(t.size) > 0.03]
    slip = 14 * DAY
    d = 0.5 * t / DAY + np.where(t >= slip, 15.0 + 10.0 * (t - slip) / DAY, 0.0)
    s = Series("slip", T0 + t, np.round(d + rng.normal(0, 0.3, t.size), 2), 600.0,
               "crack_meter", "opening", steps_t=(T0 + slip,))
    r = run([s])
    assert r.state.disp is not None
    assert [e.kind for e in r.state.disp.steps[0]] == ["slip"]
    assert len(r.quality_events(0)) == 1
    t_red = r.first_at(0, 4)
    assert t_red is not None and t_red - (T0 + slip) < 2 * DAY, r.levels(0)
    assert r.levels(0)[-1][1] == 4  # and it stays red while the slope moves that fast


def test_real_acceleration_is_not_read_as_steps(skills: dict[str, Skill]) -> None:
    # The accelerating families' series carry no steps: the detector must not cut their
    # acceleration into offsets (which would also delay the warning).
    for fams in (FAMILIES,):
        for _, _, r in families_run(fams[2:3], range(5)):
            for i in range(5):
                assert len(r.quality_events(i)) <= 1, r.quality_events(i)


def _iso(t: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_lamosano_creep_raises_no_forecast_through_the_engine() -> None:
    """The real Lamosano p5 series (Nava et al. 2023; ../shared/data/PROVENANCE.md): five
    years of rain-driven creep with an 8 mm step after the Vaia storm, no failure."""
    import csv
    from datetime import UTC, datetime

    with shared_file("data/lamosano_p5_displacement_11day.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([datetime.fromisoformat(r["date"]).replace(tzinfo=UTC).timestamp()
                  for r in rows])
    p5 = np.array([float(r["p5"]) for r in rows])
    s = Series("lamosano-p5", t, p5, 11 * DAY)
    # p5 grows negative as the slope moves: the sensor's sign says so.
    r = run([s], {("kind", "gnss"): {"sign": -1}}, batch_s=11 * DAY)
    assert r.forecasts_ever(0) == []
    assert not np.isfinite(r.forecast(0)[0])
    assert r.peak(0) <= 2


def test_evidence_reads_like_a_duty_officers_note_and_alerts_show_prints_it() -> None:
    import json

    from alerts.cli.alerts_cli import render_evidence
    from simulators.displacement_scenarios import accelerating

    s = accelerating(3, v0_mm_day=1.0, pre_days=8, tert_days=6, noise_mm=0.2, step_s=600,
                     end_before_s=6 * 3600.0, kind="crack_meter")
    r = run([s])
    red = next(c for c in r.changes if c.hazard_kind == "deformation" and c.level == 4)
    ch = red.evidence["channels"][0]
    assert "null" not in json.dumps(ch) and None not in ch.values()
    assert ch["rule"] in ("tangent_angle", "forecast") and ch["threshold"]["red"] > 0
    assert set(ch["velocity_mm_per_day"]) == {"6h", "24h", "72h", "168h"}
    assert all(set(v) == {"mm_per_day", "se"} for v in ch["velocity_mm_per_day"].values())
    assert ch["reference"]["source"] == "baseline before acceleration"
    assert ch["reference_rate_mm_per_day"] == pytest.approx(1.0, rel=0.15)
    assert ch["tangent_angle_thresholds_deg"] == {"blue": 40, "yellow": 50, "orange": 80,
                                                  "red": 85}
    assert set(ch["forecast"]) == {"time", "lower", "upper", "issued_at"}
    assert "accelerating" in ch["summary_en"] and "改进切线角" in ch["summary_zh"]
    lines = render_evidence(red.evidence)
    text = "\n".join(lines)
    assert lines[0].strip().startswith("previous_level") is False
    assert "null" not in text and "None" not in text and len(lines) < 25, text
    assert "24h" in text and "±" in text and "forecast:" in text


@pytest.mark.parametrize("params, words", [
    ({"velocity_scales_h": [6, 12, 72, 168]}, "including 24"),
    ({"velocity_scales_h": [24, 6, 72, 168]}, "rising"),
    ({"tangent_angle_deg": [40, 50, 85, 80]}, "tangent_angle_deg"),
    ({"step_confirm_h": 1}, "step_confirm_h"),
    ({"reference_days": 60}, "45 days"),
    ({"reference_rate_mm_per_day": -1}, "reference_rate_mm_per_day"),
    ({"maintenance_from": "tomorrow"}, "ISO 8601"),
    ({"maintenance_from": "2026-12-02T08:00"}, "time zone"),
    ({"forecast_lead_h": [None, None, 24, 72]}, "forecast_lead_h"),
    ({"accel_min_pairs": 4}, "accel_min_pairs"),
    ({"accel_strong_z": 0}, "accel_strong_z"),
    ({"accel_strong_persist_h": -1}, "accel_strong_persist_h"),
])
def test_displacement_settings_are_validated_with_clear_errors(params: dict, words: str
                                                               ) -> None:
    from alerts.engine.rules import validate_override
    from geowarn.errors import InvalidInput
    with pytest.raises(InvalidInput, match=words):
        validate_override("kind", "gnss", params)


def test_every_displacement_setting_changes_a_verdict() -> None:
    """Each setting `rules-set` accepts for displacement moves something the engine decides
    on the same series (no accepted-and-ignored settings). The accel_strong_* settings act
    on hourly channels only: tests/test_outside_disp_trials.py
    test_ordered_scales_establish_hourly_acceleration_in_time_for_red."""
    from simulators.displacement_scenarios import accelerating

    base = [accelerating(4, v0_mm_day=1.0, pre_days=8, tert_days=6, noise_mm=0.3,
                         step_s=1800, end_before_s=6 * 3600.0, kind="crack_meter"),
            stable(4, days=9.5, noise_mm=0.3, step_s=1800, steps=((8.0, 6.0),),
                   kind="crack_meter")]

    variants: list[dict] = [
        {}, {"velocity_scales_h": [4, 24, 48, 120]}, {"accel_z": 4.0},
        {"accel_min_pairs": 3}, {"accel_persist_h": 48},
        {"reference_rate_mm_per_day": 3.0}, {"reference_days": 3},
        {"reference_gap_h": 0}, {"reference_min_days": 12},
        {"reference_floor_mm_per_day": 5.0},
        {"tangent_angle_deg": [10, 20, 30, 40]}, {"step_confirm_h": 48},
        {"step_z": 50}, {"step_min_mm": 20}, {"forecast_pre_h": 2},
        {"forecast_max_h": 30}, {"forecast_refresh_s": 86400},
        {"forecast_confidence": 0.5}, {"forecast_lead_h": [None, 500, 300, 200]},
        {"velocity_mm_per_day": [1, 2, 3, 4]}, {"cumulative_mm": [1, 2, 3, 4]},
        {"maintenance_from": "2000-01-01T00:00Z"}, {"sign": -1}, {"baseline": -100.0}]
    # One run: variant k on channels 2k+1 (accelerating) and 2k+2 (stable with a step).
    series = [x for _ in variants for x in base]
    overrides = {("channel", str(2 * k + c + 1)): v for k, v in enumerate(variants)
                 for c in (0, 1) if v}
    r = run(series, overrides)
    assert r.state.disp is not None
    st = r.state.disp

    def verdict(k: int) -> tuple:
        a, b = 2 * k, 2 * k + 1
        return (r.levels(a), r.quality_events(b), tuple(np.round(r.forecast(a), -2)),
                tuple(np.round(st.vel[a], 3)), round(float(st.v_ref_used[a]), 3),
                round(float(st.angle[a]), 2), round(float(st.cumulative[a]), 2))

    ref = verdict(0)
    for k in range(1, len(variants)):
        assert verdict(k) != ref, variants[k]
