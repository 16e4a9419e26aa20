"""Dead letters: every rejected message, or rejected part of one, with a specific reason.

Nothing a device sends is dropped silently: what cannot be stored as a reading is stored here
with its topic, the raw payload (bounded), the reason code (devices.messages.Reason), a detail
an engineer can act on, and the device when it is known.

What is stored is made safe at this one boundary, whatever the decoder left in it: secrets
(apikey, passwords, tokens) masked in payload and detail (devices.redaction), every text field
escaped (no NUL, control character or lone surrogate can make the database refuse the letter)
and bounded (a 60,000-character topic is kept as its first MAX_TOPIC characters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from devices.redaction import redact_bytes, redact_text
from devices.text import printable

# Enough to see what a device sent; a 256 KiB garbage payload is not worth keeping whole.
MAX_STORED_PAYLOAD = 4096
MAX_DETAIL = 1000
MAX_TOPIC = 256
MAX_ID = 128


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    detail: str
    payload: bytes
    received_at: datetime
    device_id: str | None = None
    channel: str | None = None
    reading_ts: datetime | None = None


def write_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter],
                       gateway: str | None = None) -> None:
    if not letters:
        return
    with conn.cursor() as cur, cur.copy(
        "COPY dead_letters (received_at, topic, device_id, reason, detail, channel, "
        "reading_ts, payload, payload_size, gateway) FROM STDIN"
    ) as copy:
        for d in letters:
            copy.write_row(stored_row(d) + (gateway,))


def stored_row(d: DeadLetter) -> tuple[Any, ...]:
    """The columns stored for a letter (without the gateway): redacted, escaped, bounded."""
    return (d.received_at, printable(d.topic, MAX_TOPIC), _opt(d.device_id),
            printable(d.reason, 64), printable(redact_text(d.detail), MAX_DETAIL),
            _opt(d.channel), d.reading_ts,
            redact_bytes(d.payload)[:MAX_STORED_PAYLOAD], len(d.payload))


def _opt(text: str | None) -> str | None:
    return None if text is None else printable(text, MAX_ID)


def list_dead_letters(conn: psycopg.Connection, *, since: datetime | None = None,
                      device_id: str | None = None, reason: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    clauses = ["TRUE"]
    params: list[Any] = []
    if since is not None:
        clauses.append("received_at >= %s")
        params.append(since)
    if device_id is not None:
        clauses.append("device_id = %s")
        params.append(device_id)
    if reason is not None:
        clauses.append("reason = %s")
        params.append(reason)
    params.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, received_at, topic, device_id, reason, detail, channel, reading_ts, "
            "payload, payload_size, gateway FROM dead_letters WHERE "
            + " AND ".join(clauses) + " ORDER BY received_at DESC, id DESC LIMIT %s",
            params)
        return cur.fetchall()


def payload_excerpt(payload: bytes, limit: int = 120) -> str:
    """Printable excerpt, secrets masked (letters stored before redaction existed too): text
    as text, binary frames as hex."""
    payload = redact_bytes(payload)
    try:
        text = payload.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
            return printable(text, limit)
    except UnicodeDecodeError:
        pass
    return "0x" + payload[: limit // 2].hex() + ("…" if len(payload) > limit // 2 else "")
