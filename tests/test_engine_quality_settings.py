"""Every data-quality (and fusion) setting `geowarn engine rules-set` accepts changes a
verdict, proven here through the engine tick with the rule resolution rules-set feeds; and
settings a channel's method never reads are refused with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alerts.engine.rule_params import RuleParams
from alerts.engine.rules import APPLIES_TO, ChannelInfo, resolve, validate_override
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput
from tests.quality_cases import (
    Series,
    rain_levels_by_hand,
    rain_spike_case,
    repeating_gauge_case,
    river_gap_case,
)
from tests.tick_harness import first_time, gauge, peak, run

THRESHOLD = [ChannelInfo(1, "GW", "groundwater_level", "level", None, "SITE", 600.0)]
THR_RULE = {"method": "threshold", "thresholds": [10, 20, 30, 40]}


def _spiky(size: float = 25.0) -> Series:
    v = np.round(5.0 + np.random.default_rng(1).normal(0, 0.1, 60), 2)
    v[30] = size
    return Series(v, 600.0)


def _thr(**extra: object) -> dict[tuple[str, str], dict[str, object]]:
    return {("site", "SITE"): {**THR_RULE, **extra}}


def test_hampel_k_and_min_deviation_decide_what_a_spike_is() -> None:
    s = _spiky()
    assert peak(run(THRESHOLD, [s], _thr()), "SITE", "deformation") == 0  # spike left out
    loose = run(THRESHOLD, [s], _thr(hampel_k=1e6))
    assert peak(loose, "SITE", "deformation") == Level.YELLOW  # k too wide: it counts
    floor = run(THRESHOLD, [s], _thr(hampel_min_deviation=50.0))
    assert peak(floor, "SITE", "deformation") == Level.YELLOW  # under the floor: not a spike


@pytest.mark.parametrize("confirm", [0, 1, 2])
def test_onset_confirm_samples_sets_the_delay_of_an_onset(confirm: int) -> None:
    case = river_gap_case(3)
    s = case.series
    ch = [ChannelInfo(1, "WL", "water_level", "level", None, "RIVER", s.step_s)]
    rules = {("site", "RIVER"): {**case.stages, "onset_confirm_samples": confirm}}
    got = first_time(run(ch, [s], rules), "RIVER", "water_level", Level.ORANGE)
    assert got == s.t(case.first_after_gap + confirm)


RIVER = [ChannelInfo(1, "WL", "water_level", "level", None, "RIVER", 600.0)]
STAGES = {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2}


def _river_jump(width: int) -> Series:
    """A river at 12 m; from sample 40, `width` samples 5 m higher (30 m/h in ten minutes:
    faster than onset_max_rate_per_h), then back (width 0: it stays up)."""
    v = np.round(12.0 + np.random.default_rng(2).normal(0, 0.01, 80), 2)
    v[40:40 + width if width else None] += 5.0
    return Series(v, 600.0)


def _river(s: Series, **extra: object) -> list:  # type: ignore[type-arg]
    return run(RIVER, [s], {("site", "RIVER"): {**STAGES, **extra}})


def test_onset_max_rate_per_h_decides_which_jumps_need_the_longer_confirmation() -> None:
    double = _river_jump(2)
    assert peak(_river(double), "RIVER", "water_level") == 0  # too fast: a double spike
    slow_limit = _river(double, onset_max_rate_per_h=40.0)  # 30 m/h is plausible here
    assert peak(slow_limit, "RIVER", "water_level") == Level.ORANGE
    assert peak(_river(double, onset_max_rate_per_h=None), "RIVER", "water_level") == \
        Level.ORANGE  # null: no limit, one sample confirms as before
    real = _river_jump(0)
    assert first_time(_river(real), "RIVER", "water_level", Level.ORANGE) == real.t(43)
    assert first_time(_river(real, onset_max_rate_per_h=40.0), "RIVER", "water_level",
                      Level.ORANGE) == real.t(41)


@pytest.mark.parametrize("fast", [1, 3, 5])
def test_onset_fast_confirm_samples_sets_the_delay_of_a_fast_onset(fast: int) -> None:
    real = _river_jump(0)
    got = first_time(_river(real, onset_fast_confirm_samples=fast), "RIVER", "water_level",
                     Level.ORANGE)
    assert got == real.t(40 + fast)  # late by that many samples, never thrown away
    triple = _river_jump(3)  # three samples up: an onset only if fewer than 3 confirm it
    assert peak(_river(triple, onset_fast_confirm_samples=fast), "RIVER", "water_level") == (
        Level.ORANGE if fast < 3 else 0)


def test_onset_settings_validated_and_water_level_only(db_url: str) -> None:
    from geowarn.cli import main

    for bad in ({"onset_max_rate_per_h": 0}, {"onset_max_rate_per_h": -5},
                {"onset_fast_confirm_samples": 9}, {"onset_fast_confirm_samples": -1},
                {"onset_fast_confirm_samples": 2.5}):
        with pytest.raises(InvalidInput, match="onset_"):
            validate_override("site", "RIVER", bad)
    for params in ({"onset_max_rate_per_h": 20}, {"onset_fast_confirm_samples": 2}):
        with pytest.raises(InvalidInput, match="no effect"):
            validate_override("kind", "water_quality", params)
    assert main(["engine", "rules-set", "kind", "water_level", json.dumps(
        {"onset_max_rate_per_h": 20.0, "onset_fast_confirm_samples": 4})]) == 0
    assert main(["engine", "rules-set", "kind", "water_level", json.dumps(
        {"onset_fast_confirm_samples": 9})]) == 2
    assert main(["engine", "rules-set", "kind", "rain_gauge", json.dumps(
        {"onset_max_rate_per_h": 20.0})]) == 2


def test_implausible_limits_leave_values_out() -> None:
    s = _spiky(size=5.0)
    s.values[40:45] = 25.0  # a rise to yellow, confirmed by the samples that follow
    assert peak(run(THRESHOLD, [s], _thr()), "SITE", "deformation") == Level.YELLOW
    high = run(THRESHOLD, [s], _thr(implausible_max=22.0))
    assert peak(high, "SITE", "deformation") == 0
    assert [c.level for c in high if c.hazard_kind == "data_quality"] == [Level.BLUE, 0]
    s.values[20] = -3.0  # a groundwater level below the logger: not a reading
    assert not [c for c in run(THRESHOLD, [s], _thr()) if c.hazard_kind == "data_quality"]
    low = run(THRESHOLD, [s], _thr(implausible_min=0.0))
    finding = next(c for c in low if c.hazard_kind == "data_quality")
    assert finding.data_time.timestamp() == s.t(20)
    assert finding.evidence["channels"][0]["limit"] == 0.0


def test_implausible_rate_refuses_a_jump_faster_than_the_river_can_rise() -> None:
    case = river_gap_case(3)
    ch = [ChannelInfo(1, "WL", "water_level", "level", None, "RIVER", case.series.step_s)]
    ok = run(ch, [case.series], {("site", "RIVER"): case.stages})
    assert peak(ok, "RIVER", "water_level") == Level.ORANGE
    capped = run(ch, [case.series], {("site", "RIVER"): {**case.stages,
                                                         "implausible_rate_per_h": 0.2}})
    assert peak(capped, "RIVER", "water_level") < Level.ORANGE
    assert any(c.hazard_kind == "data_quality" for c in capped)


def test_the_rain_envelope_settings_move_the_implausibility_limit() -> None:
    s, i = rain_spike_case(0)  # 95.5 mm in ten minutes
    ch = [gauge(1, "RG", "HP1", 600.0)]
    assert peak(run(ch, [s]), "HP1", "rainfall") < Level.RED
    wide = run(ch, [s], {("kind", "rain_gauge"): {"rain_implausible_mm_10min": 120.0,
                                                  "rain_implausible_mm_1h": 300.0}})
    assert peak(wide, "HP1", "rainfall") == Level.RED
    # Hourly totals are judged against the 1-hour record: 150 mm in an hour is plausible
    # (China's record is 201.9 mm) unless a site says its gauge cannot see that.
    hourly = Series(np.r_[np.zeros(5), 150.0, np.zeros(5)], 3600.0)
    ch_h = [gauge(1, "RG", "HP1", 3600.0)]
    assert peak(run(ch_h, [hourly]), "HP1", "rainfall") == Level.RED
    strict = run(ch_h, [hourly], {("kind", "rain_gauge"): {"rain_implausible_mm_1h": 100.0}})
    assert peak(strict, "HP1", "rainfall") == 0


def _first_finding(changes: list) -> float:  # type: ignore[type-arg]
    return next(c.data_time.timestamp() for c in changes
                if c.hazard_kind == "data_quality" and c.level > 0)


def test_stuck_count_and_suspicious_max_level_set_the_hold() -> None:
    rep = repeating_gauge_case(0)  # 4.0 mm every ten minutes for ten hours
    ch = [gauge(1, "RG", "HP1", rep.step_s)]
    first = int(np.flatnonzero(rep.values)[0])
    by_hand = int(rain_levels_by_hand(rep.values, rep.step_s).max())
    default = run(ch, [rep])
    assert peak(default, "HP1", "rainfall") == Level.YELLOW
    assert _first_finding(default) == rep.t(first + 11)  # the 12th: two hours of samples
    off = run(ch, [rep], {("kind", "rain_gauge"): {"stuck_count": 0}})
    assert peak(off, "HP1", "rainfall") == by_hand == Level.RED
    assert not [c for c in off if c.hazard_kind == "data_quality"]
    # stuck_count 40: the run alone implies orange on the 6-hour row (120 mm) at its 30th
    # sample, so it is held from there (alerts/methods/rain_runs.py), not from the 12th
    late = run(ch, [rep], {("kind", "rain_gauge"): {"stuck_count": 40}})
    assert peak(late, "HP1", "rainfall") == Level.YELLOW
    assert _first_finding(late) == rep.t(first + 29)
    blue = run(ch, [rep], {("kind", "rain_gauge"): {"suspicious_max_level": 1}})
    assert peak(blue, "HP1", "rainfall") == Level.BLUE
    # After an hour of genuine rain (30 mm, varying) the same run lifts the totals to
    # orange at its 23rd sample (6 h: 30 + 92 mm), before its own rain would (30th): the
    # default holds it from the 12th (yellow), stuck_count 40 only from the 30th (orange).
    wet = rep.values.copy()
    wet[first - 6:first] = [4.6, 5.2, 4.8, 5.4, 4.4, 5.6]
    rained = Series(wet, rep.step_s)
    assert int(rain_levels_by_hand(wet[:first + 23], rep.step_s).max()) == Level.ORANGE
    assert peak(run(ch, [rained]), "HP1", "rainfall") == Level.YELLOW
    late = run(ch, [rained], {("kind", "rain_gauge"): {"stuck_count": 40}})
    assert peak(late, "HP1", "rainfall") == Level.ORANGE


def test_corroborate_within_m_sets_who_is_a_neighbour() -> None:
    rep = repeating_gauge_case(0)
    nb = Series(np.where(rep.values > 0, rep.values * np.resize([0.8, 1.2, 1.0], rep.n), 0.0),
                rep.step_s)
    ch = [gauge(1, "RG", "HP1", rep.step_s), gauge(2, "RN", "HP2", rep.step_s, km_east=3.0)]
    assert peak(run(ch, [rep, nb]), "HP1", "rainfall") == Level.RED  # 3 km < 5 km default
    far = run(ch, [rep, nb], {("kind", "rain_gauge"): {"corroborate_within_m": 2000.0}})
    assert peak(far, "HP1", "rainfall") == Level.YELLOW


def test_quality_hold_s_sets_how_long_a_finding_keeps_the_alert() -> None:
    s, i = rain_spike_case(0)
    ch = [gauge(1, "RG", "HP1", 600.0)]

    def cleared(changes: list) -> float:  # type: ignore[type-arg]
        return next(c.data_time.timestamp() for c in changes
                    if c.hazard_kind == "data_quality" and c.level == 0)

    assert cleared(run(ch, [s])) == s.t(i) + 3600.0 + 600.0  # first sample past the hour
    short = run(ch, [s], {("kind", "rain_gauge"): {"quality_hold_s": 0.0}})
    assert cleared(short) == s.t(i + 1)


def test_fusion_minimum_levels_set_the_rain_and_deformation_raise() -> None:
    rain = Series(np.r_[np.zeros(6), np.resize([3.5, 4.5], 12), np.zeros(30)], 300.0)
    crack = Series(12.0 + np.r_[np.zeros(10), 2.0 + 0.01 * np.arange(38)], 300.0)
    ch = [ChannelInfo(1, "RG", "rain_gauge", "rain", "HP1", None, 300.0),
          ChannelInfo(2, "CM", "crack_meter", "opening", "HP1", None, 300.0)]
    rules = {("hazard", "HP1"): {"cumulative_mm": [1, 5, 10, 20]}}
    both = run(ch, [rain, crack], rules)
    assert peak(both, "HP1", "rainfall") >= Level.YELLOW
    assert peak(both, "HP1", "deformation") == Level.BLUE
    assert peak(both, "HP1", "combined") == peak(both, "HP1", "rainfall") + 1
    strict = run(ch, [rain, crack], {("hazard", "HP1"): {**rules[("hazard", "HP1")],
                                                         "fusion_deformation_at_least": 2}})
    assert peak(strict, "HP1", "combined") == 0


# --- settings that would do nothing are refused ---------------------------------------------


def test_settings_a_method_never_reads_are_refused() -> None:
    for params in ({"hampel_k": 2.0}, {"hampel_min_deviation": 0.5},
                   {"onset_confirm_samples": 2}, {"warning_m": 15.0}):
        with pytest.raises(InvalidInput, match="no effect"):
            validate_override("kind", "rain_gauge", params)
    validate_override("kind", "rain_gauge", {"stuck_count": 12, "quality_hold_s": 600})
    validate_override("kind", "rain_gauge.rain", {"rain_implausible_mm_10min": 60})
    with pytest.raises(InvalidInput, match="no effect"):
        validate_override("kind", "water_level", {"rain_implausible_mm_10min": 60})
    with pytest.raises(InvalidInput, match="no effect"):
        validate_override("kind", "tilt_meter", {"hampel_k": 4})  # no method judges it
    validate_override("kind", "tilt_meter", {"method": "threshold", "hampel_k": 4})
    with pytest.raises(InvalidInput, match="no effect"):
        validate_override("channel", "7", {"hampel_k": 4}, channel_method="rainfall")
    validate_override("site", "S1", {"hampel_k": 4})  # a site holds many kinds
    with pytest.raises(InvalidInput, match="unknown parameter"):
        validate_override("kind", "rain_gauge", {"stuck_cnt": 4})
    with pytest.raises(InvalidInput, match="stuck_count"):
        validate_override("kind", "rain_gauge", {"stuck_count": 1})


def test_every_rule_parameter_says_which_methods_read_it() -> None:
    assert set(APPLIES_TO) == set(RuleParams.__dataclass_fields__)


def test_kind_defaults_follow_the_resolution_and_the_interval() -> None:
    ch = [gauge(1, "RG", "HP1", 600.0), gauge(2, "RG5", "HP1", 300.0),
          ChannelInfo(3, "WQ", "water_quality", "nh3n", None, "S", 3600.0),
          ChannelInfo(4, "WL", "water_level", "level", None, "S", 300.0)]
    p = resolve(ch, {})
    assert [x.stuck_count for x in p] == [12, 24, 12, 24]  # rain: two hours of repeats
    assert [x.hampel_min_deviation for x in p[2:]] == pytest.approx([0.03, 0.03])
    assert resolve(ch[:1], {("kind", "rain_gauge"): {"stuck_count": 8}})[0].stuck_count == 8


def test_rules_set_refuses_an_ineffective_setting(db_url: str) -> None:
    from geowarn.cli import main

    assert main(["engine", "rules-set", "kind", "rain_gauge",
                 json.dumps({"hampel_k": 2})]) == 2
    assert main(["engine", "rules-set", "kind", "rain_gauge",
                 json.dumps({"stuck_count": 12})]) == 0
