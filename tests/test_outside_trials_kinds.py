"""A second outside trial of rainfall, water level and pollution (issue 7) on the tester's own
generators (tests/outside_kinds.py: tipping buckets with their remainder, multi-peak storms,
clock skew, flood hydrographs, plumes, diurnal oxygen), fed to the pure tick in arrival order
and compared sample by sample with a hand computation from the thresholds (raise at once,
clear lines and the hour's dwell): the engine's level at every sample must be the hand's, or
what the hand gave one sample earlier. Each test is a finding of that trial, failing before
its fix, over 20 seeds:

- an hourly station sending 5-minute reports in a storm (or any gauge reporting faster than
  registered): its rain ring was sized from the registered interval, the 24 h total read as
  missing once the ring was full, and red fell to blue mid-storm (0 of 20 right); and three
  equal 5-minute increments made it a "repeating" gauge held at orange;
- a gauge registered at 10 minutes that reports hourly: its honest hourly totals were
  judged against the 10-minute plausibility envelope and lost;
- a report delivered twice in one batch entered the rain sums twice;
- a water-level channel whose last six readings are level to the centimetre: the fitted slope
  is rounding noise (1e-15 m/s), the crossing time centuries ahead, and the tick raised
  OSError building its evidence;
- a plume diluting, or oxygen recovering after a night's crash: its changing samples were
  pending outliers, counted as clean water, and the level cleared up to two samples before
  the persistence rule on the raw values clears.
Two more check that classes of realistic series (flood waves, long soaking rain) are judged
right. An out-of-order backlog (live reports resume before the buffered ones arrive) was
skipped behind the watermark, so its rain never counted: now judged late, at the step that
receives it.
"""

from __future__ import annotations

import numpy as np
import pytest

from alerts.engine.rules import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H, ChannelInfo, resolve
from alerts.engine.tick import EngineState, Samples, build_setup, tick
from alerts.methods.levels import classify
from tests.outside_kinds import (
    HOUR,
    T0,
    Trace,
    diurnal_do,
    engine_levels,
    hydrograph,
    hysteresis,
    mismatches,
    persistence_hand,
    plume,
    rain_hand,
    run,
    soaking,
    stage_hand,
    storm,
)

SEEDS = range(20)


def gauge(i: int, registered_s: float) -> ChannelInfo:
    return ChannelInfo(i + 1, f"RG{i}", "rain_gauge", "rain", f"HP{i}", None, registered_s)


def rain_trial(step: float, registered_s: float, hours: float, bucket: float = 0.2) -> int:
    """Storms reported every `step` by gauges registered at `registered_s`: how many seeds
    the engine judges as the hand does at every sample."""
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(1000 + s)
        t, v = storm(rng, step, hours, bucket, rng.uniform(30, 90), int(rng.integers(2, 5)),
                     skew_s=rng.uniform(-240, 240))
        traces.append(Trace.live(t, v))
    ch = run([gauge(s, registered_s) for s in SEEDS], traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, v = tr.clean()
        hand = rain_hand(t, v)
        ok += not mismatches(t, hand, engine_levels(ch, f"HP{s}", "rainfall", t))
    return ok


@pytest.mark.parametrize(("step", "registered_s", "hours"), [(60.0, 600.0, 12.0),
                                                             (300.0, 3600.0, 36.0)])
def test_a_gauge_reporting_faster_than_registered_keeps_its_rain_windows(
        step: float, registered_s: float, hours: float) -> None:
    """The ring of a 10-minute registration holds 7.5 h of 1-minute reports; an hourly
    station's 5-minute reports were also "repeating" after three equal increments (15 min,
    where two hours are meant: alerts/engine/rain_interval.py), holding red at orange."""
    assert rain_trial(step, registered_s, hours) == len(SEEDS)


def test_an_hourly_gauge_registered_at_ten_minutes_keeps_its_heavy_hours() -> None:
    """Its hourly totals were judged against the 10-minute envelope (50 mm): a 60 mm hour
    was implausible and left out, and red came late or never (9 of 20 right)."""
    assert rain_trial(3600.0, 600.0, 36.0) == len(SEEDS)


def test_a_level_stage_gives_no_crossing_and_the_tick_survives() -> None:
    """Station A holds blue, level to the centimetre over its last six readings (the slope is
    6e-19 m/s); station B on the same river reaches yellow, so the river's change carries
    A's evidence, whose crossing times were beyond any datetime."""
    a = [3.6] * 5 + [3.61, 3.59, 3.61, 3.6, 3.61, 3.6]
    # B jumps 1.05 m in a minute (63 m/h, beyond onset_max_rate_per_h): yellow once three
    # following readings confirm it, at the same last reading as A's level six.
    b = [3.0] * 7 + [4.05, 4.06, 4.05, 4.06]
    t = T0 + 60.0 * np.arange(len(a))
    chans = [ChannelInfo(1, "WLA", "water_level", "level", None, "RIV", 60.0),
             ChannelInfo(2, "WLB", "water_level", "level", None, "RIV", 60.0)]
    ch = run(chans, [Trace.live(t, np.array(a)), Trace.live(t, np.array(b))],
             {("site", "RIV"): {"warning_m": 4.0, "guaranteed_m": 5.0,
                                "historical_max_m": 6.5}})
    wl = [c for c in ch if c.hazard_kind == "water_level"]
    assert [int(c.level) for c in wl] == [1, 2]  # A's blue, then B's yellow (confirmed)
    assert [x for x in wl[1].evidence["channels"][0]["time_to_crossing"] if x] == []


# GB 3838 / HJ 633 as the engine's documented mapping (alerts/engine/rules.py), by hand:
# (blue, yellow, orange, red) as predicates on the value.
HAND_ITEM = {
    "nh3n": (lambda x: x > 1.5, lambda x: x > 2.0, lambda x: x >= 4.0, lambda x: x >= 8.0),
    "ph": (lambda x: x != x, lambda x: (x < 6) | (x > 9), lambda x: (x < 4) | (x > 11),
           lambda x: x != x),
    "pm25": (lambda x: x > 150, lambda x: x > 250, lambda x: x > 350, lambda x: x >= 500),
}
PEAKS = {"nh3n": (0.3, 1.6, 10.0, 2), "ph": (7.4, 9.1, 12.0, 2), "pm25": (60.0, 160.0, 600.0, 0)}


def item_levels(spec: str, v: np.ndarray) -> np.ndarray:
    lv = np.zeros(v.size, int)
    for k, hit in enumerate(HAND_ITEM[spec]):
        lv[hit(v)] = k + 1
    return lv


@pytest.mark.parametrize("spec", ["nh3n", "ph", "pm25"])
def test_a_diluting_plume_clears_when_the_hand_clears(spec: str) -> None:
    """Plumes arriving over 1–5 samples, holding, then diluting: the falling samples were
    pending outliers of the spike filter, counted as clean water, and the level cleared up
    to two samples early (nh3n 19/20, pH 18/20, PM2.5 19/20 right)."""
    step = 300.0
    base, lo, hi, digits = PEAKS[spec]
    kind = "air_quality" if spec == "pm25" else "water_quality"
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(2000 + s)
        t, v = plume(rng, step, base, rng.uniform(lo, hi), int(rng.integers(1, 6)),
                     int(rng.integers(2, 10)), rng.uniform(0.2, 1.0),
                     0.003 if spec == "ph" else 0.02)
        traces.append(Trace.live(t, np.round(v, digits)))
    ch = run([ChannelInfo(s + 1, f"Q{s}", kind, spec, None, f"RIV{s}", step) for s in SEEDS],
             traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, v = tr.clean()
        hand = persistence_hand(t, item_levels(spec, v))
        ok += not mismatches(t, hand, engine_levels(ch, f"RIV{s}", kind, t))
    assert ok == len(SEEDS)


def test_a_report_sent_twice_in_one_batch_counts_once() -> None:
    """A gateway's retry delivers 10 % of the reports twice in the same batch (at-least-once
    MQTT): each copy entered the rain windows, and levels came early or out of nothing
    (14 of 20 right at 5 minutes)."""
    step = 300.0
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(1000 + s)
        t, v = storm(rng, step, 36.0, 0.2, rng.uniform(30, 90), int(rng.integers(2, 5)),
                     skew_s=rng.uniform(-240, 240))
        twice = rng.uniform(0, 1, t.size) < 0.1
        traces.append(Trace(np.r_[t, t[twice]], np.r_[v, v[twice]], np.r_[t, t[twice]]))
    ch = run([gauge(s, step) for s in SEEDS], traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, v = tr.clean()
        ok += not mismatches(t, rain_hand(t, v), engine_levels(ch, f"HP{s}", "rainfall", t))
    assert ok == len(SEEDS)


def test_an_oxygen_crash_on_its_daily_cycle_is_judged_as_the_hand_does() -> None:
    """Dissolved oxygen (low is worse) cycling by day and crashing one night (an algal
    die-off) to 0.2–2.8 mg/L, every 15 minutes: the recovering samples were pending outliers
    counted as no exceedance, and the level cleared early (17 of 20 right)."""
    step = 900.0
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(2000 + s)
        t, v = diurnal_do(rng, step, 3.0, rng.uniform(5, 7), rng.uniform(1, 3),
                          rng.uniform(26, 40), rng.uniform(0.2, 2.8))
        traces.append(Trace.live(t, v))
    ch = run([ChannelInfo(s + 1, f"Q{s}", "water_quality", "do", None, f"RIV{s}", step)
              for s in SEEDS], traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, v = tr.clean()
        lv = np.select([v < 0.5, v < 1.0, v < 2.0, v < 3.0], [4, 3, 2, 1], 0)
        ok += not mismatches(t, persistence_hand(t, lv),
                             engine_levels(ch, f"RIV{s}", "water_quality", t))
    assert ok == len(SEEDS)


@pytest.mark.parametrize("step", [900.0, 3600.0])
def test_flood_waves_are_judged_as_the_hand_does(step: float) -> None:
    """Not a finding: flood hydrographs (rise over 1–12 h to 3.4–7.2 m, recession) with 3–20
    mm of gauge noise, judged against warning/guaranteed/historical 4.0/5.0/6.5 m."""
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(2000 + s)
        t, h = hydrograph(rng, step, 2.5, rng.uniform(3.4, 7.2), rng.uniform(1, 12),
                          rng.uniform(3, 20), 40.0, rng.uniform(0.003, 0.02))
        traces.append(Trace.live(t, h))
    stages = (4.0, 5.0, 6.5)
    ch = run([ChannelInfo(s + 1, f"WL{s}", "water_level", "level", None, f"RIV{s}", step)
              for s in SEEDS], traces,
             {("site", f"RIV{s}"): dict(zip(("warning_m", "guaranteed_m", "historical_max_m"),
                                            stages, strict=True)) for s in SEEDS})
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, h = tr.clean()
        ok += not mismatches(t, stage_hand(t, h, stages),
                             engine_levels(ch, f"RIV{s}", "water_level", t))
    assert ok == len(SEEDS)


def test_long_soaking_rain_is_judged_as_the_hand_does() -> None:
    """Not a finding: three days of steady rain at 60–200 mm a day (Sitka's landslide days),
    hourly reports, through a 0.2 mm bucket."""
    traces = []
    for s in SEEDS:
        rng = np.random.default_rng(1000 + s)
        t, v = soaking(rng, 3600.0, 3.0, rng.uniform(60, 200), 0.2)
        traces.append(Trace.live(t, v))
    ch = run([gauge(s, 3600.0) for s in SEEDS], traces)
    ok = 0
    for s, tr in zip(SEEDS, traces, strict=True):
        t, v = tr.clean()
        ok += not mismatches(t, rain_hand(t, v), engine_levels(ch, f"HP{s}", "rainfall", t))
    assert ok == len(SEEDS)


# --- an out-of-order backlog: live reports resume before the buffered ones arrive ---------


def _known_levels(t: np.ndarray, v: np.ndarray, judged: list[tuple[float, np.ndarray]]
                  ) -> np.ndarray:
    """By hand, the level at the end of each step: the windows (w − t_new, t_new] at the
    newest data time judged, over the samples known at that step, then raise at once /
    lower after the dwell (judged at those data times)."""
    raise_lv, hold_lv, when = [], [], []
    for newest, known in judged:
        r = h = 0
        for w, row in zip(RAIN_WINDOWS_H, DEFAULT_RAIN_TABLE, strict=True):
            inwin = known & (t > newest - w * HOUR) & (t <= newest)
            tot = round(float(v[inwin].sum()), 6)
            thr = np.asarray(row, float)
            r = max(r, int(classify(np.array([tot]), thr)[0]))
            h = max(h, int(classify(np.array([tot]), thr - 0.1 * np.abs(thr))[0]))
        raise_lv.append(r)
        hold_lv.append(max(r, h))
        when.append(newest)
    return hysteresis(np.array(when), np.array(raise_lv), np.array(hold_lv))


def backlog_trial(step: float, seeds: range = SEEDS) -> int:
    """A storm per seed at `step`; a 1–3 h outage inside it; live reports resume first and
    the logger sends its buffer (the outage's samples, and the first live one again) one or
    two steps later. How many seeds the engine's level after every step is the hand's."""
    ok = 0
    for s in seeds:
        rng = np.random.default_rng(2000 + s)
        t, v = storm(rng, step, 36.0, 0.2, rng.uniform(30, 90), int(rng.integers(2, 5)),
                     skew_s=rng.uniform(-240, 240))
        start = T0 + rng.uniform(4, 24) * HOUR
        out = (t > start) & (t <= start + rng.uniform(1, 3) * HOUR)
        resume = int(np.flatnonzero(out)[-1]) + 1
        arrive = t.copy()
        arrive[out] = t[resume] + step * rng.integers(1, 3) + 30.0  # after live resumed
        tt, vv, aa = np.r_[t, t[resume]], np.r_[v, v[resume]], np.r_[arrive, arrive[out][0]]
        setup = build_setup([gauge(0, step)], resolve([gauge(0, step)], {}))
        state = EngineState.initial(setup)
        engine, judged = [], []
        for clock in np.unique(aa):
            now = aa == clock
            order = np.argsort(tt[now], kind="stable")
            state, _ = tick(setup, state, Samples(
                np.zeros(int(now.sum()), np.int64), tt[now][order], vv[now][order],
                np.zeros(int(now.sum()), np.int8)), float(clock))
            engine.append(int(state.level[0]))
            judged.append((float(state.watermark[0]), np.isin(t, tt[aa <= clock])))
        hand = _known_levels(t, v, judged)
        ok += not mismatches(np.unique(aa), hand, np.array(engine))
    return ok


@pytest.mark.parametrize("step", [300.0, 600.0])
def test_a_backlog_arriving_after_live_reports_counts_its_rain(step: float) -> None:
    """The buffered samples lie behind the watermark when they come: the tick skipped them
    and their rain never counted (14 and 13 of 20 right at 5 and 10 minutes). Now merged
    into the ring in time order and judged again at the step that receives them
    (alerts/engine/late.py)."""
    assert backlog_trial(step) == len(SEEDS)


def test_a_late_sample_older_than_the_longest_window_is_ignored() -> None:
    """A sample 80 h behind the newest (past the 72 h window) changes no sum and raises
    nothing; one inside the windows counts once however often it comes."""
    setup = build_setup([gauge(0, 600.0)], resolve([gauge(0, 600.0)], {}))
    state = EngineState.initial(setup)
    t = T0 + 600.0 * np.arange(1, 601)  # 100 h of 1 mm per 10 min: 72 h = 432 mm
    state, _ = tick(setup, state, Samples(np.zeros(t.size, np.int64), t, np.full(t.size, 0.1),
                                          np.zeros(t.size, np.int8)), float(t[-1]))
    ring = state.rings["rainfall"]
    assert state.rain is not None
    before = state.rain.totals_mm(ring, np.array([0]))[0].copy()
    old = float(t[-1] - 80 * HOUR + 300.0)  # between two samples, beyond 72 h
    state, res = tick(setup, state, Samples(np.zeros(1, np.int64), np.array([old]),
                                            np.array([40.0]), np.zeros(1, np.int8)),
                      float(t[-1]) + 60.0)
    assert res.changes == [] and np.array_equal(state.rain.totals_mm(ring, np.array([0]))[0],
                                                before)
    mid = float(t[-1] - 2 * HOUR + 300.0)  # inside 3 h and longer windows
    for _ in range(2):  # sent twice: counts once
        state, _ = tick(setup, state, Samples(np.zeros(2, np.int64), np.array([mid, mid]),
                                              np.array([5.0, 5.0]), np.zeros(2, np.int8)),
                        float(t[-1]) + 120.0)
    after = state.rain.totals_mm(ring, np.array([0]))[0]
    assert np.allclose(after - before, [0.0, 5.0, 5.0, 5.0, 5.0, 5.0])
