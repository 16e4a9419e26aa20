"""The notifier: plans outbox events into deliveries and sends them, exactly once.

One step (`step`) does, each in its own short transactions:
1. plan: claim outbox rows (SKIP LOCKED), load their context, insert the planned deliveries,
   write the CAP document, start escalation, mark the outbox row done; one transaction per
   batch, so an event is planned exactly once whoever crashes;
2. escalate: due escalations add reminder deliveries (notify/escalation.py);
3. send: claim due deliveries (committed as 'sending' before any provider call), ask the
   provider first about any that a dead attempt may have sent, send the rest, record each.

Several notifiers may run at once (distinct --name). A notifier restarted under its old name
reconciles the rows it held at once; others wait for the lease to run out.

Crash testing: GEOWARN_NOTIFY_CRASH_AT="after_accept:7" kills this process with SIGKILL at
the 7th provider acceptance before it is recorded (also before_send, after_record).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from alerts.lifecycle import outbox
from geowarn.settings import get_settings
from notify import context, deliveries, escalation, exercises, messages, people
from notify.cap_feed import write_cap
from notify.channels.base import Channel, Outgoing
from notify.deliveries import Claimed
from notify.drill import drill_plan
from notify.outcomes import Outcome
from notify.planner import plan
from notify.routing import RoutingTable

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]

# How long a warning stays worth sending: a stale red warning must expire rather than arrive
# hours late (the situation will have changed; a newer event will have been sent).
DEFAULT_VALIDITY = {0: timedelta(hours=6), 1: timedelta(hours=6), 2: timedelta(hours=3),
                    3: timedelta(hours=2), 4: timedelta(hours=1)}


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class _CrashHook:
    """Kill -9 this process at the n-th passage of a named point (tests only)."""

    def __init__(self, spec: str | None) -> None:
        self.point, self.n = None, 0
        if spec:
            point, _, n = spec.partition(":")
            self.point, self.n = point, int(n or 1)
        self._seen = 0
        self._lock = threading.Lock()

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        with self._lock:
            self._seen += 1
            if self._seen >= self.n:
                os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class NotifierStats:
    planned_events: int = 0
    deliveries_planned: int = 0
    sent: int = 0
    reconciled_found: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Notifier:
    def __init__(self, url: str, channels: Mapping[str, Channel], *, name: str = "notifier-1",
                 routing: RoutingTable | None = None,
                 templates: messages.Templates | None = None, clock: Clock = _wall_clock,
                 hotline: str = "12336", place_names: Mapping[str, str] | None = None,
                 lease: timedelta = timedelta(minutes=2), batch: int = 200,
                 workers: int = 4, validity: Mapping[int, timedelta] | None = None,
                 cap_unit: str | None = None) -> None:
        self.url = url
        # CAP identifiers in the national profile's form when a unit code is set
        # (notify/cap_feed.py); by default the deployment's setting.
        self.cap_unit = cap_unit if cap_unit is not None else get_settings().cap_sender_code
        self.channels = dict(channels)
        self.name = name
        self.routing = routing or RoutingTable()
        self.templates = templates or messages.Templates()
        self.clock = clock
        self.hotline = hotline
        self.place_names = dict(place_names or {})
        self.lease = lease
        self.batch = batch
        self.validity = dict(validity or DEFAULT_VALIDITY)
        self.stats = NotifierStats()
        self._crash = _CrashHook(os.environ.get("GEOWARN_NOTIFY_CRASH_AT"))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._local = threading.local()
        self._first_claim = True

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True)
            self._local.conn = conn
        return conn

    # --- 1. planning ----------------------------------------------------------------------

    def plan_once(self) -> int:
        """Plan one batch of outbox events; how many events were planned."""
        conn = self._conn()
        now = self.clock()
        with conn.transaction():
            items = outbox.claim_pending(conn, min(self.batch, 100), now=now)
            for item in items:
                ctx = context.load(conn, item, hotline=self.hotline,
                                   place_names=self.place_names)
                # An exercise's alert is a drill (notify/drill.py): participants only,
                # marked as a drill, CAP status Exercise, never escalated to real officers.
                drill = exercises.drill_of(conn, item.alert_id)
                result = (drill_plan(ctx, self.routing, self.templates, drill) if drill
                          else plan(ctx, self.routing, self.templates))
                valid_until = now + self.validity.get(int(item.level), timedelta(hours=6))
                n = deliveries.insert_planned(conn, item.event_id, item.alert_id,
                                              result.deliveries, valid_until=valid_until,
                                              now=now)
                write_cap(conn, item, ctx, now=now, unit=self.cap_unit, drill=drill)
                if drill is None:
                    escalation.on_event(conn, item, self.routing, now=now)
                outbox.mark_sent(conn, item.id, now=now)
                self.stats.planned_events += 1
                self.stats.deliveries_planned += n
                if result.skipped:
                    log.info("alert %s event %s (%s): nothing sent: %s", item.alert_id,
                             item.event_id, item.event_kind, result.skipped)
                if result.unplaced:
                    log.warning("alert %s: %d households have no shelter place; officers told",
                                item.alert_id, len(result.unplaced))
        return len(items)

    # --- 3. sending -----------------------------------------------------------------------

    def send_once(self) -> int:
        """Claim and send one batch of due deliveries; how many were handled."""
        conn = self._conn()
        own = self._first_claim
        self._first_claim = False
        claimed = deliveries.claim(conn, self.name, self.batch, lease=self.lease,
                                   now=self.clock(), reclaim_own=own)
        if not claimed:
            return 0
        # Numbers are looked up now, for this batch only (deliveries never store them).
        phones = people.phones_of(conn, [c.delivery.recipient_id for c in claimed
                                         if c.delivery.channel in ("sms", "voice")])
        list(self._pool.map(lambda c: self._handle(c, phones), claimed))
        return len(claimed)

    def _outgoing(self, c: Claimed, phones: Mapping[str, str]) -> Outgoing:
        d = c.delivery
        phone = phones.get(d.recipient_id) if d.channel in ("sms", "voice") else None
        return Outgoing(d.delivery_id, messages.tag_of(d.delivery_id), phone,
                        d.masked_phone or "-", messages.with_tag(d.body, d.delivery_id),
                        d.language, d.valid_until, self.clock(), d.recipient_id,
                        subject=f"alert {d.alert_id}")

    def _handle(self, c: Claimed, phones: Mapping[str, str]) -> None:
        d = c.delivery
        channel = self.channels.get(d.channel)
        now = self.clock()
        if channel is None:
            self._record(c, Outcome("failed", code="no_channel",
                         message=f"channel {d.channel!r} is not configured"))
            return
        msg = self._outgoing(c, phones)
        if c.uncertain:
            found = channel.lookup(msg, c.attempt_started)
            if found.answer == "found":
                self.stats.reconciled_found += 1
                self._record(c, Outcome("accepted", provider_id=found.provider_id,
                                                    state=found.state))
                return
            if found.answer == "unknown":
                self._record(c, Outcome("uncertain", code="lookup_unavailable",
                             message="the provider could not be asked; will ask again"))
                return
            if found.answer == "cannot":
                self._record(c, Outcome("failed", code="uncertain",
                             message="an earlier attempt may have been sent and this channel "
                             "cannot be asked: not resent"))
                return
        if d.valid_until <= now:
            self._record(c, Outcome("expired", code="expired",
                                                message="validity period passed"))
            return
        self._crash("before_send")
        outcome = channel.send(msg)
        if outcome.kind == "accepted":
            self._crash("after_accept")
        self._record(c, outcome)
        self._crash("after_record")
        if outcome.kind == "accepted":
            self.stats.sent += 1
        if outcome.tell_officers:
            log.warning("delivery %s to %s (%s): %s %s", d.delivery_id, d.masked_phone,
                        d.recipient_id, outcome.code, outcome.message)

    def _record(self, c: Claimed, outcome: Outcome) -> None:
        self.stats.outcomes[outcome.kind] = self.stats.outcomes.get(outcome.kind, 0) + 1
        deliveries.record(self._conn(), c.delivery.delivery_id, self.name, outcome,
                          now=self.clock(), attempts=c.delivery.attempts)

    # --- the loop -------------------------------------------------------------------------

    def step(self) -> int:
        planned = self.plan_once()
        escalated = escalation.run_due(self._conn(), self.routing, self.templates,
                                       now=self.clock(), hotline=self.hotline)
        sent = self.send_once()
        return planned + escalated + sent

    def run(self, stop: threading.Event, *, idle_wait_s: float = 1.0) -> None:
        """Until `stop` is set: steps back to back while there is work; when idle, waits for
        a new outbox row (LISTEN geowarn_outbox, woken by the migration's trigger) or the
        next due retry/escalation, at most `idle_wait_s`."""
        listen: psycopg.Connection | None = None
        while not stop.is_set():
            try:
                if listen is None or listen.closed:
                    listen = psycopg.connect(self.url, autocommit=True)
                    listen.execute("LISTEN geowarn_outbox")
                busy = self.step()
                if not busy:
                    for _ in listen.notifies(timeout=idle_wait_s, stop_after=1):
                        pass
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying", exc)
                self._local.conn = None
                listen = None
                stop.wait(idle_wait_s)
        if listen is not None:
            listen.close()
