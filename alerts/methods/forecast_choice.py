"""Which failure forecast the engine shows: Fukuzono's inverse velocity (α = 2,
methods/inverse_velocity.py) unless the Voight fit (methods/voight.py) finds, beyond doubt,
that the slope follows the law with another α.

Fukuzono (1985) fixed α = 2; Voight (1988, Nature 332:125; 1989, Science 243:200) let α
vary (≈ 1.5–2.2 in practice). Freeing α costs precision (bench/forecast_bound.py: ~3× in
the t_f standard deviation), so a free α must pay for itself: its F statistic must reach
ALPHA_F_STRONG, about a 5σ effect (F(1, n) → χ²₁ = z²), well beyond the Voight fit's own
0.1 % test (F ≈ 11). Measured on the warning-skill families (BENCHMARKS.md, "Warning skill:
displacement"): on crack meters with α = 1.6–2.4 the free-α fits reach F ≈ 30–200,000 and
land within a few per cent of the remaining time where the α = 2 line is off by 40–300 %;
the fits that freed α at the 0.1 % level on GNSS noise and velocity staircases (F ≈ 12–21)
were worse than the line. A steady-creep term alone (α = 2 kept) never brought a forecast
within 10 % that the line missed, and once moved one from 22 % to 96 % off: it does not
choose the Voight fit by itself.

The whole fit costs 5–25 ms against ~1 ms for the line, so it runs only where the α-free
grid alone (voight.alpha_f_screen, one of its solves) already rejects α = 2 at the fit's
own level.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import f as f_dist

from alerts.methods.inverse_velocity import Forecast
from alerts.methods.ragged import FloatArray
from alerts.methods.voight import NO_FIT, VoightFit, alpha_f_screen, fit_voight

ALPHA_F_STRONG = 25.0
SCREEN_P = 0.001  # as voight.fit_voight's alpha_p


def voight_wins(v: VoightFit) -> bool:
    """Whether the Voight fit's forecast replaces the inverse-velocity one."""
    return v.forecast.issued and v.alpha_free and v.alpha_f >= ALPHA_F_STRONG


def voight_forecast(t: FloatArray, x: FloatArray, now: float, confidence: float
                    ) -> tuple[Forecast | None, VoightFit]:
    """The Voight forecast where it replaces the inverse-velocity one (else None), and the
    fit (NO_FIT where the screen stopped it)."""
    n = int(np.isfinite(np.asarray(x, dtype=np.float64)).sum())
    screen = alpha_f_screen(t, x, now)
    if not screen >= float(f_dist.ppf(1 - SCREEN_P, 1, max(n - 4, 1))):
        return None, NO_FIT
    v = fit_voight(t, x, now, confidence)
    return (v.forecast if voight_wins(v) else None), v
