"""Quality flags, hysteresis, fusion and level names: the parts between a rule's raw level
and the level a hazard point shows."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.methods.fusion import Family, FusionConfig, fuse
from alerts.methods.hysteresis import HysteresisConfig, HysteresisState, run, step
from alerts.methods.levels import Level, classify
from alerts.methods.quality import (
    Flag,
    QualityConfig,
    flag_samples,
    gate_levels,
    hampel_spikes,
    maintenance_due,
    reliability,
    stuck_runs,
)
from devices.messages import Quality
from geowarn.errors import InvalidInput

MIN = 60.0


def test_level_names_and_classify() -> None:
    assert Level.RED.grade == "I" and Level.BLUE.grade == "IV"
    assert Level.ORANGE.chinese == "橙色预警(II级)"
    assert Level.YELLOW.english == "yellow warning (III)"
    assert Level.RED.colour == "#ff0000"
    # A per-site table may leave blue unused: reaching yellow's value is still YELLOW.
    assert classify(np.array([5.0, 12.0, np.nan]), (np.nan, 10, 20, 30)).tolist() == [0, 2, 0]
    assert classify(np.array([10.0]), (5, 10, 20, 30), inclusive=False).tolist() == [1]


def test_hampel_stuck_limits_rate_and_gaps() -> None:
    v = np.array([[1.0, 1.0, 1.0, 1.0, 1.1, 1.0, 9.0, 1.0, 1.0, 1.0]])
    # Judged as the engine judges a newest sample: against the trailing 7 samples, once more
    # than 4 are there. Where the window is flat the MAD is 0 and a 0.1 wiggle would be a
    # "spike": the minimum deviation (a few resolution steps) keeps those out.
    assert np.flatnonzero(hampel_spikes(v, 3, 3.0)[0]).tolist() == [4, 6]
    assert np.flatnonzero(hampel_spikes(v, 3, 3.0, min_deviation=0.5)[0]).tolist() == [6]
    s = np.array([[2.0, 2, 2, 2, 3, 3, 0, 0, 0, 0]])
    assert np.flatnonzero(stuck_runs(s, 3)[0]).tolist() == [2, 3, 8, 9]
    assert np.flatnonzero(stuck_runs(s, 3, exempt=0.0)[0]).tolist() == [2, 3]
    t = np.array([0, 60, 120, 180, 600, 660, 720], dtype=float)
    x = np.array([[5.0, 5.2, np.nan, 5.1, 5.3, 120.0, 5.2]])
    cfg = QualityConfig(hard_min=0, hard_max=100, soft_max=5.25, max_rate=0.01,
                        max_gap_s=300, stuck_count=4, hampel_min_deviation=1.0)
    f = flag_samples(t, x, cfg)[0]
    assert f[0] == 0 and f[1] == 0
    assert f[2] == Flag.MISSING
    assert f[4] & Flag.GAP_BEFORE and f[4] & Flag.SOFT_LIMIT  # 420 s since the last reading
    assert f[5] & Flag.HARD_LIMIT and f[5] & Flag.RATE and not f[5] & Flag.SOFT_LIMIT
    assert reliability(f).tolist() == [0, 0, 2, 0, 1, 2, 1]  # 5.2 after 120: a rate jump
    assert reliability(f)[5] == Quality.UNRELIABLE
    with pytest.raises(InvalidInput, match="stuck_count"):
        QualityConfig(stuck_count=1)


def test_flagged_sample_never_raises_alone() -> None:
    levels = np.array([[0, 0, 4, 0, 0], [1, 1, 3, 2, 2]], dtype=np.int8)
    flags = np.array([[0, 0, Flag.SPIKE, 0, 0], [0, 0, Flag.RATE, 0, 0]], dtype=np.uint16)
    gated = gate_levels(levels, flags)
    assert gated.tolist() == [[0, 0, 0, 0, 0], [1, 1, 2, 2, 2]]
    all_flagged = gate_levels(np.array([[3, 3]], dtype=np.int8),
                              np.array([[Flag.STUCK, Flag.STUCK]], dtype=np.uint16))
    assert all_flagged.tolist() == [[0, 0]]


def test_offline_means_maintenance() -> None:
    due = maintenance_due(np.array([1000.0, 100.0, np.nan]), now=1200.0, offline_after_s=600)
    assert due.tolist() == [False, True, True]


CFG = HysteresisConfig(raise_at=np.array([35.0, 45, 60, 80]),
                       clear_at=np.array([30.0, 40, 55, 75]), min_dwell_s=60 * MIN)


def test_flapping_value_gives_one_change() -> None:
    t = np.arange(36) * 10 * MIN  # six hours of 10-minute values oscillating 44/46
    v = np.where(np.arange(36) % 2 == 0, 46.0, 44.0)[None, :]
    levels, _, changes = run(v, t, CFG)
    assert changes.tolist() == [1] and set(levels[0].tolist()) == {Level.YELLOW}
    naive = HysteresisConfig(raise_at=CFG.raise_at, clear_at=CFG.raise_at, min_dwell_s=0)
    assert run(v, t, naive)[2][0] == 36  # what the dwell and the clear band prevent


def test_lowering_waits_for_the_dwell_and_state_round_trips() -> None:
    t = np.arange(20) * 10 * MIN
    v = np.r_[np.full(5, 62.0), np.full(15, 20.0)][None, :]
    levels, st, changes = run(v, t, CFG)
    # Below every clear line from sample 5 (t = 50 min); lowered at t = 110 min (sample 11).
    assert levels[0, :11].tolist() == [3] * 11 and levels[0, 11:].tolist() == [0] * 9
    assert changes[0] == 2 and st.changed_at[0] == 110 * MIN
    # Save/restore halfway gives the same result as one run.
    first, mid, _ = run(v[:, :8], t[:8], CFG)
    restored = HysteresisState.from_arrays(mid.to_arrays())
    second, _, _ = run(v[:, 8:], t[8:], CFG, restored)
    assert np.array_equal(np.c_[first, second], levels)
    # A missing value holds the level.
    st2, changed = step(restored, np.array([np.nan]), 200 * MIN, CFG)
    assert not changed[0] and st2.level[0] == restored.level[0]
    with pytest.raises(InvalidInput, match="lacks"):
        HysteresisState.from_arrays({"level": np.zeros(1)})
    with pytest.raises(InvalidInput, match="clear thresholds"):
        HysteresisConfig(raise_at=np.array([1.0, 2, 3, 4]), clear_at=np.array([1.0, 2, 3, 5]))


def test_fusion_rules() -> None:
    # point 0: rain YELLOW + two deformation channels (BLUE, NONE); point 1: one ORANGE
    # deformation channel and a NONE water level; point 2: nothing but a regional YELLOW.
    lv = np.array([2, 1, 0, 3, 0], dtype=np.int8)
    pt = np.array([0, 0, 0, 1, 1])
    fam = np.array([Family.RAINFALL, Family.DEFORMATION, Family.DEFORMATION,
                    Family.DEFORMATION, Family.WATER_LEVEL])
    reg = np.array([0, 0, 2], dtype=np.int8)
    assert fuse(lv, pt, fam, 3, FusionConfig(), reg).tolist() == [3, 3, 2]
    k2 = fuse(lv, pt, fam, 3, FusionConfig(mode="k_of_n", k=2), reg)
    # k counts within a kind: point 0's deformation needs both crack meters (only one is
    # BLUE: NONE), so no rain+deformation raise, rain alone YELLOW; point 1's only
    # deformation channel is all it has: ORANGE (the water level cannot outvote it).
    assert k2.tolist() == [2, 3, 2]
    faulty = fuse(np.array([3, 0], dtype=np.int8), np.array([0, 0]),
                  np.array([Family.DEFORMATION] * 2), 1, FusionConfig(mode="k_of_n", k=2))
    assert faulty.tolist() == [0]  # one sensor of two cannot raise the point
    single = fuse(np.array([3], dtype=np.int8), np.array([0]), np.array([1]), 1,
                  FusionConfig(mode="k_of_n", k=3))
    assert single.tolist() == [3]  # a one-sensor point needs only its sensor
    capped = fuse(np.array([4, 4], dtype=np.int8), np.array([0, 0]),
                  np.array([Family.RAINFALL, Family.DEFORMATION]), 1)
    assert capped.tolist() == [4]
    strict = FusionConfig(rain_at_least=Level.ORANGE)
    assert fuse(lv, pt, fam, 3, strict, reg).tolist() == [2, 3, 2]  # rain YELLOW < ORANGE
    with pytest.raises(InvalidInput, match="point indices"):
        fuse(lv, pt + 5, fam, 3)
