"""Replaying a recorded series over MQTT as a given device, and reading back what came of it.

`replay_messages` turns a RecordedSeries into the device's own messages (native JSON with its
seq counter, or national `$dp` frames with timestamps), pure. `publish_replay` sends them
through a QoS 1 Publisher at a speed factor in data time (`speed=3600`: an hour of data a
second) or as fast as the broker acknowledges, reporting progress. `replay_summary` then asks
the store, not the sender, what happened: readings stored in the series' time range, dead
letters for the device since the replay began, and the alert level changes whose data time
falls in the range, for the device and the hazard point it watches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from devices.catalogue import SensorKind
from devices.messages import Profile
from simulators.publisher import Publisher
from simulators.recorded import RecordedSeries
from simulators.streams import SimDevice, encode_national

MAX_READINGS_PER_MESSAGE = 1000  # native-v1.md: 1 to 1000 readings a message


@dataclass(frozen=True)
class ReplayMessage:
    device_id: str
    topic: str
    payload: bytes
    last_time: datetime  # data time of the newest reading in the message
    readings: int


def replay_messages(series: RecordedSeries, device_id: str, kind: SensorKind,
                    profile: Profile, *, readings_per_message: int = 100,
                    first_seq: int = 1) -> Iterator[ReplayMessage]:
    """Messages in data-time order; one message holds the readings of up to
    `readings_per_message` consecutive samples' worth (never splitting a sample)."""
    if not 1 <= readings_per_message <= MAX_READINGS_PER_MESSAGE:
        raise ValueError(f"readings per message must be 1 to {MAX_READINGS_PER_MESSAGE}")
    for ch in series.values:
        kind.channel(ch)  # raises InvalidInput naming the kind's channels
    channels = list(series.values)
    matrix = np.column_stack([series.values[ch] for ch in channels])
    device = SimDevice(device_id, kind, profile, {}, seq=(first_seq - 1) % 2**32)
    items: list[tuple[datetime, str, float]] = []
    for ts, row in zip(series.times, matrix, strict=True):
        sample = [(ts, ch, float(v)) for ch, v in zip(channels, row, strict=True)
                  if not np.isnan(v)]
        if items and len(items) + len(sample) > readings_per_message:
            yield _message(device, items, series.units)
            items = []
        items.extend(sample)
    if items:
        yield _message(device, items, series.units)


def _message(device: SimDevice, items: list[tuple[datetime, str, float]],
             unit_of: Mapping[str, str]) -> ReplayMessage:
    last = items[-1][0]
    if device.profile == "national":
        return ReplayMessage(device.device_id, "$dp", encode_national(device, items), last,
                             len(items))
    device.seq = (device.seq + 1) % 2**32
    readings = []
    for ts, ch, value in items:
        reading: dict[str, object] = {"ts": _stamp(ts), "channel": ch, "value": value}
        if ch in unit_of:
            reading["unit"] = unit_of[ch]
        readings.append(reading)
    payload = json.dumps({"seq": device.seq, "readings": readings},
                         separators=(",", ":")).encode()
    return ReplayMessage(device.device_id, f"gw/v1/{device.device_id}/telemetry", payload,
                         last, len(items))


def _stamp(ts: datetime) -> str:
    # Both profiles carry milliseconds at most.
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


@dataclass
class Progress:
    messages: int = 0
    readings: int = 0
    data_time: datetime | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.readings / elapsed if elapsed > 0 else 0.0


def publish_replay(publishers: Mapping[str, Publisher], messages: Iterable[ReplayMessage], *,
                   speed: float | None = None,
                   on_progress: Callable[[Progress, ReplayMessage], None] | None = None
                   ) -> Progress:
    """Publish in order, each message through its device's own connection; with `speed`,
    a message is sent when (its data time - the first's) / speed has passed on the wall
    clock, otherwise as fast as PUBACKs return."""
    progress = Progress()
    first: datetime | None = None
    for msg in messages:
        if speed:
            first = first or msg.last_time
            due = progress.started + (msg.last_time - first).total_seconds() / speed
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing to data time, not waiting for an event
        publishers[msg.device_id].publish(msg.topic, msg.payload)
        progress.messages += 1
        progress.readings += msg.readings
        progress.data_time = msg.last_time
        if on_progress:
            on_progress(progress, msg)
    for publisher in publishers.values():
        publisher.wait_acked()
    return progress


@dataclass(frozen=True)
class AlertChange:
    alert_id: int
    target: str
    hazard_kind: str
    kind: str  # opened, raised, lowered, cleared, resolved
    level: int
    data_time: datetime


@dataclass(frozen=True)
class ReplaySummary:
    device_id: str
    first: datetime
    last: datetime
    published: int  # readings sent
    stored: int  # readings of the device found in the store within [first, last]
    dead_letters: dict[str, int]  # reason -> count, for the device since the replay began
    alert_changes: tuple[AlertChange, ...]

    @property
    def complete(self) -> bool:
        return self.stored >= self.published


def scalar(conn: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> int:
    """The one number a read-back query returns (a count), 0 when it returns nothing."""
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def stored_count(conn: psycopg.Connection, device_id: str, first: datetime,
                 last: datetime) -> int:
    return scalar(conn, "SELECT count(*) FROM readings r JOIN channels c USING (channel_id) "
                  "WHERE c.device_id = %s AND r.ts >= %s AND r.ts <= %s",
                  (device_id, first, last))


@dataclass(frozen=True)
class StoreChecks:
    """What the store shows after replaying a record with no failure in it (Lamosano)."""

    rows: int  # readings stored
    distinct: int  # distinct (channel, time): equal to rows when nothing is stored twice
    forecasts: int  # alert events whose evidence holds a failure forecast
    severe_deformation: int  # orange or red deformation events


def store_checks(conn: psycopg.Connection) -> StoreChecks:
    return StoreChecks(
        scalar(conn, "SELECT count(*) FROM readings"),
        scalar(conn, "SELECT count(DISTINCT (channel_id, ts)) FROM readings"),
        scalar(conn, "SELECT count(*) FROM alert_events WHERE jsonb_path_exists(evidence, "
               "'strict $.**.forecast ? (@ != null)')"),
        scalar(conn, "SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id) "
               "WHERE a.hazard_kind = 'deformation' AND e.level >= 3"))


def replay_summary(conn: psycopg.Connection, device_id: str, series: RecordedSeries,
                   published: int, began: datetime) -> ReplaySummary:
    first, last = series.times[0], series.times[-1]
    letters: dict[str, int] = dict(conn.execute(
        "SELECT reason, count(*) FROM dead_letters WHERE device_id = %s AND received_at >= %s "
        "GROUP BY reason ORDER BY reason", (device_id, began)).fetchall())
    changes = conn.execute(
        "SELECT a.alert_id, a.target_type || ':' || a.target_id, a.hazard_kind, e.kind, "
        "e.level, e.data_time FROM alert_events e JOIN alerts a USING (alert_id) "
        "WHERE e.data_time BETWEEN %s AND %s + interval '1 day' AND ("
        "  (a.target_type = 'device' AND a.target_id = %s) OR"
        "  (a.target_type = 'hazard' AND a.target_id = "
        "     (SELECT hazard_id FROM devices WHERE device_id = %s))) "
        "ORDER BY e.data_time, e.event_id", (first, last, device_id, device_id)).fetchall()
    return ReplaySummary(device_id, first, last, published,
                         stored_count(conn, device_id, first, last),
                         {str(k): int(v) for k, v in letters.items()},
                         tuple(AlertChange(*row) for row in changes))


def wait_stored(conn: psycopg.Connection, device_id: str, series: RecordedSeries,
                expected: int, began: datetime, *, timeout: float = 60.0,
                settle: float = 2.0) -> int:
    """Wait (bounded) until the gateway has dealt with what the broker acknowledged (a PUBACK
    means the broker has it, not that the store does): until every reading is stored, or the
    stored and dead-lettered counts, once they have begun to move, have not moved for
    `settle` seconds (a busy gateway may take longer than that to commit its first batch).
    Returns the stored count seen last."""
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    first: tuple[int, int] | None = None
    seen: tuple[int, int] = (-1, -1)
    while True:
        stored = stored_count(conn, device_id, series.times[0], series.times[-1])
        now = (stored, scalar(conn, "SELECT count(*) FROM dead_letters WHERE device_id = %s "
                              "AND received_at >= %s", (device_id, began)))
        first = first or now
        if now != seen:
            seen, last_change = now, time.monotonic()
        moving = now != first
        if (stored >= expected or time.monotonic() > deadline
                or (moving and time.monotonic() - last_change > settle)):
            return stored
        time.sleep(0.1)  # the store gives no event for "the gateway committed"


def format_summary(summary: ReplaySummary, level_names: dict[int, str]) -> list[str]:
    lines = [
        f"device {summary.device_id}: data {summary.first.isoformat()} .. "
        f"{summary.last.isoformat()}",
        f"  published {summary.published} readings, stored {summary.stored}"
        + ("" if summary.complete else
           f" ({summary.published - summary.stored} not stored: see dead letters)"),
    ]
    if summary.dead_letters:
        lines.append("  dead letters: " + ", ".join(
            f"{reason} {n}" for reason, n in summary.dead_letters.items()))
    else:
        lines.append("  dead letters: none")
    if summary.alert_changes:
        lines.append(f"  alert changes in data time ({len(summary.alert_changes)}):")
        for c in summary.alert_changes:
            lines.append(f"    {c.data_time.isoformat()}  {c.target}  {c.hazard_kind}  "
                         f"{c.kind} -> {level_names.get(c.level, str(c.level))}")
    else:
        lines.append("  alert changes in data time: none")
    return lines


def shift_for_now(series: RecordedSeries, now: datetime | None = None) -> timedelta:
    """The shift that ends the series at `now` (whole seconds, so times stay readable)."""
    now = now or datetime.now(UTC)
    delta = now - series.times[-1]
    return timedelta(seconds=int(delta.total_seconds()))
