"""Turning a batch of received MQTT messages into what one database transaction must write.

Pure: no connection, no broker. The gateway's writer takes a `BatchPlan` and commits it; the
broker is acknowledged only after that commit, so a crash anywhere loses nothing, and the
store's uniqueness on (channel, time) makes the redelivery store nothing twice.

A message is the unit of failure: whatever goes wrong while decoding or planning one message
(a DecodeError, or any other exception, which is a GeoWarn bug) makes that message a dead
letter and leaves its neighbours in the batch alone. An exception that escaped would stop the
gateway and, unacknowledged, come back after every restart.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devices.messages import (
    CommandReply,
    Decoded,
    DecodeError,
    Presence,
    Reading,
    Reason,
    StatusReport,
    Telemetry,
)
from devices.redaction import redact_text
from devices.text import printable
from ingest.deadletters import DeadLetter

log = logging.getLogger(__name__)

# Rejected readings of one message stored one by one; beyond this, one summary letter.
MAX_LETTERS_PER_MESSAGE = 20

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


@dataclass(frozen=True)
class ReplyMessage:
    """A decoded command reply with the message it came in, dead-lettered if it answers no
    command of its device."""

    topic: str
    payload: bytes
    received_at: datetime
    reply: CommandReply


@dataclass
class BatchPlan:
    telemetry: list[TelemetryMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    presences: list[Presence] = field(default_factory=list)
    statuses: list[StatusReport] = field(default_factory=list)
    replies: list[ReplyMessage] = field(default_factory=list)

    def extend(self, other: BatchPlan) -> None:
        self.telemetry += other.telemetry
        self.dead_letters += other.dead_letters
        self.presences += other.presences
        self.statuses += other.statuses
        self.replies += other.replies

    @property
    def reading_count(self) -> int:
        return sum(len(t.readings) for t in self.telemetry)


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def plan_batch(messages: Sequence[ReceivedMessage], decode: DecodeFn,
               reraise: tuple[type[Exception], ...] = ()) -> BatchPlan:
    plan = BatchPlan()
    for msg in messages:
        plan.extend(plan_message(msg, decode, reraise))
    return plan


def plan_message(msg: ReceivedMessage, decode: DecodeFn,
                 reraise: tuple[type[Exception], ...] = ()) -> BatchPlan:
    """What one message contributes to a batch; never raises for anything the message holds.

    `reraise`: errors that are not the message's fault (the registry lookup's database being
    away) and must reach the caller, which retries, rather than dead-letter a good message."""
    plan = BatchPlan()
    try:
        decoded = decode(msg.topic, msg.payload, msg.received_at)
        if isinstance(decoded, Telemetry):
            _plan_telemetry(plan, msg, decoded)
        elif isinstance(decoded, StatusReport):
            plan.statuses.append(decoded)
        elif isinstance(decoded, Presence):
            plan.presences.append(decoded)
        elif isinstance(decoded, CommandReply):
            plan.replies.append(ReplyMessage(msg.topic, msg.payload, msg.received_at, decoded))
    except DecodeError as exc:
        return BatchPlan(dead_letters=[DeadLetter(
            topic=msg.topic, reason=exc.reason, detail=exc.detail, payload=msg.payload,
            received_at=msg.received_at, device_id=exc.device_id)])
    except Exception as exc:  # noqa: BLE001 - the message is the unit of failure (see above)
        if isinstance(exc, reraise):
            raise
        return BatchPlan(dead_letters=[internal_error(msg, exc, "decoding")])
    return plan


def internal_error(msg: ReceivedMessage, exc: BaseException, stage: str) -> DeadLetter:
    """The dead letter of a message GeoWarn itself failed on: the exception class and a
    bounded, redacted message (never the payload's secrets), logged for the developers."""
    detail = (f"{stage} failed with {type(exc).__name__}: "
              f"{printable(redact_text(str(exc)), 300)}")
    # Where it failed, not the traceback: a traceback's messages may quote the payload.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    log.error("internal error %s a message on %s%s: %s", stage, printable(msg.topic, 120),
              where, detail)
    return DeadLetter(topic=msg.topic, reason=Reason.INTERNAL_ERROR, detail=detail,
                      payload=msg.payload, received_at=msg.received_at)


def _plan_telemetry(plan: BatchPlan, msg: ReceivedMessage, telemetry: Telemetry) -> None:
    shown = telemetry.rejections[:MAX_LETTERS_PER_MESSAGE]
    for rejection in shown:
        plan.dead_letters.append(DeadLetter(
            topic=msg.topic, reason=rejection.reason, detail=rejection.detail,
            payload=msg.payload, received_at=msg.received_at, device_id=telemetry.device_id,
            channel=rejection.channel, reading_ts=rejection.ts))
    rest = telemetry.rejections[MAX_LETTERS_PER_MESSAGE:]
    if rest:
        # One message must not become a thousand rows (each with the payload): the rest of its
        # rejections are summed up in one letter, under their most common reason.
        reasons = Counter(r.reason for r in rest)
        summary = ", ".join(f"{reason} x{n}" for reason, n in reasons.most_common())
        plan.dead_letters.append(DeadLetter(
            topic=msg.topic, reason=reasons.most_common(1)[0][0],
            detail=f"and {len(rest)} more rejected readings of this message ({summary}); "
                   f"the first of them: {rest[0].detail}",
            payload=msg.payload, received_at=msg.received_at, device_id=telemetry.device_id))
    status = getattr(telemetry, "status", None)
    if isinstance(status, StatusReport):
        plan.statuses.append(status)
    plan.telemetry.append(TelemetryMessage(
        topic=msg.topic, payload=msg.payload, device_id=telemetry.device_id,
        seq=telemetry.seq, digest=payload_digest(msg.payload), readings=telemetry.readings,
        received_at=msg.received_at))
