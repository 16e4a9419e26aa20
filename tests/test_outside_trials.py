"""An outside trial of the non-displacement warnings (issue 7), on series from the tester's own
generators (tests/outside_series.py, not simulators/ nor the other tests' cases), through the
engine's pure tick with the thresholds in force, against hand computations. Each test is one
finding of that trial, or the check that a class of realistic series is judged right. Seeds
run side by side as separate stations 10 km apart (no neighbour corroborates another):

- typhoon rain at 5, 10 and 60 minutes with lost samples: every level's first time equals
  the hand computation from the county table (within one interval);
- a single implausible increment (95.5 mm in 10 min, 60 mm in 5 min) raises nothing,
  also right after a 2-hour data gap (found: red, no finding; the envelope took the gap's
  length as the increment's duration);
- an hourly gauge repeating 25 mm is held at yellow (found: orange at the 5th hour, before the
  6-sample minimum run made it suspicious);
- a river's readings after a 2-hour gap, above the guaranteed level: orange within one
  interval;
- a pollutant front rising fast (×1.4 to ×5 per sample): every level within one interval of
  the 2-of-3 persistence rule on the raw values (found: ×5 fronts two samples late).
"""

from __future__ import annotations

import numpy as np
import pytest

from alerts.engine.rules import ChannelInfo
from alerts.methods.levels import Level
from tests.outside_series import (
    T0,
    Trace,
    ammonia_arrival,
    ammonia_by_hand,
    first_at,
    first_change,
    live,
    quality_events,
    rain_gauge,
    rain_levels_by_hand,
    river_after_gap,
    river_channel,
    river_rules,
    top,
    two_of_three,
    typhoon_rain,
)

SEEDS = range(20)
APART_KM = 10.0


def gauges(step: float) -> list[ChannelInfo]:
    return [rain_gauge(s + 1, f"RG{s}", f"HP{s}", step, APART_KM * s) for s in SEEDS]


def quality_station(step: float, s: int) -> ChannelInfo:
    return ChannelInfo(s + 1, f"WQ{s}", "water_quality", "nh3n", None, f"RIV{s}", step)


@pytest.mark.parametrize("step", [300.0, 600.0, 3600.0])
def test_typhoon_rain_levels_come_at_the_hand_computed_times(step: float) -> None:
    traces = [typhoon_rain(np.random.default_rng(s), step, hours=24.0) for s in SEEDS]
    ch = live(gauges(step), traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        hand = rain_levels_by_hand(tr)
        good = top(ch, f"HP{s}", "rainfall") == hand.max()
        for lv in range(1, 5):
            due, got = first_at(tr, hand, lv), first_change(ch, f"HP{s}", "rainfall", lv)
            good &= (due is None) == (got is None)
            if due is not None and got is not None:
                good &= due <= got <= due + step
        ok += bool(good)
    assert ok == len(SEEDS)


@pytest.mark.parametrize(("step", "spike", "gap_h"), [
    (600.0, 95.5, 0.0), (300.0, 60.0, 0.0), (600.0, 95.5, 2.0), (300.0, 60.0, 2.0)])
def test_an_implausible_increment_raises_nothing_even_after_a_gap(step: float, spike: float,
                                                                  gap_h: float) -> None:
    spiked, clean, at = [], [], []
    for s in SEEDS:
        rng = np.random.default_rng(100 + s)
        tr = typhoon_rain(rng, step, hours=12.0, peak_mm_h=rng.uniform(3.0, 15.0))
        i = int(rng.integers(30, tr.v.size - 10))
        v = tr.v.copy()
        v[i - int(gap_h * 3600 / step): i] = np.nan  # the gap just before the spike
        clean.append(Trace(tr.t, np.where(np.arange(v.size) == i, 0.0, v)))
        v[i] = spike
        spiked.append(Trace(tr.t, v))
        at.append(tr.t[i])
        assert rain_levels_by_hand(spiked[-1]).max() >= Level.ORANGE  # the spike alone warns
    ch = live(gauges(step), spiked)
    ok = 0
    for s in SEEDS:
        dq = quality_events(ch, f"RG{s}")
        ok += (top(ch, f"HP{s}", "rainfall") == rain_levels_by_hand(clean[s]).max()
               and bool(dq) and dq[0].evidence["channels"][0]["finding"] == "implausible"
               and dq[0].data_time.timestamp() == at[s])
    assert ok == len(SEEDS)


@pytest.mark.parametrize(("step", "value"), [(3600.0, 25.0), (3600.0, 40.0), (1800.0, 15.0),
                                             (600.0, 4.0), (300.0, 2.0)])
def test_a_repeating_gauge_is_held_at_yellow_at_any_sampling(step: float, value: float
                                                             ) -> None:
    n = int(10 * 3600 / step)
    tr = Trace(T0 + step * np.arange(1, n + 1), np.full(n, value))
    assert rain_levels_by_hand(tr).max() >= Level.ORANGE
    ch = live([rain_gauge(1, "RG", "HP", step)], [tr])
    assert top(ch, "HP", "rainfall") == Level.YELLOW
    dq = quality_events(ch, "RG")
    assert dq and dq[0].evidence["channels"][0]["finding"] == "repeating"


@pytest.mark.parametrize("step", [300.0, 900.0, 3600.0])
def test_a_river_after_a_gap_is_orange_within_one_interval(step: float) -> None:
    cases = [river_after_gap(np.random.default_rng(s), step) for s in SEEDS]
    ch = live([river_channel(step, s) for s in SEEDS], [c[0] for c in cases],
              river_rules(len(SEEDS)))
    ok = 0
    for s, (tr, i0) in zip(SEEDS, cases, strict=True):
        got = first_change(ch, f"RIV{s}", "water_level", Level.ORANGE)
        ok += got is not None and tr.t[i0] <= got <= tr.t[i0] + step and top(
            ch, f"RIV{s}", "water_level") == Level.ORANGE
    assert ok == len(SEEDS)


@pytest.mark.parametrize("growth", [1.43, 2.0, 3.0, 5.0])
def test_a_pollutant_front_gives_each_level_within_one_interval(growth: float) -> None:
    step = 3600.0
    traces = [ammonia_arrival(np.random.default_rng(s), step, growth) for s in SEEDS]
    ch = live([quality_station(step, s) for s in SEEDS], traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        hand = two_of_three(ammonia_by_hand(tr.v))
        good = True
        for lv in range(1, 5):
            i = np.flatnonzero(hand >= lv)
            got = first_change(ch, f"RIV{s}", "water_quality", lv)
            if i.size == 0:
                good &= got is None
            else:
                good &= got is not None and tr.t[i[0]] <= got <= tr.t[i[0]] + step
        ok += good
    assert ok == len(SEEDS)


@pytest.mark.parametrize("step", [300.0, 900.0, 3600.0])
def test_single_spikes_on_a_river_and_a_pollutant_raise_nothing(step: float) -> None:
    rivers, nh3 = [], []
    for s in SEEDS:
        rng = np.random.default_rng(s)
        h = np.round(3.0 + rng.normal(0, 0.01, 80), 2)
        h[int(rng.integers(30, 70))] = rng.uniform(5.2, 7.0)  # above guaranteed / max
        rivers.append(Trace(T0 + step * np.arange(80), h))
        q = np.round(np.abs(0.3 + rng.normal(0, 0.03, 80)), 2)
        q[int(rng.integers(30, 70))] = rng.uniform(3.0, 12.0)
        nh3.append(Trace(T0 + step * np.arange(80), q))
    ch = live([river_channel(step, s) for s in SEEDS], rivers, river_rules(len(SEEDS)))
    assert all(top(ch, f"RIV{s}", "water_level") == 0 for s in SEEDS)
    ch = live([quality_station(step, s) for s in SEEDS], nh3)
    assert all(top(ch, f"RIV{s}", "water_quality") == 0 for s in SEEDS)


def test_a_gauge_stuck_at_zero_beside_a_warning_gauge_is_a_quality_finding() -> None:
    """Found: a gauge reporting 0 while one 2 km away measured a typhoon raised nothing at all.
    Now a finding for the maintainer (no level either way); a gauge 8 km away (beyond
    corroborate_within_m, 5 km) is not its neighbour."""
    step = 600.0
    chans, traces = [], []
    for s in SEEDS:
        tr = typhoon_rain(np.random.default_rng(s), step, hours=24.0)
        zero = Trace(tr.t, np.where(np.isfinite(tr.v), 0.0, np.nan))
        far = 2.0 if s % 2 == 0 else 8.0
        chans += [rain_gauge(2 * s + 1, f"RA{s}", f"HA{s}", step, 30.0 * s),
                  rain_gauge(2 * s + 2, f"RB{s}", f"HB{s}", step, 30.0 * s + far)]
        traces += [tr, zero]
    ch = live(chans, traces)
    for s in SEEDS:
        assert top(ch, f"HA{s}", "rainfall") >= Level.BLUE  # the neighbour warns
        assert top(ch, f"HB{s}", "rainfall") == 0
        dq = quality_events(ch, f"RB{s}")
        if s % 2 == 0:
            assert dq and dq[0].evidence["channels"][0]["finding"] == \
                "dry while a neighbour warns"
            warned = first_change(ch, f"HA{s}", "rainfall", 1)
            assert warned is not None and dq[0].data_time.timestamp() >= warned
        else:
            assert not dq
