"""Scripted hazard scenarios for the warning engine: storms, accelerating slopes, floods,
spills, and the faults a quiet month brings, as SimMessage streams like simulators/streams.py.

A scenario is a set of `Track`s: one device each, its channels' values on a regular time grid
(NaN = the device sent nothing at that time). The generators are pure and deterministic under
a seed, and they return the truth a test checks the engine against (the storm's rain series,
the slope's failure time, the hydrograph), so a test can hand-compute when a warning is due
instead of trusting the engine to tell it.

Shapes and sources:
- Typhoon rainstorm: a Gaussian-shaped hyetograph on a light background, in 0.2 mm tipping-
  bucket steps (interval rain plus the running total, as a real gauge reports).
- Accelerating landslide: steady creep at v0, then from `onset` Fukuzono's α = 2 tertiary
  creep, whose inverse velocity falls linearly to zero at the failure time t_f:
  v(t) = v0·(t_f − t_a)/(t_f − t), so d(t) = d_a + v0·(t_f − t_a)·ln((t_f − t_a)/(t_f − t)).
- Flood: a gamma-shaped hydrograph (stage rises to a peak, then recedes more slowly).
- Pollution spill: a plume arriving over a few hours, holding, and washing out.
- Quiet month (`quiet_track`): the kind's ordinary signal (simulators/signals.py) plus
  drift, isolated spikes and dropouts, for false-alarm tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from devices.catalogue import Catalogue, load_catalogue
from geowarn.errors import InvalidInput
from simulators.signals import ChannelSignal, RainSignal, signals_for
from simulators.streams import SimDevice, SimMessage, encode_national, encode_native, topic_for


@dataclass(frozen=True)
class Track:
    """One scripted device: `values[channel][i]` is sent at start + i·step_s (NaN: not sent;
    a sample whose channels are all NaN sends no message)."""

    device_id: str
    kind: str
    start: datetime
    step_s: float
    values: Mapping[str, np.ndarray]
    profile: str = "native"

    def __post_init__(self) -> None:
        if not self.step_s > 0 or self.start.tzinfo is None:
            raise InvalidInput(f"track {self.device_id}: need step_s > 0 and an aware start")
        lengths = {len(v) for v in self.values.values()}
        if len(lengths) != 1:
            raise InvalidInput(f"track {self.device_id}: channels differ in length {lengths}")

    @property
    def n(self) -> int:
        return len(next(iter(self.values.values())))

    def time(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.step_s * i)

    def seconds(self) -> np.ndarray:
        """Sample times in epoch seconds."""
        return self.start.timestamp() + self.step_s * np.arange(self.n)


def messages(tracks: Sequence[Track], catalogue: Catalogue | None = None
             ) -> Iterator[SimMessage]:
    """Every track's samples as messages, interleaved in event-time order (ties by track)."""
    catalogue = catalogue or load_catalogue()
    sims = []
    for tr in tracks:
        kind = catalogue.kind(tr.kind)
        if tr.profile == "national" and not kind.national_code:
            raise InvalidInput(f"{tr.kind} has no national profile")
        unknown = set(tr.values) - {c.name for c in kind.channels}
        if unknown:
            raise InvalidInput(f"track {tr.device_id}: {tr.kind} has no channel(s) "
                               f"{sorted(unknown)}")
        sims.append(SimDevice(tr.device_id, kind,
                              "national" if tr.profile == "national" else "native", {}))
    events = sorted((tr.start.timestamp() + tr.step_s * i, j, i)
                    for j, tr in enumerate(tracks) for i in range(tr.n))
    for _, j, i in events:
        tr, dev = tracks[j], sims[j]
        ts = tr.time(i)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        items = [(ts, ch, float(v[i])) for ch, v in tr.values.items() if math.isfinite(v[i])]
        if not items:
            continue
        payload = (encode_national(dev, items) if dev.profile == "national"
                   else encode_native(dev, items))
        yield SimMessage(topic_for(dev), payload,
                         tuple((tr.device_id, dev.channel_prefix + ch, t, value)
                               for t, ch, value in items), device_id=tr.device_id)


def tipping(mm: np.ndarray, bucket: float = 0.2) -> np.ndarray:
    """Interval rain in whole buckets, carrying the remainder forward (no rain is lost)."""
    out = np.zeros_like(mm, dtype=np.float64)
    carry = 0.0
    for i, x in enumerate(mm):
        carry += float(x)
        tips = math.floor(carry / bucket + 1e-9)
        out[i] = round(tips * bucket, 1)
        carry -= tips * bucket
    return out


def typhoon_rain(n: int, step_s: float, *, peak_index: int, peak_mm_h: float,
                 width_h: float, background_mm_h: float = 0.5, seed: int = 0
                 ) -> dict[str, np.ndarray]:
    """A rain gauge's "rain" (interval mm) and "rain_total" under a typhoon rainband."""
    rng = np.random.default_rng(seed)
    hours = (np.arange(n) - peak_index) * step_s / 3600.0
    rate = peak_mm_h * np.exp(-0.5 * (hours / width_h) ** 2) + background_mm_h
    rate *= rng.uniform(0.8, 1.2, n)  # gusts in the rainband
    rain = tipping(rate * step_s / 3600.0)
    return {"rain": rain, "rain_total": np.round(np.cumsum(rain), 1)}


@dataclass(frozen=True)
class Creep:
    """Truth of an accelerating slope (times in seconds from the track start)."""

    displacement: np.ndarray  # mm, positive in the direction of movement
    onset_s: float
    failure_s: float
    v0_mm_per_day: float


def accelerating_creep(n: int, step_s: float, *, v0_mm_per_day: float, onset_s: float,
                       failure_s: float, noise_mm: float = 0.0, quantum_mm: float = 0.0,
                       seed: int = 0) -> Creep:
    """Steady creep, then α = 2 tertiary creep to failure at `failure_s` (see module doc).
    Samples at or after the failure time are NaN (the sensor is gone)."""
    if not 0 < onset_s < failure_s:
        raise InvalidInput("need 0 < onset < failure")
    t = np.arange(n) * step_s
    v0 = v0_mm_per_day / 86400.0
    d_a = v0 * onset_s
    span = failure_s - onset_s
    with np.errstate(divide="ignore", invalid="ignore"):
        tertiary = d_a + v0 * span * np.log(span / (failure_s - t))
    d = np.where(t < onset_s, v0 * t, tertiary)
    d = d + np.random.default_rng(seed).normal(0.0, noise_mm, n) if noise_mm else d
    if quantum_mm:
        d = np.round(np.round(d / quantum_mm) * quantum_mm, 6)
    return Creep(np.where(t < failure_s, d, np.nan), onset_s, failure_s, v0_mm_per_day)


def flood_stage(n: int, step_s: float, *, base_m: float, peak_m: float, rise_start: int,
                peak_index: int, shape: float = 4.0, noise_m: float = 0.0, seed: int = 0
                ) -> np.ndarray:
    """River stage (m): a gamma-shaped hydrograph peaking at `peak_index`."""
    if not rise_start < peak_index:
        raise InvalidInput("the rise must start before the peak")
    x = np.clip((np.arange(n) - rise_start) / (peak_index - rise_start), 0.0, None)
    unit = np.where(x > 0, (x * np.exp(1.0 - x)) ** shape, 0.0)  # 1 at the peak
    h = base_m + (peak_m - base_m) * unit
    if noise_m:
        h = h + np.random.default_rng(seed).normal(0.0, noise_m, n)
    return np.round(h, 3)


def spill_plume(n: int, *, arrive: int, rise: int, hold: int, decay: int) -> np.ndarray:
    """0..1 concentration factor of a plume: ramps up over `rise` samples from `arrive`,
    holds, then decays exponentially with time constant `decay` samples."""
    i = np.arange(n, dtype=np.float64)
    up = np.clip((i - arrive) / max(rise, 1), 0.0, 1.0)
    after = i - (arrive + rise + hold)
    return np.where(after > 0, np.exp(-after / max(decay, 1)), up)


def water_quality_spill(n: int, *, arrive: int, rise: int = 4, hold: int = 6,
                        decay: int = 8, cod_peak: float = 120.0, nh3n_peak: float = 6.0,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """A water-quality station's channels with an organic spill (COD, ammonia up; dissolved
    oxygen down), on the ordinary background of simulators/signals.py."""
    rng = np.random.default_rng(seed)
    plume = spill_plume(n, arrive=arrive, rise=rise, hold=hold, decay=decay)
    noise = rng.normal(0.0, 1.0, (6, n))
    return {
        "ph": np.round(7.4 + 0.03 * noise[0] - 0.4 * plume, 2),
        "do": np.round(np.maximum(7.0 + 0.1 * noise[1] - 4.5 * plume, 0.0), 2),
        "codmn": np.round(3.0 + 0.1 * noise[2] + 0.3 * cod_peak / 4 * plume, 2),
        "cod": np.round(12.0 + 0.4 * noise[3] + (cod_peak - 12.0) * plume, 1),
        "nh3n": np.round(np.maximum(0.3 + 0.02 * noise[4] + (nh3n_peak - 0.3) * plume, 0),
                         3),
        "tp": np.round(np.maximum(0.08 + 0.005 * noise[5] + 0.3 * plume, 0), 3),
    }


@dataclass(frozen=True)
class QuietFaults:
    """What a quiet month does to a healthy sensor."""

    drift_per_day: float = 0.0  # fraction of the channel's noise (or 1 unit) per day
    spikes: int = 4  # isolated single-sample spikes
    spike_size: float = 12.0  # in units of the channel's noise (at least 1 unit)
    dropouts: Sequence[tuple[float, float]] = field(default_factory=tuple)  # (from, to) days


def quiet_track(device_id: str, kind_name: str, start: datetime, days: float, *,
                step_s: float | None = None, faults: QuietFaults = QuietFaults(),  # noqa: B008
                seed: int = 0, catalogue: Catalogue | None = None) -> Track:
    """`days` of the kind's ordinary signal with drift, spikes and dropouts (NaN)."""
    catalogue = catalogue or load_catalogue()
    kind = catalogue.kind(kind_name)
    step = float(step_s or kind.reporting_interval_s)
    n = int(days * 86400.0 / step)
    rng = np.random.default_rng(seed)
    sigs = signals_for(kind, rng, step)
    t = np.arange(n) * step
    values: dict[str, np.ndarray] = {}
    if kind.kind == "rain_gauge":
        rain_sig = next(iter(sigs.values()))
        assert isinstance(rain_sig, RainSignal)
        rain = np.array([rain_sig.value_at(x) for x in t])
        values = {"rain": rain, "rain_total": np.round(np.cumsum(rain), 1)}
    else:
        for name, sig in sigs.items():
            assert isinstance(sig, ChannelSignal)
            v = np.array([sig.value_at(x) for x in t])
            unit = sig.noise or 1.0
            v = v + faults.drift_per_day * unit * t / 86400.0
            # Spikes away from the edges and from each other, each a single sample.
            where = rng.choice(np.arange(20, max(n - 20, 21)), size=min(faults.spikes, n // 40),
                               replace=False) if n > 60 else np.zeros(0, int)
            v[where] += faults.spike_size * max(unit, 1.0) * rng.choice([-1.0, 1.0],
                                                                         where.size)
            spec = kind.channel(name)
            values[name] = np.clip(np.round(v, 6), spec.low, spec.high)
    for lo, hi in faults.dropouts:
        gone = (t >= lo * 86400.0) & (t < hi * 86400.0)
        for v in values.values():
            v[gone] = np.nan
    return Track(device_id, kind_name, start, step, values)
