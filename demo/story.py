"""The demo's story in data time: what the devices send, and the warning engine and the
notifier living through it in data time, compressed into seconds.

The story ends at the last half hour before now (`StoryClock.end`). Over the eight days
before it, the crack meter on 岭头村滑坡 creeps steadily and then accelerates towards a failure
five hours after the end (simulators' `creep` scenario); in the last day and a half a typhoon
rainband crosses 后坑泥石流沟 (the `typhoon` scenario, peaking 14 h before the end); two quiet
devices elsewhere report nothing worth a warning.

Everything is sent through the broker at once (the gateway stores it), then the engine is
stepped in data time, three hours of data a step, as the live service would after an
ingest commit that brought a backlog (the engine judges every sample at its own time, in
rounds, whatever the step: a step size changes nothing but the number of database round
trips); after each step the notifier runs on a clock that walks through the due times of
what the step raised (each event at its data time, escalations and retries when due). So the
alerts, the SMS and the escalations carry coherent times, as if the eight days had been lived.

Nobody acknowledges the slope's warnings, so they climb the officer ladder to the city; the
typhoon's orange is acknowledged by the county's duty officer ACK_AFTER after it was raised,
through the call the API's `POST /api/alerts/{id}/ack` makes (alerts.lifecycle.writes
.acknowledge), and the notifier's next round stops its escalation before the city is paged.
The acknowledgement is stamped with the wall clock, as any person's is; the story tells it
at its data time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import psycopg

from alerts.engine.service import Engine, EngineConfig
from alerts.lifecycle import writes
from alerts.lifecycle.writes import AlertEvent
from demo.county import DEVICES
from notify.notifier import Notifier
from simulators.library import Placement, scenario
from simulators.scenarios import QuietFaults, Track, messages, quiet_track
from simulators.streams import SimMessage

CREEP_DAYS = 8.0  # the `creep` scenario: failure 8 days after its start
FAILURE_AFTER_END = timedelta(hours=5)
TYPHOON_START_BEFORE_END = timedelta(hours=39)
TYPHOON_PEAK = timedelta(hours=25)  # after its start (simulators/library.py)
STEP = timedelta(hours=3)
# Who acknowledges what, and how soon: the county duty officer (demo/county/people.csv), the
# typhoon's orange on 后坑泥石流沟, within the 15 minutes before an orange escalates.
ACK_HAZARD, ACK_LEVEL, ACK_USER = "DEMO-DF-02", 3, "county-duty"
ACK_AFTER = timedelta(minutes=8)


@dataclass(frozen=True)
class StoryClock:
    end: datetime  # the story's last data time (a whole half hour, at or before now)

    @classmethod
    def before(cls, now: datetime) -> StoryClock:
        return cls(now.replace(minute=30 if now.minute >= 30 else 0, second=0,
                               microsecond=0))

    @property
    def failure(self) -> datetime:
        """When the slope of the story fails (the scenario's truth, after the end)."""
        return self.end + FAILURE_AFTER_END

    @property
    def start(self) -> datetime:
        return self.failure - timedelta(days=CREEP_DAYS)


def _until(track: Track, end: datetime) -> Track:
    """The samples at or before `end` (the rest of the scenario has not happened yet)."""
    n = int((end - track.start).total_seconds() // track.step_s) + 1
    return replace(track, values={k: v[:n] for k, v in track.values.items()})


def _every_ten_minutes(track: Track) -> Track:
    """The 5-minute typhoon scenario as a gauge reporting every 10 minutes: each report
    carries the rain of the two 5-minute intervals it closes (the first, of one) and the
    running total at its time. Half the samples for the engine to judge, the same storm."""
    rain, total = track.values["rain"], track.values["rain_total"]
    pairs = np.round(np.r_[0.0, rain][0::2][: (rain.size + 1) // 2]
                     + rain[0::2], 1)
    return replace(track, step_s=2 * track.step_s,
                   values={"rain": pairs, "rain_total": total[0::2]})


def tracks(clock: StoryClock, seed: int) -> list[Track]:
    by_id = {d.device_id: d for d in DEVICES}
    rain, slope = by_id["DEMO-RG-01"], by_id["DEMO-CM-01"]
    storm_start = clock.end - TYPHOON_START_BEFORE_END
    storm = _every_ten_minutes(scenario("typhoon").tracks(
        [Placement(rain.device_id, rain.kind)], storm_start, seed)[0])
    # Before the rainband the gully's gauge reports ordinary weather (else it is silent and
    # the engine rightly raises a maintenance alert); its running total carries on.
    before = quiet_track(rain.device_id, rain.kind, clock.start,
                         (storm_start - clock.start).total_seconds() / 86400.0,
                         step_s=storm.step_s, faults=QuietFaults(spikes=0), seed=seed + 5)
    # One track (one sequence of message numbers): the quiet days, then the storm.
    carried = float(np.nansum(before.values["rain"]))
    gauge = replace(before, values={
        "rain": np.concatenate([before.values["rain"], storm.values["rain"]]),
        "rain_total": np.concatenate([before.values["rain_total"],
                                      np.round(storm.values["rain_total"] + carried, 1)])})
    assert gauge.time(before.n) == storm.start  # the storm's grid continues the quiet one
    creep = scenario("creep").tracks([Placement(slope.device_id, slope.kind)], clock.start,
                                     seed)[0]
    days = (clock.end - clock.start).total_seconds() / 86400.0
    quiet = [quiet_track(d.device_id, d.kind, clock.start, days + 1 / 24, step_s=d.step_s,
                         faults=QuietFaults(spikes=0), seed=seed + 10 + i)
             for i, d in enumerate(DEVICES) if d.device_id not in (rain.device_id,
                                                                  slope.device_id)]
    return [_until(t, clock.end) for t in (gauge, creep, *quiet)]


def story_messages(clock: StoryClock, seed: int) -> list[SimMessage]:
    return list(messages(tracks(clock, seed)))


@dataclass(frozen=True)
class Acked:
    """An acknowledgement in the story, and the escalation as the notifier left it."""

    alert_id: int
    target_id: str
    hazard_kind: str
    level: int
    at: datetime  # data time
    raised_at: datetime
    user: str
    tier: int  # escalation tiers reached before it stopped
    stopped_at: datetime | None
    stopped_by: str | None


@dataclass
class Replayed:
    events: list[AlertEvent] = field(default_factory=list)
    engine_steps: int = 0
    notifier_moments: int = 0
    acks: list[Acked] = field(default_factory=list)


class MovableClock:
    """The notifier's clock: set by the replay, read by the notifier."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def next_due(conn: psycopg.Connection) -> datetime | None:
    """The earliest time the notifier has work: a pending outbox event, a pending delivery
    (new or a retry), or a running escalation."""
    row = conn.execute(
        "SELECT least((SELECT min(next_attempt_at) FROM notification_outbox "
        "              WHERE state = 'pending'), "
        "             (SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending'), "
        "             (SELECT min(next_at) FROM escalations WHERE stopped_at IS NULL))"
    ).fetchone()
    return row[0] if row else None


def events_due_at_data_time(conn: psycopg.Connection) -> None:
    """A replayed event is due at its data time, not when the replay wrote it (the outbox
    stamps new rows with the database's wall clock)."""
    conn.execute("UPDATE notification_outbox SET next_attempt_at = data_time "
                 "WHERE state = 'pending' AND attempts = 0 AND next_attempt_at > data_time")


def replay(db_url: str, clock: StoryClock, notifier: Notifier, notifier_clock: MovableClock,
           on_step: Callable[[Sequence[AlertEvent]], None] | None = None,
           on_ack: Callable[[Acked], None] | None = None) -> Replayed:
    """Step the engine over the story, STEP at a time; after each step, run the notifier
    at every due time inside it, in order, and the acknowledgement when its time comes."""
    engine = Engine(db_url, EngineConfig(name="demo", clock="data"))
    done = Replayed()
    pending: list[tuple[datetime, AlertEvent]] = []
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            t = clock.start
            while t < clock.end:
                t = min(t + STEP, clock.end)
                events = engine.step(now=t.timestamp(), periodic=True)
                done.engine_steps += 1
                done.events += events
                pending += [(e.data_time + ACK_AFTER, e) for e in events if to_acknowledge(e)]
                if on_step is not None and events:
                    on_step(events)
                events_due_at_data_time(conn)
                done.notifier_moments += _notify_until(conn, notifier, notifier_clock, t,
                                                       pending, done.acks, on_ack)
    finally:
        engine.close()
    return done


def to_acknowledge(e: AlertEvent) -> bool:
    return (e.target_id == ACK_HAZARD and e.level == ACK_LEVEL
            and e.kind in ("opened", "raised"))


def _notify_until(conn: psycopg.Connection, notifier: Notifier, clock: MovableClock,
                  until: datetime, pending: list[tuple[datetime, AlertEvent]],
                  acks: list[Acked], on_ack: Callable[[Acked], None] | None) -> int:
    moments = 0
    while True:
        due = next_due(conn)
        ack_at = pending[0][0] if pending else None
        if ack_at is not None and ack_at <= until and (due is None or ack_at <= due):
            clock.at = max(clock.at, ack_at)
            acks.append(_acknowledge(conn, notifier, *pending.pop(0)))
            if on_ack is not None:
                on_ack(acks[-1])
            continue
        if due is None or due > until:
            break
        clock.at = max(clock.at, due)
        while notifier.step():
            pass
        moments += 1
        if next_due(conn) == due:  # nothing moved (e.g. a delivery with no channel)
            break
    clock.at = max(clock.at, until)
    return moments


def _acknowledge(conn: psycopg.Connection, notifier: Notifier, at: datetime,
                 e: AlertEvent) -> Acked:
    """The duty officer acknowledges as the console does (the API's call), then the
    notifier's round at that moment stops the escalation (escalation.stop_settled)."""
    writes.acknowledge(conn, e.alert_id, user=ACK_USER,
                       note="值班员已确认，正在组织巡查 (the demo's duty officer)")
    while notifier.step():
        pass
    row = conn.execute("SELECT tier, stopped_at, stopped_by FROM escalations "
                       "WHERE alert_id = %s", (e.alert_id,)).fetchone()
    tier, stopped_at, stopped_by = row if row else (0, None, None)
    return Acked(e.alert_id, e.target_id, e.hazard_kind, int(e.level), at, e.data_time,
                 ACK_USER, int(tier), stopped_at, stopped_by)


def readings_expected(msgs: Sequence[SimMessage]) -> int:
    return int(np.sum([len(m.expected) for m in msgs]))
