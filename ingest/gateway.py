"""The ingest gateway: MQTT in, readings committed exactly once in effect.

Threads: paho's network loop (ingest.mqtt_client) puts received messages in the inbox
(ingest.inbox), bounded in messages and in bytes (GEOWARN_GATEWAY_MEMORY_BYTES covers every
message the gateway holds until it is acknowledged); one writer thread takes batches by count,
bytes and age,
decodes them (ingest.pipeline), commits each batch in one transaction (ingest.writer) and only
then acknowledges its messages. While the database is down the writer retries with backoff and
acknowledges nothing, the broker stops sending once Receive Maximum messages are unacknowledged,
and everything else waits in the gateway's persistent session on the broker.

A message is the unit of failure (ingest.pipeline): a batch the database refuses is committed
again message by message, and a message that still fails is dead-lettered alone, so no message
can block the stream. A decoder or writer thread that dies anyway sets `failed` and stops the
gateway, and `run_forever` raises GatewayFailed: the process exits non-zero and its supervisor
restarts it. `pending_messages`/`stalled_s` in the saved counters let `geowarn health gateway`
see a pipeline that no longer advances while messages wait.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from devices import commands as device_commands
from devices.catalogue import load_catalogue
from devices.decode import decode
from devices.messages import Decoded, Reason
from devices.redaction import redact_text
from devices.text import printable
from geowarn.db import database_url
from geowarn.errors import GeoWarnError
from geowarn.settings import Settings
from ingest.deadletters import DeadLetter, write_dead_letters
from ingest.device_cache import DeviceCache
from ingest.inbox import Inbox, map_large_messages, release_free_heap
from ingest.mqtt_client import GatewayConnection, MqttError, service_client_id
from ingest.pipeline import BatchPlan, ReceivedMessage, internal_error, plan_batch
from ingest.progress import PipelineProgress
from ingest.stats import IngestStats, summary_line
from ingest.takeover import PeerTakeover
from ingest.writer import BatchWriter, CommitResult

log = logging.getLogger(__name__)

NATIVE_TOPICS = ("gw/v1/+/telemetry", "gw/v1/+/status", "gw/v1/+/presence", "gw/v1/+/reply/+")
# National devices' topics as GeoWarn's Mosquitto plugin rewrites them (bound to the device).
# $dp carries the broker's receive time as the last level (the time of untimestamped values);
# gw/nat/+/dp without it is what earlier builds of the plugin wrote.
NATIONAL_TOPICS = ("gw/nat/+/dp/+", "gw/nat/+/dp", "gw/nat/+/dr", "gw/nat/+/crsp/+")
# The raw national topics, for brokers without the plugin (development): Mosquitto does not
# deliver "$" topics to shared subscriptions, so these are subscribed unshared.
NATIONAL_RAW_TOPICS = ("$dp", "$dp/+", "$dr", "$dr/+", "$crsp/+")
STORAGE_ERROR = Reason.STORAGE_ERROR
T = TypeVar("T")
MAX_ADOPTED = 3  # dead peers one gateway serves at most
# Room kept outside the inbox's byte budget, in messages of the largest size: paho's read
# buffer (it grows by doubling, so up to two), the message waiting for room in the inbox, the
# decoder's text of one message and its parse, and allocator slack, with a margin (measured
# with 1 MiB messages: tests/test_ingest_memory.py). GEOWARN_GATEWAY_MEMORY_BYTES bounds all.
_TRANSIENT_MESSAGES = 8
_TRIM_AFTER_BYTES = 4 * 1024 * 1024  # a drained backlog this large gives memory back


class GatewayStopping(Exception):
    """Raised inside the writer when asked to stop while waiting for the database."""


class GatewayFailed(GeoWarnError):
    """A gateway thread died; the process must exit so that its supervisor restarts it."""


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    group: str | None
    host: str
    port: int
    username: str | None
    password: str | None
    inflight: int
    batch_messages: int
    batch_seconds: float
    keepalive: int
    max_payload: int
    max_clock_skew_s: float
    max_backlog_days: float
    duplicate_seq_window: timedelta
    stats_interval_s: float = 10.0  # counters saved to ingest_stats (`geowarn health`)
    log_interval_s: float = 60.0  # a one-line summary in the log (full JSON at debug level)
    # A peer of the group silent this long, whose instance lock is free, is adopted.
    takeover_after: timedelta = timedelta(seconds=15)
    # False: MQTT 3.1.1 for brokers without MQTT 5 (the demo's in-process amqtt broker). Such
    # brokers have no shared subscriptions either, so run one gateway with group=None there.
    mqtt5: bool = True
    # Message bytes the gateway holds at most, from receipt to acknowledgement.
    memory_bytes: int = 64 * 1024 * 1024
    # A peer silent this long is forgotten; one being served has its session retired.
    peer_expiry: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.memory_bytes < 2 * _TRANSIENT_MESSAGES * self.max_payload:
            from geowarn.errors import ConfigurationError

            raise ConfigurationError(
                f"GEOWARN_GATEWAY_MEMORY_BYTES ({self.memory_bytes}) must be at least "
                f"{2 * _TRANSIENT_MESSAGES} x GEOWARN_MAX_PAYLOAD_BYTES ({self.max_payload})")

    @property
    def inbox_bytes(self) -> int:
        """The inbox's byte budget: the memory bound less room for transient copies."""
        return self.memory_bytes - _TRANSIENT_MESSAGES * self.max_payload

    @property
    def batch_bytes(self) -> int:
        """A batch closes at this many payload bytes: at most four batches are alive (being
        built, two decoded and waiting, one committing), so their decoded readings, a few
        times their payload, stay a fraction of the memory bound."""
        return max(self.memory_bytes // 16, 1)

    @classmethod
    def from_settings(cls, s: Settings, **overrides: object) -> GatewayConfig:
        values: dict[str, object] = dict(
            name=s.gateway_name, group=s.gateway_group, host=s.mqtt_host, port=s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            inflight=s.gateway_inflight, batch_messages=s.gateway_batch_messages,
            batch_seconds=s.gateway_batch_ms / 1000.0, keepalive=s.mqtt_keepalive_s,
            max_payload=s.max_payload_bytes, max_clock_skew_s=s.max_clock_skew_s,
            max_backlog_days=s.max_backlog_days,
            duplicate_seq_window=timedelta(seconds=s.duplicate_seq_window_s),
            takeover_after=timedelta(seconds=s.gateway_takeover_s),
            memory_bytes=s.gateway_memory_bytes,
            peer_expiry=timedelta(seconds=s.gateway_peer_expiry_s))
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def topics(self) -> list[str]:
        topics = [*NATIVE_TOPICS, *NATIONAL_TOPICS]
        if self.group:
            # MQTT 5 shared subscriptions: the gateways of one group split the stream.
            topics = [f"$share/{self.group}/{t}" for t in topics]
        return [*topics, *NATIONAL_RAW_TOPICS]


class Gateway:
    def __init__(self, config: GatewayConfig, db_url: str | None = None) -> None:
        self.config = config
        self.db_url = db_url or database_url()
        self.stats = IngestStats()
        # The hard bound on what the gateway holds: the network thread blocks on a full inbox,
        # which stops it reading from the broker (TCP backpressure; the broker keeps the rest in
        # our session). Receive Maximum asks the broker for the same bound, but Mosquitto 2.0.11
        # was measured sending several times more unacknowledged messages while acks flowed.
        self.inbox = Inbox(config.inflight, config.inbox_bytes)
        map_large_messages()
        self.devices = DeviceCache(self._connect)
        self.writer = BatchWriter(config.name, duplicate_seq_window=config.duplicate_seq_window,
                                  max_clock_skew_s=config.max_clock_skew_s)
        self.catalogue = load_catalogue()
        self.mqtt = GatewayConnection(
            host=config.host, port=config.port,
            client_id=service_client_id(config.name, config.username), topics=config.topics,
            inbox=self.inbox, receive_maximum=config.inflight, username=config.username,
            password=config.password, keepalive=config.keepalive, mqtt5=config.mqtt5,
            stats=self.stats)
        self.takeover = (PeerTakeover(config.name, config.group, self._connect,
                                      self._adopted_connection,
                                      takeover_after=config.takeover_after,
                                      peer_expiry=config.peer_expiry,
                                      max_adopted=MAX_ADOPTED)
                         if config.group else None)
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._threads: list[threading.Thread] = []
        # Decoded batches waiting for the committer: two keep both stages busy, no more.
        self._plans: queue.Queue[tuple[list[ReceivedMessage], BatchPlan] | None] = \
            queue.Queue(maxsize=2)
        self._last_stats = time.monotonic()
        self._last_log = time.monotonic()
        self._logged: dict[str, Any] | None = None  # the snapshot of the last summary line
        self._last_commands = 0.0
        self._last_peer_check = 0.0
        self.progress = PipelineProgress()
        self.failed: BaseException | None = None
        self._held_peak = 0  # most message bytes held since memory was last given back

    # --- lifecycle ---------------------------------------------------------------------------
    def _adopted_connection(self, peer: str) -> GatewayConnection:
        c = self.config
        return GatewayConnection(
            host=c.host, port=c.port, client_id=service_client_id(peer, c.username),
            topics=c.topics, inbox=self.inbox, receive_maximum=c.inflight,
            username=c.username, password=c.password, keepalive=c.keepalive, mqtt5=c.mqtt5,
            adopted=True, stats=self.stats)

    def start(self) -> None:
        self._retry(self.devices.refresh, "loading the device registry")
        if self.takeover is not None:
            # Alive before connecting, so no peer adopts the session we are about to use.
            self._retry(self.takeover.heartbeat, "announcing the gateway")
        self.mqtt.start()
        self._threads = [
            threading.Thread(target=self._guarded, args=(self._decode_loop,),
                             name="ingest-decoder", daemon=True),
            threading.Thread(target=self._guarded, args=(self._commit_loop,),
                             name="ingest-writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.close()  # wakes a network thread blocked on a full inbox
        self.mqtt.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.takeover is not None:
            self.takeover.close()
        if self._conn is not None:
            self._conn.close()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()
        if self.failed is not None:
            raise GatewayFailed(f"gateway thread died: {type(self.failed).__name__}: "
                                f"{printable(redact_text(str(self.failed)), 300)}")

    def _guarded(self, loop: Callable[[], None]) -> None:
        """Run a pipeline thread; if it dies, stop the whole gateway rather than keep a
        process that looks alive while nothing is ingested."""
        try:
            loop()
        except BaseException as exc:
            log.critical("%s died (%s); stopping the gateway", threading.current_thread().name,
                         type(exc).__name__, exc_info=exc)
            self.failed = exc
            self._stop.set()

    # --- the writer thread -------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        # Autocommit: every unit of work opens its own `conn.transaction()`, so nothing is
        # left in an implicit transaction that would turn the next block into a savepoint.
        return psycopg.connect(self.db_url, connect_timeout=5, autocommit=True)

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _decode(self, topic: str, payload: bytes, now: datetime) -> Decoded:
        return decode(topic, payload, now=now, lookup=self.devices.get,
                      catalogue=self.catalogue, max_payload=self.config.max_payload,
                      max_clock_skew_s=self.config.max_clock_skew_s,
                      max_backlog_days=self.config.max_backlog_days)

    def _plan(self, batch: list[ReceivedMessage]) -> BatchPlan:
        # A registry lookup that cannot reach the database is retried, not dead-lettered.
        return plan_batch(batch, self._decode, reraise=(psycopg.Error,))

    def _next_batch(self) -> list[ReceivedMessage]:
        first = self.inbox.get(timeout=0.5)
        if first is None:
            return []
        batch = [first]
        size = len(first.payload)
        deadline = time.monotonic() + self.config.batch_seconds
        while len(batch) < self.config.batch_messages and size < self.config.batch_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message = self.inbox.get(timeout=remaining)
            if message is None:
                break
            batch.append(message)
            size += len(message.payload)
        return batch

    def _decode_loop(self) -> None:
        """Stage 1: take batches from the inbox and decode them, while stage 2 commits the
        previous one (psycopg releases the GIL while it waits for the server)."""
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                self.stats.queue_depth = self.inbox.qsize()
                if not batch:
                    self._plans.put(None)  # lets the committer do its periodic work
                    continue
                self.stats.add("messages_received", len(batch))
                self.progress.taken(len(batch))
                plan = self._retry(lambda b=batch: self._plan(b),  # type: ignore[misc]
                                   "decoding a batch", drop=False)
                self._plans.put((batch, plan))
        except GatewayStopping:
            pass
        finally:
            self._plans.put(None)

    def _commit_loop(self) -> None:
        """Stage 2: commit decoded batches in order, then acknowledge them."""
        try:
            while not (self._stop.is_set() and self._plans.empty()):
                try:
                    item = self._plans.get(timeout=0.5)
                except queue.Empty:
                    item = None
                if item is not None:
                    self._commit(*item)
                self._maybe_dispatch_commands()
                self._maybe_check_peers()
                self._maybe_flush_stats()
                self._maybe_give_back_memory()
                if self.mqtt.finished.is_set() and not self._stop.is_set():
                    # paho's network thread ended without being asked to: nothing more
                    # arrives, so the process must go and be restarted.
                    raise GatewayFailed("the MQTT network thread stopped")
        except GatewayStopping:
            # Stopped while the database was away: nothing was acknowledged, the broker
            # redelivers the batch to the next gateway session.
            log.info("stopped with an uncommitted batch; it will be redelivered")

    def _commit(self, batch: list[ReceivedMessage], plan: BatchPlan) -> None:
        if self._stop.is_set() and not self.mqtt.connected.is_set():
            raise GatewayStopping("broker gone while stopping")
        now = datetime.now(UTC)
        started = time.perf_counter()
        try:
            result = self._retry(lambda: self.writer.commit(self._db(), plan, now),
                                 "committing a batch")
        except GatewayStopping:
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, message by message
            # Not a connection problem: something in this batch cannot be stored. Store
            # message by message so one bad message cannot block the stream.
            log.error("batch of %d messages failed (%s); committing one by one", len(batch),
                      type(exc).__name__)
            for message in batch:
                self._process_single(message)
            self._ack(batch)
            self.stats.add("batches_committed_messages", len(batch))
            return
        self.stats.batch(len(batch), time.perf_counter() - started,
                         (datetime.now(UTC) - min(m.received_at for m in batch)).total_seconds())
        self._count(plan.dead_letters, result)
        self._ack(batch)
        self.stats.add("batches_committed_messages", len(batch))

    def _ack(self, batch: list[ReceivedMessage]) -> None:
        tokens = [m.token for m in batch]
        self.mqtt.ack(tokens)
        if self.takeover is not None:
            self.takeover.ack(tokens)
        self.progress.acknowledged(len(batch))
        self.inbox.release(batch)

    def _count(self, letters: list[DeadLetter], result: CommitResult) -> None:
        self.stats.add("readings_stored", result.stored)
        self.stats.add("readings_duplicate", result.duplicates)
        self.stats.add("messages_duplicate", result.duplicate_messages)
        self.stats.add("dead_letters", result.dead_letters)
        for letter in [*letters, *result.writer_letters]:
            self.stats.reject(letter.reason)

    def _process_single(self, message: ReceivedMessage) -> None:
        """Commit one message on its own; if the database (or the writer) still refuses it,
        dead-letter it with the exception class and a bounded, redacted message."""
        plan = self._retry(lambda: self._plan([message]), "decoding a message", drop=False)
        try:
            result = self._retry(
                lambda: self.writer.commit(self._db(), plan, datetime.now(UTC)),
                "committing a message")
            self._count(plan.dead_letters, result)
            return
        except GatewayStopping:
            raise
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            letter = DeadLetter(
                topic=message.topic, reason=STORAGE_ERROR,
                detail=f"the database refused the message: {type(exc).__name__}: "
                       f"{printable(redact_text(first), 300)}",
                payload=message.payload, received_at=message.received_at)
        except Exception as exc:  # noqa: BLE001 - the message is the unit of failure
            letter = internal_error(message, exc, "storing")
        try:
            self._retry(lambda: self._store_letter(letter), "dead-lettering")
        except GatewayStopping:
            raise
        except Exception as exc:  # noqa: BLE001 - acknowledged anyway: it must not block
            log.error("could not dead-letter a message on %s (%s); dropped",
                      printable(message.topic, 120), type(exc).__name__)
            self.stats.add("messages_dropped")
        self.stats.reject(letter.reason)

    def _store_letter(self, letter: DeadLetter) -> None:
        conn = self._db()
        with conn.transaction():
            write_dead_letters(conn, [letter], gateway=self.config.name)

    def _retry(self, action: Callable[[], T], what: str, *, drop: bool = True) -> T:
        """Run `action` until it succeeds, backing off with jitter while the database is
        unreachable. Other database errors are raised to the caller."""
        attempt = 0
        while True:
            try:
                return action()
            except psycopg.OperationalError as exc:
                if drop:  # only the committer's own connection; the decoder has none
                    self._drop_connection()
                attempt += 1
                delay = random.uniform(0.05, min(5.0, 0.1 * 2 ** min(attempt, 10)))
                self.stats.add("database_retries")
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("%s: database unavailable (%s); retry %d in %.2fs",
                            what, first_line, attempt, delay)
                if self._stop.wait(delay):
                    raise GatewayStopping(what) from exc
            except Exception:
                if drop:  # the connection may be mid-transaction or broken
                    self._drop_connection()
                raise

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _maybe_give_back_memory(self) -> None:
        """After a backlog drained, return freed heap to the OS: glibc keeps freed blocks of
        its per-thread arenas, so a burst would otherwise stay in RSS (measured: +57 MiB after
        60 MiB of messages with a large bound; tests/test_ingest_memory.py)."""
        held = self.inbox.held_bytes
        self._held_peak = max(self._held_peak, held)
        if held == 0 and self._held_peak > _TRIM_AFTER_BYTES:
            self._held_peak = 0
            release_free_heap()

    def _maybe_check_peers(self) -> None:
        if self.takeover is None or time.monotonic() - self._last_peer_check < 1.0:
            return
        self._last_peer_check = time.monotonic()
        self.takeover.step()
        self.stats.add("peers_adopted", len(self.takeover.adopted)
                       - self.stats.count("peers_adopted"))

    def _maybe_dispatch_commands(self) -> None:
        """Send queued device commands and time out unanswered ones, once a second."""
        if time.monotonic() - self._last_commands < 1.0 or not self.mqtt.connected.is_set():
            return
        self._last_commands = time.monotonic()
        try:
            conn = self._db()
            sent = device_commands.dispatch_pending(conn, self.mqtt.publish)
            expired = device_commands.expire(conn)
        except (psycopg.Error, MqttError) as exc:
            self._drop_connection()
            log.warning("command dispatch postponed: %s", exc)
            return
        self.stats.add("commands_sent", len(sent))
        self.stats.add("commands_timed_out", len(expired))

    def _maybe_flush_stats(self) -> None:
        """Save the counters every stats interval; log the summary line every log interval."""
        now = time.monotonic()
        save = now - self._last_stats >= self.config.stats_interval_s
        say = now - self._last_log >= self.config.log_interval_s
        if not (save or say):
            return
        self.stats.queue_depth = self.inbox.qsize()
        snapshot = {**self.stats.snapshot(), **self.progress.report(self.inbox.qsize())}
        if say:
            self._last_log = now
            log.info("%s: %s", self.config.name, summary_line(self._logged, snapshot))
            self._logged = snapshot
        if not save:
            return
        self._last_stats = now
        log.debug("ingest stats %s", json.dumps(snapshot, sort_keys=True))
        try:
            conn = self._db()
            with conn.transaction():
                conn.execute(
                    "INSERT INTO ingest_stats (gateway, updated_at, started_at, counters) "
                    "VALUES (%s, now(), to_timestamp(%s), %s) ON CONFLICT (gateway) DO UPDATE "
                    "SET updated_at = now(), started_at = EXCLUDED.started_at, "
                    "counters = EXCLUDED.counters",
                    (self.config.name, self.stats.started_at, json.dumps(snapshot)))
        except psycopg.Error as exc:
            self._drop_connection()
            log.debug("stats not saved: %s", exc)


