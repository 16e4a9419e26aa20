"""Turning a batch of received MQTT messages into what one database transaction must write.

Pure: no connection, no broker. The gateway's writer takes a `BatchPlan` and commits it; the
broker is acknowledged only after that commit, so a crash anywhere loses nothing, and the
store's uniqueness on (channel, time) makes the redelivery store nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from devices.messages import (
    CommandReply,
    Decoded,
    DecodeError,
    Presence,
    Reading,
    StatusReport,
    Telemetry,
)
from ingest.deadletters import DeadLetter

DecodeFn = Callable[[str, bytes, datetime], Decoded]


@dataclass(frozen=True)
class ReceivedMessage:
    """One MQTT message as the gateway received it; `token` identifies it for the ack."""

    topic: str
    payload: bytes
    received_at: datetime
    token: object = None


@dataclass(frozen=True)
class TelemetryMessage:
    """The readings of one accepted telemetry message, kept together for the seq check."""

    topic: str
    payload: bytes
    device_id: str
    seq: int | None
    digest: bytes
    readings: tuple[Reading, ...]
    received_at: datetime


@dataclass
class BatchPlan:
    telemetry: list[TelemetryMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    presences: list[Presence] = field(default_factory=list)
    statuses: list[StatusReport] = field(default_factory=list)
    replies: list[CommandReply] = field(default_factory=list)

    @property
    def reading_count(self) -> int:
        return sum(len(t.readings) for t in self.telemetry)


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def plan_batch(messages: Sequence[ReceivedMessage], decode: DecodeFn) -> BatchPlan:
    plan = BatchPlan()
    for msg in messages:
        try:
            decoded = decode(msg.topic, msg.payload, msg.received_at)
        except DecodeError as exc:
            plan.dead_letters.append(DeadLetter(
                topic=msg.topic, reason=exc.reason, detail=exc.detail, payload=msg.payload,
                received_at=msg.received_at, device_id=exc.device_id))
            continue
        if isinstance(decoded, Telemetry):
            _plan_telemetry(plan, msg, decoded)
        elif isinstance(decoded, StatusReport):
            plan.statuses.append(decoded)
        elif isinstance(decoded, Presence):
            plan.presences.append(decoded)
        elif isinstance(decoded, CommandReply):
            plan.replies.append(decoded)
    return plan


def _plan_telemetry(plan: BatchPlan, msg: ReceivedMessage, telemetry: Telemetry) -> None:
    for rejection in telemetry.rejections:
        plan.dead_letters.append(DeadLetter(
            topic=msg.topic, reason=rejection.reason, detail=rejection.detail,
            payload=msg.payload, received_at=msg.received_at, device_id=telemetry.device_id,
            channel=rejection.channel, reading_ts=rejection.ts))
    status = getattr(telemetry, "status", None)
    if isinstance(status, StatusReport):
        plan.statuses.append(status)
    plan.telemetry.append(TelemetryMessage(
        topic=msg.topic, payload=msg.payload, device_id=telemetry.device_id,
        seq=telemetry.seq, digest=payload_digest(msg.payload), readings=telemetry.readings,
        received_at=msg.received_at))
