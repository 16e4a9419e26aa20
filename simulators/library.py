"""The named scenarios of `geowarn simulate --scenario NAME`: each places the scripted shapes
of simulators/scenarios.py on real devices, from a start time, deterministic under a seed.

A scenario suits some sensor kinds (a typhoon needs a rain gauge, a creep a displacement
sensor); it builds one Track per device it is placed on, each with its own seed, so that two
gauges under the same storm do not report identical gusts. Durations and shapes are those the
engine's scenario tests (tests/test_engine_scenarios.py) check the warnings of.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from geowarn.errors import InvalidInput
from simulators.scenarios import (
    QuietFaults,
    Track,
    accelerating_creep,
    flood_stage,
    quiet_track,
    typhoon_rain,
    water_quality_spill,
)
from simulators.streams import Faults, SimMessage, garbage_payload


@dataclass(frozen=True)
class Placement:
    """A registered device a scenario runs on."""

    device_id: str
    kind: str
    profile: str = "native"


Builder = Callable[[Placement, datetime, int], Track]


@dataclass(frozen=True)
class Scenario:
    name: str
    kinds: tuple[str, ...]  # the kinds it can be placed on (empty: any kind)
    summary: str
    build: Builder
    faults: Faults = Faults()  # transport faults on top of the track (the faults scenario)

    def suits(self, kind: str | None) -> bool:
        return not self.kinds or kind in self.kinds

    def tracks(self, placements: Sequence[Placement], start: datetime, seed: int
               ) -> list[Track]:
        for p in placements:
            if not self.suits(p.kind):
                raise InvalidInput(f"scenario {self.name} runs on {' or '.join(self.kinds)} "
                                   f"devices; {p.device_id} is a {p.kind or 'device of no kind'}")
        return [self.build(p, start, seed + 1000 * i) for i, p in enumerate(placements)]


def _track(p: Placement, start: datetime, step_s: float, values: dict[str, np.ndarray]
           ) -> Track:
    return Track(p.device_id, p.kind, start, step_s, values, profile=p.profile)


def _typhoon(p: Placement, start: datetime, seed: int) -> Track:
    return _track(p, start, 300.0, typhoon_rain(576, 300.0, peak_index=300, peak_mm_h=32.0,
                                                width_h=2.0, seed=seed))


_CREEP_STEP_S, _CREEP_DAYS = 1800.0, 8.0
# The channel that moves, and its resting value, per displacement sensor.
_CREEP_CHANNEL = {"crack_meter": ("opening", 12.0), "gnss": ("disp_x", 0.0),
                  "inclinometer": ("disp_a", 3.0)}


def _creep(p: Placement, start: datetime, seed: int) -> Track:
    n = int(_CREEP_DAYS * 86400 / _CREEP_STEP_S)
    creep = accelerating_creep(n, _CREEP_STEP_S, v0_mm_per_day=1.0, onset_s=3 * 86400.0,
                               failure_s=_CREEP_DAYS * 86400.0, noise_mm=0.02,
                               quantum_mm=0.01, seed=seed)
    moving, rest = _CREEP_CHANNEL[p.kind]
    # The other channels stay at their ordinary signal (and stop when the sensor is gone).
    quiet = quiet_track(p.device_id, p.kind, start, _CREEP_DAYS, step_s=_CREEP_STEP_S,
                        faults=QuietFaults(spikes=0), seed=seed + 1)
    values = {name: np.where(np.isnan(creep.displacement), np.nan, v)
              for name, v in quiet.values.items()}
    values[moving] = rest + creep.displacement
    return _track(p, start, _CREEP_STEP_S, values)


def _flood(p: Placement, start: datetime, seed: int) -> Track:
    return _track(p, start, 300.0, {"level": flood_stage(
        576, 300.0, base_m=12.0, peak_m=17.2, rise_start=150, peak_index=330, noise_m=0.004,
        seed=seed)})


def _spill(p: Placement, start: datetime, seed: int) -> Track:
    return _track(p, start, 3600.0, water_quality_spill(72, arrive=30, cod_peak=120.0,
                                                        nh3n_peak=6.0, seed=seed))


def _quiet(p: Placement, start: datetime, seed: int) -> Track:
    tr = quiet_track(p.device_id, p.kind, start, 2.0, faults=QuietFaults(spikes=0), seed=seed)
    return _track(p, start, tr.step_s, dict(tr.values))


def _faulty(p: Placement, start: datetime, seed: int) -> Track:
    tr = quiet_track(p.device_id, p.kind, start, 2.0, seed=seed, faults=QuietFaults(
        drift_per_day=0.5, spikes=4, dropouts=((0.5, 0.6),)))
    return _track(p, start, tr.step_s, dict(tr.values))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("typhoon", ("rain_gauge",), "a typhoon rainband: 48 h of 5-minute rain, peaking "
             "at 32 mm/h 25 h after the start", _typhoon),
    Scenario("creep", tuple(_CREEP_CHANNEL), "an accelerating slope: 3 days of 1 mm/day creep, "
             "then tertiary creep to failure 8 days after the start (30-minute samples)",
             _creep),
    Scenario("flood", ("water_level",), "a flood: 48 h of 5-minute stage, from 12 m rising "
             "from 12.5 h to a 17.2 m peak 27.5 h after the start", _flood),
    Scenario("spill", ("water_quality",), "a pollution spill: 72 hourly samples, a plume "
             "(COD to 120 mg/L, ammonia to 6 mg/L) arriving 30 h after the start", _spill),
    Scenario("quiet", (), "2 days of the kind's ordinary signal, nothing to warn about",
             _quiet),
    Scenario("faults", (), "2 quiet days with drift, 4 spikes and a 2.4 h dropout, sent with "
             "2% duplicates, 2% out of order and 1% garbage messages", _faulty,
             Faults(duplicate=0.02, out_of_order=0.02, garbage=0.01)),
)}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise InvalidInput(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None


def with_faults(messages: Iterator[SimMessage], faults: Faults, seed: int
                ) -> Iterator[SimMessage]:
    """Transport faults on any message stream (as streams.generate injects them): duplicates,
    a message swapped with its successor, garbage on the sender's topic, gaps."""
    if faults.spoof:
        raise InvalidInput("spoof faults need the simulated fleet (not --scenario)")
    rng = np.random.default_rng(seed + 2)
    held: SimMessage | None = None
    for msg in messages:
        if rng.random() < faults.gap:
            continue
        if held is not None:
            yield msg
            yield held
            held = None
        elif rng.random() < faults.out_of_order:
            held = SimMessage(msg.topic, msg.payload, msg.expected, "out_of_order",
                              msg.device_id)
        else:
            yield msg
        if rng.random() < faults.duplicate:
            yield SimMessage(msg.topic, msg.payload, msg.expected, "duplicate", msg.device_id)
        if rng.random() < faults.garbage and msg.data_time is not None:
            yield SimMessage(msg.topic, garbage_payload(rng, msg.data_time), (), "garbage",
                             msg.device_id)
    if held is not None:
        yield held
