"""Data-quality gaps of issue 7 over seeds. Gap 1 fails today and is marked strict xfail
(when a fix lands the xfail turns into an error and must be removed):

1. a rain gauge stuck at a LARGE non-zero increment (5-25 mm per 10 minutes) reaches orange
   or red before its run counts as stuck (`stuck_count` samples: two hours), so the hold at
   `suspicious_max_level` comes too late;
2. bursts of single-sample +4.5-7 m water-level spikes 2-5 samples apart at 1-minute
   sampling (two or three inside one 7-sample spike-filter window) raise a false level
   (BENCHMARKS.md soak: SOAK-WL-00612, bench/soak_fleet.py with SPIKE_APART = 2). Fed to
   the pure tick one sample per step, 20 of 20 seeds raise nothing (measured 2026-12-02), so
   this test passes: the soak's false levels need the live stream's step cutting (several
   samples per step), not reproduced here; still open.
"""

from __future__ import annotations

import numpy as np
import pytest

from alerts.methods.levels import Level
from tests.quality_cases import Series
from tests.test_outside_river_spikes import judge, normal_river
from tests.tick_harness import gauge, peak, run

SEEDS = range(20)


def stuck_large(seed: int, step_min: int) -> Series:
    rng = np.random.default_rng([seed, step_min, 7])
    per_10 = float(rng.uniform(5.0, 25.0))
    value = round(per_10 * step_min / 10.0, 1)
    lead = int(rng.integers(6, 24))
    rain = np.zeros(lead + int(4 * 60 / step_min))
    rain[lead:] = value
    return Series(rain, 60.0 * step_min)


@pytest.mark.xfail(strict=True, reason="issue 7 gap 1: large repeating increments not held")
@pytest.mark.parametrize("step_min", [5, 10])
def test_a_gauge_stuck_at_a_large_increment_is_held_at_yellow(step_min: int) -> None:
    held = 0
    for seed in SEEDS:
        s = stuck_large(seed, step_min)
        held += peak(run([gauge(1, "RG", "HP1", s.step_s)], [s]), "HP1",
                     "rainfall") <= Level.YELLOW
    assert held >= 19, f"{held} of {len(SEEDS)} held at yellow"


@pytest.mark.parametrize("width", [2, 3])
def test_spike_bursts_within_one_filter_window_raise_nothing(width: int) -> None:
    clean = 0
    for seed in SEEDS:
        r = normal_river(seed, 1, hours=3.0)
        rng = np.random.default_rng([seed, width, 9])
        at = int(rng.integers(60, 120))
        for _ in range(width):
            r.values[at] += rng.uniform(4.5, 7.0)
            at += int(rng.integers(2, 6))
        clean += peak(judge(r), "RIVER", "water_level") == 0
    assert clean >= 19, f"{clean} of {len(SEEDS)} raised nothing"
