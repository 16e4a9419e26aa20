"""Committing one batch plan in one transaction.

Order inside the transaction: sequence-number check, channel ids (learning a national logger's
new sensors), readings (deduplicated on (channel, time)), dead letters, device health, command
replies, and a NOTIFY so the engine evaluates the changed channels. Either all of it is stored
or none; the caller acknowledges the broker only after `commit` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from devices import commands as device_commands
from devices import health as device_health
from devices import registry
from devices.messages import Quality, Reading, Reason
from geowarn.readings import write_readings
from ingest.deadletters import DeadLetter, write_dead_letters
from ingest.pipeline import BatchPlan, ReplyMessage, TelemetryMessage

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "geowarn_readings"
# pg_notify payloads are limited to 8000 bytes: a commit naming more channels sends several
# notifications, so the engine still loads only those channels (a "*" would make it search
# the whole registry, one index probe per channel).
_NOTIFY_MAX_BYTES = 7900


@dataclass(frozen=True)
class CommitResult:
    stored: int
    duplicates: int
    dead_letters: int
    duplicate_messages: int
    channel_ids: frozenset[int]
    # Dead letters the writer added to the plan's (reused sequence numbers, stray replies).
    writer_letters: tuple[DeadLetter, ...] = ()


class BatchWriter:
    """Holds the caches that make a commit cheap: channel ids by (device, channel key)."""

    def __init__(self, gateway: str, *, duplicate_seq_window: timedelta,
                 max_clock_skew_s: float = 300.0) -> None:
        self.gateway = gateway
        self.duplicate_seq_window = duplicate_seq_window
        self.max_clock_skew_s = max_clock_skew_s
        self._channel_ids: dict[tuple[str, str], int] = {}

    def forget_device(self, device_id: str) -> None:
        for key in [k for k in self._channel_ids if k[0] == device_id]:
            del self._channel_ids[key]

    def commit(self, conn: psycopg.Connection, plan: BatchPlan, now: datetime) -> CommitResult:
        learnt: dict[tuple[str, str], int] = {}
        with conn.transaction():
            accepted, seq_letters, duplicate_messages = self._check_sequences(conn, plan, now)
            letters = plan.dead_letters + seq_letters
            readings = [r for msg in accepted for r in msg.readings]
            ids = self._resolve_channels(conn, readings, learnt)
            rows = [(ids[(r.device_id, r.channel)], r.ts, r.value, int(r.quality))
                    for r in readings]
            result = write_readings(conn, rows)
            last: dict[str, datetime] = {}
            for r in readings:
                if r.quality != Quality.UNRELIABLE and (r.device_id not in last
                                                        or r.ts > last[r.device_id]):
                    last[r.device_id] = r.ts
            if last:
                device_health.touch_last_reading(conn, last)
            skew = self.max_clock_skew_s
            for presence in plan.presences:
                device_health.record_presence(conn, presence, max_future_s=skew)
            for status in plan.statuses:
                device_health.record_status(conn, status, max_future_s=skew)
            letters += self._record_replies(conn, plan.replies)
            write_dead_letters(conn, letters, gateway=self.gateway)
            changed = frozenset(row[0] for row in rows)
            if changed:
                _notify(conn, changed)
        # Only after the commit: a rolled-back transaction must not leave learnt ids cached.
        self._channel_ids.update(learnt)
        return CommitResult(stored=result.inserted, duplicates=result.duplicates,
                            dead_letters=len(letters), duplicate_messages=duplicate_messages,
                            channel_ids=changed,
                            writer_letters=tuple(letters[len(plan.dead_letters):]))

    @staticmethod
    def _record_replies(conn: psycopg.Connection, replies: Iterable[ReplyMessage]
                        ) -> list[DeadLetter]:
        """Close commands with their replies; a reply to no command, or to another device's
        command (spoofed or misrouted), is kept as a dead letter rather than vanishing."""
        letters = []
        for m in replies:
            outcome = device_commands.record_reply(conn, m.reply)
            if outcome not in ("unknown", "wrong_device"):
                continue
            who = m.reply.device_id or "an unidentified device"
            if outcome == "unknown":
                reason = Reason.UNKNOWN_COMMAND
                detail = f"reply from {who} to command {m.reply.command_id!r}, which was never sent"
            else:
                reason = Reason.FOREIGN_REPLY
                detail = (f"reply from {who} to command {m.reply.command_id!r}, which was sent "
                          "to another device; ignored")
            letters.append(DeadLetter(topic=m.topic, reason=reason, detail=detail,
                                      payload=m.payload, received_at=m.received_at,
                                      device_id=m.reply.device_id))
        return letters

    def _check_sequences(self, conn: psycopg.Connection, plan: BatchPlan, now: datetime
                         ) -> tuple[list[TelemetryMessage], list[DeadLetter], int]:
        """Same seq + same payload: a redelivery (kept; the store dedups it). Same seq +
        another payload within the window: a firmware fault, dead-lettered whole."""
        with_seq = [m for m in plan.telemetry if m.seq is not None]
        if not with_seq:
            return list(plan.telemetry), [], 0
        devices = [m.device_id for m in with_seq]
        seqs = [m.seq for m in with_seq]
        seen: dict[tuple[str, int], bytes] = {
            (d, s): bytes(g) for d, s, g in conn.execute(
                "SELECT s.device_id, s.seq, s.digest FROM device_sequences s "
                "JOIN unnest(%s::text[], %s::bigint[]) AS k(device_id, seq) "
                "USING (device_id, seq) WHERE s.received_at > %s",
                (devices, seqs, now - self.duplicate_seq_window))
        }
        accepted: list[TelemetryMessage] = []
        letters: list[DeadLetter] = []
        duplicates = 0
        fresh: dict[tuple[str, int], bytes] = {}
        for msg in plan.telemetry:
            if msg.seq is None:
                accepted.append(msg)
                continue
            key = (msg.device_id, msg.seq)
            digest = seen.get(key) or fresh.get(key)
            if digest is None:
                fresh[key] = msg.digest
                accepted.append(msg)
            elif digest == msg.digest:
                duplicates += 1
                accepted.append(msg)
            else:
                letters.append(DeadLetter(
                    topic=msg.topic, reason=Reason.DUPLICATE_SEQUENCE,
                    detail=f"sequence number {msg.seq} was already used by device "
                           f"{msg.device_id} for a different message",
                    payload=msg.payload, received_at=msg.received_at, device_id=msg.device_id))
        if fresh:
            keys = list(fresh)
            conn.execute(
                "INSERT INTO device_sequences (device_id, seq, digest, received_at) "
                "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[], "
                "%s::timestamptz[]) ON CONFLICT (device_id, seq) DO UPDATE "
                "SET digest = EXCLUDED.digest, received_at = EXCLUDED.received_at "
                "WHERE device_sequences.received_at <= %s",
                ([k[0] for k in keys], [k[1] for k in keys], [fresh[k] for k in keys],
                 [now] * len(keys), now - self.duplicate_seq_window))
        return accepted, letters, duplicates

    def _resolve_channels(self, conn: psycopg.Connection, readings: Iterable[Reading],
                          learnt: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        ids = self._channel_ids
        missing = {(r.device_id, r.channel): r for r in readings
                   if (r.device_id, r.channel) not in ids
                   and (r.device_id, r.channel) not in learnt}
        if missing:
            found = registry.channel_ids(conn, list(missing))
            for key, reading in missing.items():
                if key not in found:
                    spec = reading.channel.rsplit(".", 1)[-1]
                    registry.learn_channel(conn, reading.device_id, reading.channel,
                                           reading.kind, spec)
            if len(found) < len(missing):
                found = registry.channel_ids(conn, list(missing))
            learnt.update(found)
        return {**ids, **learnt}


def _notify(conn: psycopg.Connection, channel_ids: frozenset[int]) -> None:
    if not channel_ids:
        return
    payloads, current = [], ""
    for cid in sorted(channel_ids):
        item = str(cid)
        if current and len(current) + 1 + len(item) > _NOTIFY_MAX_BYTES:
            payloads.append(current)
            current = ""
        current = f"{current},{item}" if current else item
    payloads.append(current)
    conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                 (NOTIFY_CHANNEL, payloads))
