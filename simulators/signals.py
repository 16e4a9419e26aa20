"""Realistic value generators per sensor kind, deterministic under a seed.

Each generator is a small stateful object advanced in event time (`value_at(t)`, t in seconds
since the stream start). They model what the sensors really show: tipping-bucket rain in
showers of 0.2 mm steps, GNSS creep with millimetre noise, crack meters that creep slowly,
river stage with a daily cycle, water quality within its class, air pollutants with rush hours.
Scenarios (storms, accelerating slopes, floods, spills) build on these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from devices.catalogue import SensorKind


@dataclass
class ChannelSignal:
    """Value of one channel as a function of event time."""

    base: float
    noise: float
    trend_per_day: float = 0.0
    daily_amplitude: float = 0.0
    quantum: float = 0.0  # instrument resolution
    low: float = -math.inf
    high: float = math.inf
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def value_at(self, t: float) -> float:
        days = t / 86400.0
        v = (self.base + self.trend_per_day * days
             + self.daily_amplitude * math.sin(2 * math.pi * days)
             + self.rng.normal(0.0, self.noise))
        if self.quantum:
            v = round(round(v / self.quantum) * self.quantum, 6)
        return float(min(self.high, max(self.low, v)))


@dataclass
class RainSignal:
    """Interval rainfall: dry spells and showers, in 0.2 mm tipping-bucket steps."""

    interval_s: float
    wet_probability: float = 0.05
    mean_rate_mm_h: float = 2.0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    total: float = 0.0
    _wet: bool = False

    def value_at(self, t: float) -> float:
        # A two-state Markov chain gives realistic runs of rain and no rain.
        if self._wet:
            self._wet = self.rng.random() > 0.15
        else:
            self._wet = self.rng.random() < self.wet_probability
        if not self._wet:
            return 0.0
        mm = self.rng.gamma(0.8, self.mean_rate_mm_h * self.interval_s / 3600.0 / 0.8)
        mm = round(round(mm / 0.2) * 0.2, 1)
        self.total += mm
        return float(mm)


# Typical resting values per (kind, channel): base, noise, trend/day, daily amplitude, quantum.
_PROFILES: dict[tuple[str, str], tuple[float, float, float, float, float]] = {
    ("gnss", "disp_x"): (0.0, 1.5, 0.05, 0.0, 0.1),
    ("gnss", "disp_y"): (0.0, 1.5, 0.03, 0.0, 0.1),
    ("gnss", "disp_z"): (0.0, 3.0, -0.02, 0.0, 0.1),
    ("crack_meter", "opening"): (12.0, 0.05, 0.02, 0.1, 0.01),
    ("inclinometer", "disp_a"): (3.0, 0.1, 0.02, 0.0, 0.01),
    ("inclinometer", "disp_b"): (1.0, 0.1, 0.0, 0.0, 0.01),
    ("tilt_meter", "tilt_x"): (0.5, 0.005, 0.0, 0.01, 0.001),
    ("tilt_meter", "tilt_y"): (-0.3, 0.005, 0.0, 0.01, 0.001),
    ("tilt_meter", "tilt_z"): (0.1, 0.005, 0.0, 0.0, 0.001),
    ("tilt_meter", "angle"): (0.6, 0.005, 0.0, 0.0, 0.001),
    ("tilt_meter", "azimuth"): (120.0, 0.5, 0.0, 0.0, 0.1),
    ("accelerometer", "acc_x"): (0.0, 2.0, 0.0, 0.0, 0.1),
    ("accelerometer", "acc_y"): (0.0, 2.0, 0.0, 0.0, 0.1),
    ("accelerometer", "acc_z"): (1000.0, 2.0, 0.0, 0.0, 0.1),
    ("water_level", "level"): (12.5, 0.01, 0.0, 0.15, 0.01),
    ("groundwater_level", "level"): (8.0, 0.01, 0.0, 0.02, 0.01),
    ("groundwater_level", "water_temp"): (16.0, 0.05, 0.0, 0.2, 0.01),
    ("pore_pressure", "pressure"): (45.0, 0.3, 0.0, 0.5, 0.1),
    ("soil_moisture", "moisture"): (28.0, 0.2, 0.0, 0.5, 0.1),
    ("air_temperature", "air_temp"): (18.0, 0.2, 0.0, 5.0, 0.1),
    ("water_quality", "ph"): (7.4, 0.03, 0.0, 0.1, 0.01),
    ("water_quality", "do"): (7.0, 0.1, 0.0, 0.8, 0.01),
    ("water_quality", "codmn"): (3.0, 0.1, 0.0, 0.2, 0.01),
    ("water_quality", "cod"): (12.0, 0.4, 0.0, 0.5, 0.1),
    ("water_quality", "nh3n"): (0.3, 0.02, 0.0, 0.03, 0.001),
    ("water_quality", "tp"): (0.08, 0.005, 0.0, 0.005, 0.001),
    ("water_quality", "turbidity"): (8.0, 0.5, 0.0, 1.0, 0.1),
    ("air_quality", "pm25"): (30.0, 3.0, 0.0, 10.0, 1.0),
    ("air_quality", "pm10"): (55.0, 5.0, 0.0, 15.0, 1.0),
    ("air_quality", "so2"): (8.0, 1.0, 0.0, 2.0, 1.0),
    ("air_quality", "no2"): (30.0, 3.0, 0.0, 12.0, 1.0),
    ("air_quality", "o3"): (80.0, 5.0, 0.0, 40.0, 1.0),
    ("air_quality", "co"): (0.6, 0.05, 0.0, 0.2, 0.01),
}


def signals_for(kind: SensorKind, rng: np.random.Generator,
                interval_s: float) -> dict[str, ChannelSignal | RainSignal]:
    """One generator per channel of `kind`, with per-device variation."""
    out: dict[str, ChannelSignal | RainSignal] = {}
    rain: RainSignal | None = None
    for spec in kind.channels:
        if kind.kind == "rain_gauge":
            rain = rain or RainSignal(interval_s=interval_s, rng=rng)
            out[spec.name] = rain
            continue
        base, noise, trend, amp, quantum = _PROFILES.get(
            (kind.kind, spec.name), ((spec.low + spec.high) / 2, 0.0, 0.0, 0.0, 0.0))
        out[spec.name] = ChannelSignal(
            base=base * rng.uniform(0.9, 1.1) if base else base, noise=noise,
            trend_per_day=trend, daily_amplitude=amp, quantum=quantum,
            low=spec.low, high=spec.high, rng=rng)
    return out


def rain_gauge_values(rain: RainSignal, t: float) -> dict[str, float]:
    """A rain gauge reports the interval amount and its running total together."""
    interval = rain.value_at(t)
    return {"rain": interval, "rain_total": round(rain.total, 1)}
