"""Simulated device streams: messages in either profile, with injectable faults.

Pure and deterministic under a seed: `generate(...)` yields `SimMessage`s (topic, payload and
the canonical readings a correct gateway must store from it), so tests can check every reading
end to end, and benchmarks can pre-build their traffic before timing it.
"""

from __future__ import annotations

import heapq
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from devices.catalogue import Catalogue, SensorKind, load_catalogue
from devices.messages import Profile
from simulators.signals import ChannelSignal, RainSignal, rain_gauge_values, signals_for

ExpectedReading = tuple[str, str, datetime, float]  # device id, channel key, time, value


@dataclass(frozen=True)
class Faults:
    """Probabilities per message (0..1)."""

    duplicate: float = 0.0  # the same message published twice
    out_of_order: float = 0.0  # swapped with the next message of the stream
    gap: float = 0.0  # never sent (the device was offline)
    garbage: float = 0.0  # an extra malformed message on the device's topic
    spoof: float = 0.0  # an extra message claiming to be another device

    @classmethod
    def parse(cls, text: str) -> Faults:
        """From "duplicate=0.01,gap=0.02"."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, number = part.partition("=")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r} (known: "
                                 f"{', '.join(cls.__dataclass_fields__)})")
            values[name] = float(number)
        return cls(**values)


@dataclass(frozen=True)
class SimMessage:
    topic: str
    payload: bytes
    expected: tuple[ExpectedReading, ...]
    fault: str | None = None  # None for ordinary traffic
    device_id: str | None = None  # who publishes it (its MQTT identity), when known

    @property
    def data_time(self) -> datetime | None:
        """The newest reading time it carries (None for garbage and other faults)."""
        return max((r[2] for r in self.expected), default=None)


@dataclass
class SimDevice:
    device_id: str
    kind: SensorKind
    profile: Profile
    signals: dict[str, ChannelSignal | RainSignal]
    seq: int = 0
    samples: int = 0
    _pending: list[tuple[datetime, str, float]] = field(default_factory=list)

    @property
    def channel_prefix(self) -> str:
        return f"{self.kind.national_code}_1." if self.profile == "national" else ""

    def sample(self, ts: datetime, t: float) -> None:
        self.samples += 1
        if self.kind.kind == "rain_gauge":
            rain = next(iter(self.signals.values()))
            assert isinstance(rain, RainSignal)
            values = rain_gauge_values(rain, t)
        else:
            values = {name: sig.value_at(t) for name, sig in self.signals.items()}
        for name, value in values.items():
            self._pending.append((ts, name, value))

    def take(self, n: int) -> list[tuple[datetime, str, float]]:
        taken, self._pending = self._pending[:n], self._pending[n:]
        return taken


def device_ids(kinds: Sequence[str], count: int, prefix: str = "SIM") -> list[tuple[str, str]]:
    """Deterministic (device id, kind) pairs cycling through `kinds`."""
    return [(f"{prefix}-{kinds[i % len(kinds)].upper().replace('_', '')}-{i:05d}",
             kinds[i % len(kinds)]) for i in range(count)]


def make_devices(pairs: Sequence[tuple[str, str]], profile: str, seed: int,
                 catalogue: Catalogue | None = None) -> list[SimDevice]:
    catalogue = catalogue or load_catalogue()
    rng = np.random.default_rng(seed)
    devices = []
    for i, (device_id, kind_name) in enumerate(pairs):
        kind = catalogue.kind(kind_name)
        # Mixed: every other device speaks the national profile. Kinds without a national
        # code (water and air quality) always speak the native one.
        wants_national = profile == "national" or (profile == "mixed" and i % 2 == 1)
        dev_profile: Profile = ("national" if wants_national and kind.national_code
                                else "native")
        devices.append(SimDevice(device_id, kind, dev_profile,
                                 signals_for(kind, np.random.default_rng(rng.integers(2**63)),
                                             kind.reporting_interval_s)))
    return devices


def encode_native(device: SimDevice, items: list[tuple[datetime, str, float]]) -> bytes:
    device.seq = (device.seq + 1) % 2**32
    return json.dumps({"seq": device.seq, "readings": [
        {"ts": ts.isoformat().replace("+00:00", "Z"), "channel": ch, "value": value}
        for ts, ch, value in items]}, separators=(",", ":")).encode()


def encode_national(device: SimDevice, items: list[tuple[datetime, str, float]],
                    device_id: str | None = None) -> bytes:
    sensor = f"{device.kind.national_code}_1"
    by_ts: dict[str, dict[str, float]] = {}
    for ts, ch, value in items:
        field_name = device.kind.channel(ch).national_field or "value"
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
        by_ts.setdefault(stamp, {})[field_name] = value
    body = json.dumps({device_id or device.device_id: {sensor: by_ts}},
                      separators=(",", ":")).encode()
    # Frame type 2 (timestamped values), then the JSON length, big-endian.
    return struct.pack(">BH", 2, len(body)) + body


def topic_for(device: SimDevice) -> str:
    if device.profile == "national":
        return "$dp"  # what a national logger publishes on; the broker binds its identity
    return f"gw/v1/{device.device_id}/telemetry"


def generate(devices: Sequence[SimDevice], *, start: datetime, messages_per_device: int | None,
             readings_per_message: int | None = 1, step: timedelta | None = None,
             faults: Faults = Faults(), seed: int = 0, time_ordered: bool = False
             ) -> Iterator[SimMessage]:
    """Interleaved traffic of all devices, before faults reorder it: round by round (each
    device's n-th message, then the (n+1)-th), or with `time_ordered` strictly by event time
    across devices of different intervals, as a live fleet sends it. `messages_per_device`
    None: without end (time_ordered only); `readings_per_message` None: one whole sample (every
    channel of the kind) per message."""
    if messages_per_device is None and not time_ordered:
        raise ValueError("an endless stream must be time_ordered")
    rng = np.random.default_rng(seed + 1)
    held: SimMessage | None = None  # an out-of-order message waiting for its successor
    intervals = [step or timedelta(seconds=d.kind.reporting_interval_s) for d in devices]
    per_message = [readings_per_message or len(d.signals) for d in devices]
    for i in _schedule([(t.total_seconds(), k, len(d.signals))
                        for t, k, d in zip(intervals, per_message, devices, strict=True)],
                       messages_per_device, time_ordered):
        device, interval, take = devices[i], intervals[i], per_message[i]
        while len(device._pending) < take:
            ts = start + interval * device.samples
            # Both profiles carry milliseconds at most.
            ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
            device.sample(ts, (ts - start).total_seconds())
        items = device.take(take)
        payload = (encode_national(device, items) if device.profile == "national"
                   else encode_native(device, items))
        expected = tuple((device.device_id, device.channel_prefix + ch, ts, value)
                         for ts, ch, value in items)
        who = device.device_id
        msg = SimMessage(topic_for(device), payload, expected, device_id=who)
        if rng.random() < faults.gap:
            yield SimMessage(msg.topic, b"", (), fault="gap", device_id=who)  # not to be sent
            continue
        if held is not None:
            yield msg
            yield held
            held = None
        elif rng.random() < faults.out_of_order:
            held = SimMessage(msg.topic, msg.payload, msg.expected, fault="out_of_order",
                              device_id=who)
        else:
            yield msg
        if rng.random() < faults.duplicate:
            yield SimMessage(msg.topic, msg.payload, msg.expected, fault="duplicate",
                             device_id=who)
        if rng.random() < faults.garbage:
            yield SimMessage(msg.topic, garbage_payload(rng, start), (), fault="garbage",
                             device_id=who)
        if rng.random() < faults.spoof and len(devices) > 1:
            victim = devices[int(rng.integers(len(devices)))]
            if victim is not device and device.profile == "national":
                spoofed = encode_national(device, items, device_id=victim.device_id)
                yield SimMessage(topic_for(device), spoofed, (), fault="spoof", device_id=who)
    if held is not None:
        yield held


def _schedule(devices: Sequence[tuple[float, int, int]], per_device: int | None,
              time_ordered: bool) -> Iterator[int]:
    """Positions of the devices in sending order: round-robin, or the one whose next message
    is due first (ties by position), each `per_device` times (None: forever). A device is
    (sample interval s, readings a message, readings a sample): message k carries readings
    k*r .. k*r+r-1, so it is due when the sample of its last reading is."""
    if not time_ordered:
        for _ in range(per_device or 0):
            yield from range(len(devices))
        return

    def due(i: int, k: int) -> float:
        interval, per_message, per_sample = devices[i]
        return ((k * per_message + per_message - 1) // per_sample) * interval

    # A heap of (due, position) keeps the fleet in event-time order without materialising
    # the stream.
    heap = [(due(i, 0), i) for i in range(len(devices))]
    heapq.heapify(heap)
    sent = [0] * len(devices)
    while heap:
        _, i = heapq.heappop(heap)
        yield i
        sent[i] += 1
        if per_device is None or sent[i] < per_device:
            heapq.heappush(heap, (due(i, sent[i]), i))


def garbage_payload(rng: np.random.Generator, when: datetime) -> bytes:
    choice = int(rng.integers(4))
    if choice == 0:
        return bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8))
    if choice == 1:
        return b'{"seq": 1, "readings": [{"ts": '  # truncated JSON
    if choice == 2:
        return b'{"seq": "one", "readings": []}'
    return json.dumps({"seq": 1, "readings": [
        {"ts": when.isoformat(), "channel": "no_such_channel", "value": 1}]}
    ).encode()
