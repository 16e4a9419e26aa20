"""Displacement scenario generators for the engine's displacement suite
(tests/test_engine_disp_scenarios.py) and the warning-skill benchmark (bench/warning_skill.py).

Every generator returns a `Series`: irregular reading times (seconds) and values (mm) of one
sensor, made from a seed. Realism knobs: creep rate, tertiary duration, noise (0.1 mm crack
meters to 3 mm GNSS), sampling (1 minute to hourly), dropouts, outliers, and the physics:
Fukuzono/Voight tertiary creep with α = 2 (the estimator's own model) and α ≠ 2, creep that
accelerates in velocity steps, steps in position, resets, thermal drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DAY = 86400.0
HOUR = 3600.0
SPEC = {"gnss": "disp_x", "crack_meter": "opening", "inclinometer": "disp_a"}
T0 = 1_780_000_000.0 - (1_780_000_000.0 % DAY)  # a UTC midnight


@dataclass(frozen=True)
class Series:
    name: str
    t: np.ndarray
    v: np.ndarray
    step_s: float
    kind: str = "gnss"
    spec: str = "disp_x"
    failure_t: float = float("nan")  # absolute seconds; NaN: this slope does not fail
    steps_t: tuple[float, ...] = ()  # times of position steps put in
    meta: dict[str, float] = field(default_factory=dict)


def _sample(rng: np.random.Generator, duration_s: float, step_s: float, dropout: float
            ) -> np.ndarray:
    t = np.arange(0.0, duration_s, step_s) + rng.uniform(0, 0.2 * step_s)
    return t[rng.random(t.size) >= dropout]


def _noise(rng: np.random.Generator, n: int, sigma: float, outliers: float) -> np.ndarray:
    e = rng.normal(0.0, sigma, n)
    bad = rng.random(n) < outliers
    return e + np.where(bad, rng.choice([-1.0, 1.0], n) * rng.uniform(8, 20, n) * max(sigma,
                                                                                       0.5), 0)


def tertiary(t: np.ndarray, v0: float, onset: float, tf: float, alpha: float) -> np.ndarray:
    """Displacement (mm) of steady creep v0 (mm/s) then Voight/Fukuzono tertiary creep
    d²x/dt² = A·v^α, continuous in velocity at `onset`, failing at `tf`."""
    span = tf - onset
    dt = np.maximum(tf - t, 1e-6)
    if alpha == 2.0:
        late = v0 * onset + v0 * span * np.log(span / dt)
    else:
        p = 1.0 / (alpha - 1.0)
        late = v0 * onset + v0 * span ** p * (dt ** (1 - p) - span ** (1 - p)) / (p - 1)
    return np.where(t < onset, v0 * t, late)


def tertiary_week(seed: int, alpha: float, noise: float, *, salt: int = 100
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """A week of hourly bins (each timed somewhere in its first 10 minutes) of a slope failing
    at day 20 after 0.5–2 mm/day creep, tertiary from day 10 with exponent `alpha`, ending
    4–8 h before failure, with white noise (mm); (times s, displacement mm, failure time s).
    `salt` scales α into the seed, so tests with their own seeds keep them."""
    rng = np.random.default_rng([seed, int(alpha * salt)])
    tf, onset = 20 * DAY, 10 * DAY
    end = tf - rng.uniform(4, 8) * HOUR
    t = np.arange(end - 168 * HOUR, end, HOUR) + rng.uniform(0, 600, 168)
    x = tertiary(t, rng.uniform(0.5, 2.0) / DAY, onset, tf, alpha) + rng.normal(0, noise,
                                                                                t.size)
    return t, x, tf


def velocity_steps(t: np.ndarray, v0: float, onset: float, tf: float) -> np.ndarray:
    """Creep whose velocity doubles in steps over ever shorter stages (a staircase around the
    hyperbola, not the estimator's smooth law), failing at tf."""
    span = tf - onset
    k = np.floor(np.log2(span / np.maximum(tf - t, 1e-6)))  # stage index
    k = np.where(t < onset, -1, k)
    start = tf - span / 2.0 ** np.maximum(k, 0)
    done = v0 * span / 2.0 * np.maximum(k, 0)  # each finished stage adds v0·span/2
    return np.where(t < onset, v0 * t, v0 * onset + done + v0 * 2.0 ** k * (t - start))


def accelerating(seed: int, *, v0_mm_day: float, pre_days: float, tert_days: float,
                 noise_mm: float, step_s: float, dropout: float = 0.03,
                 outliers: float = 0.002, alpha: float = 2.0, shape: str = "voight",
                 end_before_s: float = 0.0, kind: str = "gnss") -> Series:
    rng = np.random.default_rng(seed)
    onset, tf = pre_days * DAY, (pre_days + tert_days) * DAY
    t = _sample(rng, tf - end_before_s, step_s, dropout)
    v0 = v0_mm_day / DAY
    d = (velocity_steps(t, v0, onset, tf) if shape == "steps"
         else tertiary(t, v0, onset, tf, alpha))
    d = d + _noise(rng, t.size, noise_mm, outliers)
    return Series(f"acc-{shape}-a{alpha:g}-s{seed}", T0 + t, np.round(d, 2), step_s, kind,
                  SPEC[kind], failure_t=T0 + tf, meta={"onset": T0 + onset, "alpha": alpha,
                                            "noise": noise_mm, "v0": v0_mm_day})


def stable(seed: int, *, days: float, noise_mm: float, step_s: float,
           creep_mm_day: float = 0.0, steps: Sequence[tuple[float, float]] = (),
           reset_at_days: float | None = None, thermal_mm: float = 0.0,
           seasonal_mm: float = 0.0, dropout: float = 0.03, outliers: float = 0.002,
           kind: str = "gnss") -> Series:
    """A slope that does not fail: constant creep, position steps (day, mm), a reset to zero,
    daily thermal swing and a slow seasonal drift."""
    rng = np.random.default_rng(seed)
    t = _sample(rng, days * DAY, step_s, dropout)
    d = creep_mm_day * t / DAY + 12.0
    d = d + thermal_mm * np.sin(2 * np.pi * t / DAY) + seasonal_mm * np.sin(
        2 * np.pi * t / (120 * DAY))
    for day, size in steps:
        d = d + np.where(t >= day * DAY, size, 0.0)
    if reset_at_days is not None:
        d = np.where(t >= reset_at_days * DAY, d - d[np.searchsorted(t, reset_at_days * DAY)],
                     d)
    d = d + _noise(rng, t.size, noise_mm, outliers)
    step_times = [T0 + day * DAY for day, _ in steps]
    if reset_at_days is not None:
        step_times.append(T0 + reset_at_days * DAY)
    return Series(f"stable-s{seed}", T0 + t, np.round(d, 2), step_s, kind, SPEC[kind],
                  steps_t=tuple(step_times), meta={"noise": noise_mm})


