"""The Voight-law fit (alerts/methods/voight.py) on synthetic Voight creep, 20 seeds per α:
within 10 % of the remaining time, band coverage, α freed only when the data demand it, and
no forecast on steady creep."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.methods.voight import fit_voight
from geowarn.errors import InvalidInput
from simulators.displacement_scenarios import DAY, HOUR, tertiary_week

SEEDS = range(20)


# On the coarse α grid (0.1 steps) and between its points: a slope's α is never on a grid.
@pytest.mark.parametrize("alpha", [1.6, 1.65, 1.8, 1.85, 2.0, 2.15, 2.2, 2.35, 2.4])
def test_voight_fit_within_ten_percent_for_several_alphas(alpha: float) -> None:
    ok = covered = freed = 0
    for s in SEEDS:
        t, x, tf = tertiary_week(s, alpha, 0.1)
        f = fit_voight(t, x, float(t[-1]))
        fc = f.forecast
        assert fc.issued, (alpha, s)
        ok += abs(fc.t_failure - tf) <= 0.1 * (tf - t[-1])
        covered += fc.t_lower <= tf <= fc.t_upper
        freed += f.alpha_free
    # Measured 20 of 20 for α ≤ 1.8, 19 at 1.85, 17 at 2.2, 15 at 2.15, 13 at 2.35, 11 at 2.4
    # (the displacement flattens near failure as α grows). Before α was refined on 0.01
    # steps: 20 on the grid's own α (15 at 2.4) but 0–2 of 20 between its points.
    assert ok >= (10 if alpha > 2.3 else 14 if alpha > 2.1 else 18), ok
    assert covered >= 14, covered  # 95 % band: measured 15–19 of 20
    if alpha == 2.0:
        assert freed <= 2, freed  # α = 2 stays the null model (F-test at 0.1 %)
    else:  # measured 15 of 20 at 2.15 (0.15 from the null), 20 elsewhere
        assert freed >= (14 if abs(alpha - 2.0) < 0.2 else 18), freed


def test_no_voight_forecast_on_steady_creep() -> None:
    for s in SEEDS:
        rng = np.random.default_rng(s)
        t = np.arange(0, 168 * HOUR, HOUR)
        x = rng.uniform(0.2, 2.0) * t / DAY + rng.normal(0, rng.uniform(0.1, 2.0), t.size)
        assert not fit_voight(t, x, float(t[-1])).forecast.issued, s


def test_voight_fit_rejects_bad_settings() -> None:
    with pytest.raises(InvalidInput, match="confidence"):
        fit_voight(np.arange(20.0), np.arange(20.0), 20.0, confidence=1.5)
