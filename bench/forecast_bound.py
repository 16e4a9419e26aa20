"""How well can any estimator forecast failure on the warning-skill families? The Cramér–Rao
bound of the failure time t_f, relative to the remaining time, for each generated slope
(bench/warning_skill.py FAMILIES, the same seeds), with hourly bins over the last
`--window-h` hours of the tertiary phase ending at the data's end.

The model is the generator's law (Voight 1988), x = c + K·g(t_f − t; α) with
g(τ; α) = (τ^(1−p) − 1)/(p − 1), p = 1/(α − 1) (−ln τ at α = 2), and Gaussian bin noise:
σ_bin = 1.2533·σ/√(readings per hour) (a median's efficiency). The bound is computed with
α known (Fukuzono's fixed α = 2 when it is true) and with α fitted.
"within 10 %" is the fraction of slopes an unbiased efficient estimator would get within
10 % of the remaining time, P(|N(0, sd)| ≤ 0.1), averaged over the seeds.

Run: .venv/bin/python -m bench.forecast_bound [--seeds 20] [--first-seed 0] [--window-h 168]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm

from bench.warning_skill import FAMILIES, MINUTE_FAMILY
from simulators.displacement_scenarios import DAY, HOUR, Series


def _model(t: np.ndarray, c: float, k: float, tf: float, alpha: float) -> np.ndarray:
    p = 1.0 / (alpha - 1.0)
    tau = np.maximum(tf - t, 1.0) / DAY
    if abs(p - 1.0) < 1e-9:
        return c - k * np.log(tau)
    return c + k * (tau ** (1.0 - p) - 1.0) / (p - 1.0)


def relative_sd(s: Series, window_h: float, fit_alpha: bool) -> float:
    """Cramér–Rao standard deviation of t_f / remaining time for one generated slope."""
    alpha, onset, tf = s.meta["alpha"], s.meta["onset"], s.failure_t
    now = float(s.t[-1])
    last = np.floor(now / HOUR)
    t = (last - np.arange(int(window_h), 0, -1) + 0.5) * HOUR
    t = t[t > onset]
    per_hour = max(HOUR / s.step_s, 1.0)
    sigma = s.meta["noise"] * (1.2533 / np.sqrt(per_hour) if per_hour > 1 else 1.0)
    p = 1.0 / (alpha - 1.0)
    k = s.meta["v0"] * ((tf - onset) / DAY) ** p  # velocity continuous at the onset
    theta = np.array([0.0, k, tf, alpha])
    steps = np.array([1e-3, max(k, 1e-3) * 1e-4, 60.0, 1e-4])
    jac = []
    for i in range(4 if fit_alpha else 3):
        d = np.zeros(4)
        d[i] = steps[i]
        jac.append((_model(t, *(theta + d)) - _model(t, *(theta - d))) / (2 * steps[i]))
    j = np.array(jac).T
    cov = np.linalg.pinv(j.T @ j / sigma ** 2)
    return float(np.sqrt(cov[2, 2]) / (tf - now))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--window-h", type=float, default=168.0)
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print("| family | CR sd / remaining, α known (p10 / p50 / p90) | within 10 %, α known | "
          "within 10 %, α fitted |")
    print("|---|---|---|---|")
    for fam in (*FAMILIES, MINUTE_FAMILY):
        if "staircase" in fam.name:
            continue  # not the law: no bound from it
        series = [fam.make(s) for s in seeds]
        known = np.array([relative_sd(s, args.window_h, False) for s in series])
        fitted = np.array([relative_sd(s, args.window_h, True) for s in series])
        q = np.percentile(known, [10, 50, 90])
        pk = float(np.mean(2 * norm.cdf(0.1 / known) - 1))
        pf = float(np.mean(2 * norm.cdf(0.1 / fitted) - 1))
        print(f"| {fam.name} | {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} | {pk:.0%} | {pf:.0%} |")


if __name__ == "__main__":
    main()
