"""Displacement and failure-time rules: velocity, acceleration agreement, tangent
angles at 45/80/85°, Saito's formula, inverse velocity on synthetic creep with a known
failure time, and the Lamosano p5 creep series (Nava et al. 2023) as a negative control."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from alerts.methods.displacement import (
    AccelerationRule,
    TangentAngleConfig,
    detect_acceleration,
    rolling_regression,
    savgol_velocity,
    tangent_angle,
    tangent_levels,
)
from alerts.methods.failure_time import (
    ForecastConfig,
    forecast_failure,
    saito_failure_time,
    saito_times,
)
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput
from tests.fixtures.shared import shared_file

H = 3600.0
LAMOSANO = "data/lamosano_p5_displacement_11day.csv"


def creep(hours: np.ndarray, t_fail: float = 400.0, t_acc: float = 200.0, v0: float = 0.5
          ) -> np.ndarray:
    """Constant 0.5 mm/h, then Fukuzono α=2 acceleration v = 1/(A(t_f − t)) matching v0 at
    t_acc (A = 1/(v0 (t_f − t_acc)) = 0.01): S = 100 + 100·ln(200/(400 − t)) after 200 h."""
    k = 1.0 / (v0 * (t_fail - t_acc)) * 1.0
    s_acc = v0 * t_acc
    late = s_acc + (1 / k) * np.log((t_fail - t_acc) / np.maximum(t_fail - hours, 1e-12))
    return np.where(hours <= t_acc, v0 * hours, late)


def test_rolling_regression_slope_and_savgol_velocity() -> None:
    y = np.array([[1.0, 3, 5, 7, 9, 11], [0, 1, 0, 1, 0, 1]])
    reg = rolling_regression(y, 4)
    np.testing.assert_allclose(reg.slope[0, 3:], [2, 2, 2])
    np.testing.assert_allclose(reg.stderr[0, 3:], [0, 0, 0], atol=1e-12)
    # 0,1,0,1 against 0..3: slope = Σ(x−1.5)y / 5 = (−0.5 + 1.5)/5 = 0.2
    np.testing.assert_allclose(reg.slope[1, 3:], [0.2, -0.2, 0.2])
    assert np.isnan(reg.slope[:, :3]).all()
    v = savgol_velocity(np.array([3.0 * np.arange(20)]), step_s=60.0, window=7)
    np.testing.assert_allclose(v, 3.0 / 60.0)


def test_acceleration_needs_all_windows_to_agree() -> None:
    rng = np.random.default_rng(7)
    h = np.arange(398.0)
    steady = 0.5 * h + rng.normal(0, 0.2, (10, h.size))
    acc = detect_acceleration(steady, AccelerationRule())
    assert not acc.established.any() and (acc.onset == -1).all()
    failing = creep(h) + rng.normal(0, 0.2, (10, h.size))
    acc = detect_acceleration(failing, AccelerationRule())
    assert (acc.onset > 200).all() and (acc.onset < 380).all()
    one_window = detect_acceleration(failing, AccelerationRule(windows=(24,), persist=1))
    assert (one_window.onset <= acc.onset).all()


def test_tangent_angles_at_45_80_85_degrees() -> None:
    v_ref = 2.0
    v = v_ref * np.tan(np.radians([30.0, 45.0, 60.0, 79.9, 80.0, 84.9, 85.0, 89.0]))
    ang = tangent_angle(v, v_ref)
    np.testing.assert_allclose(ang, [30, 45, 60, 79.9, 80, 84.9, 85, 89], atol=1e-9)
    # 80° ≈ 5.67·v̄, 85° ≈ 11.43·v̄ (reference)
    assert v_ref * 5.67 == pytest.approx(v[4], rel=1e-3)
    assert v_ref * 11.43 == pytest.approx(v[6], rel=1e-3)
    literal = TangentAngleConfig(blue_from_deg=40.0, yellow_above_deg=45.0)
    angles = np.array([30.0, 45.0, 45.5, 79.9, 80.0, 84.9, 85.0, 89.0])
    levels = tangent_levels(angles, literal)
    assert levels.tolist() == [Level.NONE, Level.BLUE, Level.YELLOW, Level.YELLOW,
                               Level.ORANGE, Level.ORANGE, Level.RED, Level.RED]
    # The default keeps a ±5° band around the constant-velocity line blue.
    assert tangent_levels(np.array([39.9, 45.0, 50.0, 50.1])).tolist() == [0, 1, 1, 2]
    assert tangent_levels(tangent_angle(np.array([1.0]), np.array([0.0]))).tolist() == [0]
    with pytest.raises(InvalidInput, match="bands"):
        TangentAngleConfig(orange_from_deg=86.0)


def test_tangent_levels_from_creep() -> None:
    h = np.arange(398.0)
    s = creep(h)[None, :]
    v_bar = np.array([0.5 / H])  # the creep's constant rate before 200 h
    v = savgol_velocity(s, H, 11)
    lv = tangent_levels(tangent_angle(v, v_bar))[0]
    # v/v̄ = 200/(400 − t): 45° until 200 h; 5.67·v̄ at t = 364.7 h; 11.43·v̄ at 382.5 h
    assert lv[150] == Level.BLUE
    assert lv[300] == Level.YELLOW
    assert lv[370] == Level.ORANGE
    assert lv[390] == Level.RED


def test_saito_three_point_formula() -> None:
    # Steps taken at 10, 16, 19: t_r = (256 − 190)/(32 − 29) = 22
    assert float(saito_failure_time(10.0, 16.0, 19.0)) == pytest.approx(22.0)
    # Large epoch-like times give the same answer (the centring keeps precision).
    assert float(saito_failure_time(1e9 + 10, 1e9 + 16, 1e9 + 19)) == pytest.approx(1e9 + 22)
    assert np.isnan(saito_failure_time(10.0, 16.0, 22.0))  # constant rate: no failure
    with pytest.raises(InvalidInput, match="t1 < t2 < t3"):
        saito_failure_time(10.0, 9.0, 19.0)
    # On the α=2 creep, steps of 20 mm from 120 mm: the exact curve fails at 400 h.
    h = np.arange(0.0, 399.9, 0.05)
    t1, t2, t3 = saito_times(h, creep(h)[None, :], 120.0, 20.0)
    assert float(saito_failure_time(t1, t2, t3)[0]) == pytest.approx(400.0, abs=0.05)


def test_inverse_velocity_forecast_on_synthetic_creep() -> None:
    rng = np.random.default_rng(2026)
    h = np.arange(398.0)
    # 20 sensors with 0.1 mm noise (a crackmeter's resolution), hourly readings.
    disp = creep(h) + rng.normal(0, 0.1, (20, h.size))
    cfg = ForecastConfig()
    first_all = None
    # Up to 390 h: closer to failure the remaining time is shorter than the 11-sample
    # smoothing window, and no hourly method can be within 5% of a few hours.
    for now in range(150, 391, 5):
        f = forecast_failure(h[: now + 1] * H, disp[:, : now + 1], cfg)
        if now <= 220:
            assert not f.issued.any(), f"forecast at {now} h before acceleration is visible"
        if f.issued.all() and first_all is None:
            first_all = now
        if first_all is not None:
            # Once acceleration is clear (every sensor issues) every later forecast is within
            # 5% of the remaining time and has its band in the right order.
            assert f.issued.all(), now
            remaining = 400.0 - now
            err = np.abs(f.t_failure / H - 400.0)
            assert err.max() <= 0.05 * remaining, (now, err.max(), remaining)
            assert np.all(f.t_lower <= f.t_failure) and np.all(f.t_failure <= f.t_upper)
    assert first_all is not None and first_all <= 360, first_all


def test_no_forecast_on_steady_creep() -> None:
    rng = np.random.default_rng(3)
    h = np.arange(400.0)
    disp = 0.5 * h + rng.normal(0, 0.2, (50, h.size))
    f = forecast_failure(h * H, disp)
    assert not f.issued.any()


def test_lamosano_creep_raises_no_failure_forecast() -> None:
    with shared_file(LAMOSANO).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # p5 grows negative as the slope moves: flip it so movement is positive.
    p5 = -np.array([float(r["p5"]) for r in rows])
    assert len(p5) == 162
    days = np.array([r["date"] for r in rows], dtype="datetime64[D]")
    assert np.all(np.diff(days).astype(int) == 11)
    t = (days - days[0]).astype(np.float64) * 86400.0
    # 11-day samples: windows of 5/9 samples (55 and 99 days), fits over up to a year.
    cfg = ForecastConfig(savgol_window=5, acceleration=AccelerationRule(windows=(5, 9)),
                         fit_samples=33)
    # Not a trivial control: rain-driven steps (e.g. after the Vaia storm, Oct 2018) make
    # every regression window see acceleration at times; the fit gates must still hold.
    acc = detect_acceleration(p5[None, :], cfg.acceleration)
    assert acc.agree.sum() >= 5
    results = [forecast_failure(t[: n + 1], p5[None, : n + 1], cfg) for n in range(20, len(p5))]
    assert sum(bool(r.accelerating[0]) for r in results) >= 1
    assert not any(bool(r.issued[0]) for r in results)
