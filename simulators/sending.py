"""Sending a simulated stream as a live fleet would: every message as its own device (with the
device's secret when the broker requires credentials), never before its data time.

A message whose readings lie in the past (a backfill, `--start` yesterday) goes out at once, as
fast as the broker acknowledges; one whose time is still to come waits for it, so nothing is
ever published ahead of the clock (ingest refuses readings from the future) and a run started
now is a live feed. The waits are timed waits on the stop event, so SIGTERM ends them at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import paho.mqtt.client as mqtt

from geowarn.errors import InvalidInput
from simulators.publisher import Publisher
from simulators.streams import SimMessage


class Sink(Protocol):
    """What a run publishes through (simulators.publisher.Publisher)."""

    who: str
    refused: Counter[str]

    def publish(self, topic: str, payload: bytes) -> None: ...
    def close(self) -> None: ...


@dataclass
class SendReport:
    published: int = 0
    readings: int = 0
    devices: set[str] = field(default_factory=set)
    first_data: datetime | None = None
    last_data: datetime | None = None
    # MQTT 5 PUBACK refusals, "device: reason" -> count (e.g. the ACL's "Not authorized").
    refused: Counter[str] = field(default_factory=Counter)
    stopped: bool = False  # ended by the stop event before the stream did


class Connections:
    """The broker connections of a run: one per device when `secrets` are given (the broker's
    ACL lets each device publish only as itself), else one for all, with `username` or none."""

    def __init__(self, host: str, port: int, *, secrets: Mapping[str, str] | None = None,
                 username: str | None = None, password: str | None = None,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
                 connect: Callable[..., Sink] = Publisher) -> None:
        self.host, self.port, self.protocol = host, port, protocol
        self.secrets = secrets
        self._connect = connect
        self._by_device: dict[str, Sink] = {}
        self._shared: Sink | None = None
        if secrets is None:
            self._shared = connect(host, port, username=username, password=password,
                                   protocol=protocol)

    def check(self, device_ids: Iterable[str]) -> None:
        """Refuse before sending anything if a device has no secret in the file."""
        if self.secrets is None:
            return
        missing = sorted(set(device_ids) - set(self.secrets))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                              if len(missing) > 5 else "")
            raise InvalidInput(f"no secret for {shown} in the secrets file (it has "
                               f"{len(self.secrets)}); import those devices with "
                               "--secrets-out, or rotate their secret")

    def for_device(self, device_id: str | None) -> Sink:
        if self._shared is not None:
            return self._shared
        if device_id is None or self.secrets is None:
            raise InvalidInput("a message without a sending device cannot be published with "
                               "per-device secrets")
        pub = self._by_device.get(device_id)
        if pub is None:
            pub = self._connect(self.host, self.port, username=device_id,
                                password=self.secrets[device_id], protocol=self.protocol)
            self._by_device[device_id] = pub
        return pub

    def close(self) -> Counter[str]:
        """Wait for the acknowledgements, disconnect, and return the refusals by device."""
        refused: Counter[str] = Counter()
        pubs = ([("", self._shared)] if self._shared else []) + list(self._by_device.items())
        for device_id, pub in pubs:
            pub.close()
            for reason, n in pub.refused.items():
                refused[f"{device_id or pub.who}: {reason}"] += n
        return refused


def send(messages: Iterable[SimMessage], connections: Connections, stop: threading.Event, *,
         rate: float | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
         progress: Callable[[SendReport], None] | None = None,
         progress_every_s: float = 60.0) -> SendReport:
    """Publish `messages` in order, each no earlier than its data time and at most `rate` a
    second; until the stream ends or `stop` is set."""
    report = SendReport()
    try:
        _send(messages, connections, stop, report, rate, clock, progress, progress_every_s)
    finally:
        report.refused = connections.close()
    return report


def _send(messages: Iterable[SimMessage], connections: Connections, stop: threading.Event,
          report: SendReport, rate: float | None, clock: Callable[[], datetime],
          progress: Callable[[SendReport], None] | None, progress_every_s: float) -> None:
    started = time.monotonic()
    last_progress = started
    for msg in messages:
        if msg.fault == "gap":  # a marker for what an offline device did not send
            continue
        due = msg.data_time
        wait = (due - clock()).total_seconds() if due is not None else 0.0
        if rate:
            wait = max(wait, started + report.published / rate - time.monotonic())
        if (wait > 0 and stop.wait(wait)) or stop.is_set():
            report.stopped = True
            break
        connections.for_device(msg.device_id).publish(msg.topic, msg.payload)
        report.published += 1
        report.readings += len(msg.expected)
        if msg.device_id:
            report.devices.add(msg.device_id)
        if due is not None:
            report.first_data = min(report.first_data or due, due)
            report.last_data = max(report.last_data or due, due)
        if progress and time.monotonic() - last_progress >= progress_every_s:
            last_progress = time.monotonic()
            progress(report)
