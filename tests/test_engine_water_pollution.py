"""Water-level and pollution rules with hand-computed numbers: station thresholds and
crossing times, GB 3838-2002 classes (DO as a minimum), HJ 633-2012 IAQI interpolation,
persistence and jumps."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.methods import water_level as wl
from alerts.methods.levels import Level
from alerts.methods.pollution import (
    AQI_BANDS,
    INFERIOR_V,
    aqi,
    aqi_band,
    gb3838_class,
    iaqi,
    overall_class,
    persistent,
    sudden_jump,
)
from geowarn.errors import InvalidInput

H = 3600.0


def test_stage_levels_and_return_periods() -> None:
    th = wl.StationThresholds.build(np.full(6, 10.0), np.full(6, 12.0), np.full(6, 13.0), 0.5)
    h = np.array([9.4, 9.5, 10.0, 12.5, 13.0, np.nan])
    assert wl.stage_levels(h, th).tolist() == [0, 1, 2, 3, 4, 0]
    rp = np.array([20.0, 0, 0, 0, 0, 50.0])  # a 20-year flow at 9.4 m is orange
    assert wl.stage_levels(h, th, rp).tolist() == [3, 1, 2, 3, 4, 4]
    with pytest.raises(InvalidInput, match="non-decreasing"):
        wl.stage_levels(h, wl.StationThresholds.build(np.full(6, 10.0), np.full(6, 9.0),
                                                      np.full(6, 13.0)))


def test_rate_of_rise_and_time_to_crossing() -> None:
    t = np.arange(8) * H
    h = np.vstack([
        9.0 + 0.1 * np.arange(8),  # rising 0.1 m/h, at 9.7 m now
        np.r_[10.5 - 0.05 * np.arange(7), np.nan],  # falling; the last reading is missing
    ])
    th = wl.StationThresholds.build(np.array([10.0, 10.0]), np.array([12.0, 12.0]),
                                    np.array([13.0, 13.0]))
    res = wl.evaluate(t, h, now=7 * H, th=th, n_points=6,
                      rate_thresholds=np.array([0.05, 0.08, 0.2, 0.5]) / H)
    assert res.rate[0] * H == pytest.approx(0.1)
    assert res.rate[1] * H == pytest.approx(-0.05)
    assert res.h_now.tolist() == pytest.approx([9.7, 10.2])
    # 0.3 m to the warning level at 0.1 m/h: 3 h from now; 2.3 m to the guaranteed level
    assert res.t_cross[0] / H == pytest.approx([10.0, 30.0, 40.0])
    assert np.isnan(res.t_cross[1]).all()  # falling: no crossing forecast
    assert res.level.tolist() == [Level.BLUE, Level.YELLOW]
    assert res.rate_level.tolist() == [Level.YELLOW, Level.NONE]
    with pytest.raises(InvalidInput, match="at least 3"):
        wl.rise_rate(t, h, 2)


def test_gb3838_classes_with_do_as_minimum() -> None:
    do = gb3838_class("dissolved_oxygen", np.array([8.0, 7.5, 6.5, 5.0, 4.0, 2.5, 1.9, np.nan]))
    assert do.tolist() == [1, 1, 2, 3, 4, 5, INFERIOR_V, 0]
    cod = gb3838_class("cod", np.array([10.0, 15.0, 16.0, 30.0, 41.0]))
    assert cod.tolist() == [1, 1, 3, 4, INFERIOR_V]  # I and II share 15: the best class wins
    nh3 = gb3838_class("ammonia_nitrogen", np.array([0.15, 0.16, 1.2, 2.0, 2.01]))
    assert nh3.tolist() == [1, 2, 4, 5, INFERIOR_V]
    assert gb3838_class("ph", np.array([5.9, 6.0, 9.0, 9.1])).tolist() == [6, 1, 1, 6]
    assert gb3838_class("total_phosphorus_lake", np.array([0.03])).tolist() == [3]
    assert gb3838_class("total_phosphorus", np.array([0.03])).tolist() == [2]
    worst = overall_class(np.stack([do[:3], cod[:3]]))
    assert worst.tolist() == [1, 1, 3]
    with pytest.raises(InvalidInput, match="unknown GB 3838 item"):
        gb3838_class("arsenic", np.array([1.0]))


def test_iaqi_breakpoint_interpolation() -> None:
    # PM2.5 24 h = 100 µg/m³ lies between 75 (IAQI 100) and 115 (150):
    # 100 + (150 − 100)/(115 − 75)·(100 − 75) = 100 + 1.25·25 = 131.25.
    # (The brief's "125" is the PM10 answer: 200 µg/m³ → 100 + 50·50/100 = 125.)
    assert float(iaqi("pm25_24h", np.array(100.0))) == pytest.approx(131.25)
    assert float(iaqi("pm10_24h", np.array(200.0))) == pytest.approx(125.0)
    assert float(iaqi("co_24h", np.array(3.0))) == pytest.approx(75.0)
    assert float(iaqi("o3_1h", np.array(160.0))) == pytest.approx(50.0)
    assert iaqi("pm25_24h", np.array([0.0, 35.0, 500.0, 650.0])).tolist() == [0, 50, 500, 500]
    assert np.isnan(iaqi("so2_1h", np.array(900.0)))  # use SO2 24 h instead
    assert np.isnan(iaqi("o3_8h", np.array(801.0)))  # use O3 1 h instead
    assert float(iaqi("o3_8h", np.array(800.0))) == pytest.approx(300.0)
    with pytest.raises(InvalidInput, match=">= 0"):
        iaqi("no2_1h", np.array(-1.0))
    value, primary = aqi({"pm25_24h": iaqi("pm25_24h", np.array([100.0, 10.0])),
                          "pm10_24h": iaqi("pm10_24h", np.array([200.0, 20.0]))})
    assert value.tolist() == pytest.approx([131.25, 20.0])
    assert primary.tolist() == [0, -1]  # no primary pollutant when AQI ≤ 50
    bands = aqi_band(np.array([0.0, 50.0, 50.5, 131.25, 200.0, 250.0, 300.1, np.nan]))
    assert bands.tolist() == [0, 0, 1, 2, 3, 4, 5, -1]
    assert AQI_BANDS[4].rgb == (153, 0, 76) and AQI_BANDS[5].rgb == (126, 0, 35)


def test_persistence_and_jumps() -> None:
    e = np.array([[1, 0, 1, 1, 0, 1]], dtype=bool)
    assert persistent(e, 3, 4).tolist() == [[False, False, False, True, False, True]]
    with pytest.raises(InvalidInput):
        persistent(e, 5, 4)
    v = np.array([[10.0, 10, 10, 10, 25, 10, 12]])
    assert sudden_jump(v, 3, 10.0).tolist() == [[False] * 4 + [True, False, False]]
    assert not sudden_jump(v, 3, 10.0, min_ratio=3.0).any()  # 25 < 3 × 10
