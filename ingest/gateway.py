"""The ingest gateway: MQTT in, readings committed exactly once in effect.

Threads: paho's network loop (ingest.mqtt_client) puts received messages in the inbox
(ingest.inbox), bounded in messages and in bytes (GEOWARN_GATEWAY_MEMORY_BYTES covers every
message the gateway holds until it is acknowledged); one writer thread takes batches by count,
bytes and age (group commit: a batch gathers messages for up to GEOWARN_GATEWAY_BATCH_MS only
while the previous batch is still being committed; with the committer idle it goes at once
with what has arrived, so a lone message does not wait for a window that saves nothing),
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

Around it: its configuration and topics (ingest.gateway_config), the writer's database
connection and retry loop (ingest.db_link), and the writer's periodic work between batches:
device commands, peers, counters, memory (ingest.housekeeping).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from devices.catalogue import load_catalogue
from devices.decode import decode
from devices.messages import Decoded, Reason
from devices.redaction import redact_text
from devices.text import printable
from geowarn.db import database_url
from geowarn.errors import GeoWarnError
from ingest.db_link import DatabaseLink, GatewayStopping
from ingest.deadletters import DeadLetter, write_dead_letters
from ingest.device_cache import DeviceCache
from ingest.gateway_config import GatewayConfig
from ingest.housekeeping import Housekeeping
from ingest.inbox import Inbox, map_large_messages
from ingest.mqtt_client import GatewayConnection, service_client_id
from ingest.pipeline import BatchPlan, ReceivedMessage, internal_error, plan_batch
from ingest.progress import PipelineProgress
from ingest.stats import IngestStats
from ingest.takeover import PeerTakeover
from ingest.writer import BatchWriter, CommitResult

__all__ = ["Gateway", "GatewayConfig", "GatewayFailed", "GatewayStopping"]

log = logging.getLogger(__name__)

STORAGE_ERROR = Reason.STORAGE_ERROR
MAX_ADOPTED = 3  # dead peers one gateway serves at most


class GatewayFailed(GeoWarnError):
    """A gateway thread died; the process must exit so that its supervisor restarts it."""


class Gateway:
    def __init__(self, config: GatewayConfig, db_url: str | None = None) -> None:
        self.config = config
        self.db_url = db_url or database_url()
        self.stats = IngestStats()
        self._stop = threading.Event()
        self.link = DatabaseLink(self.db_url, self._stop, self.stats)
        # The hard bound on what the gateway holds: the network thread blocks on a full inbox,
        # which stops it reading from the broker (TCP backpressure; the broker keeps the rest in
        # our session). Receive Maximum asks the broker for the same bound, but Mosquitto 2.0.11
        # was measured sending several times more unacknowledged messages while acks flowed.
        self.inbox = Inbox(config.inflight, config.inbox_bytes)
        map_large_messages()
        self.devices = DeviceCache(self.link.connect)
        self.writer = BatchWriter(config.name, duplicate_seq_window=config.duplicate_seq_window,
                                  max_clock_skew_s=config.max_clock_skew_s)
        self.catalogue = load_catalogue()
        self.mqtt = GatewayConnection(
            host=config.host, port=config.port,
            client_id=service_client_id(config.name, config.username), topics=config.topics,
            inbox=self.inbox, receive_maximum=config.inflight, username=config.username,
            password=config.password, keepalive=config.keepalive, mqtt5=config.mqtt5,
            stats=self.stats)
        self.takeover = (PeerTakeover(config.name, config.group, self.link.connect,
                                      self._adopted_connection,
                                      takeover_after=config.takeover_after,
                                      peer_expiry=config.peer_expiry,
                                      max_adopted=MAX_ADOPTED)
                         if config.group else None)
        self._threads: list[threading.Thread] = []
        # Decoded batches waiting for the committer: two keep both stages busy, no more.
        self._plans: queue.Queue[tuple[list[ReceivedMessage], BatchPlan] | None] = \
            queue.Queue(maxsize=2)
        self.progress = PipelineProgress()
        self._committing = 0  # batches handed to the committer and not yet committed
        self._committing_lock = threading.Lock()
        self.failed: BaseException | None = None
        self.housekeeping = Housekeeping(config, self.link, self.stats, self.progress,
                                         self.inbox, self.mqtt, self.takeover)

    # --- lifecycle ---------------------------------------------------------------------------
    def _adopted_connection(self, peer: str) -> GatewayConnection:
        c = self.config
        return GatewayConnection(
            host=c.host, port=c.port, client_id=service_client_id(peer, c.username),
            topics=c.topics, inbox=self.inbox, receive_maximum=c.inflight,
            username=c.username, password=c.password, keepalive=c.keepalive, mqtt5=c.mqtt5,
            adopted=True, stats=self.stats)

    def start(self) -> None:
        self.link.retry(self.devices.refresh, "loading the device registry")
        if self.takeover is not None:
            # Alive before connecting, so no peer adopts the session we are about to use.
            self.link.retry(self.takeover.heartbeat, "announcing the gateway")
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
        self.inbox.close()  # a message still arriving is refused (not acked: redelivered)
        self.mqtt.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.takeover is not None:
            self.takeover.close()
        self.link.close()

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
            # More messages are gathered only while the committer is busy: an idle one
            # takes this batch now (a wait would add to every lone message's latency and
            # save no commit).
            message = self.inbox.get(timeout=remaining, unless=self._committer_idle)
            if message is None:
                break
            batch.append(message)
            size += len(message.payload)
        return batch

    def _committer_idle(self) -> bool:
        return self._committing == 0

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
                plan = self.link.retry(lambda b=batch: self._plan(b),  # type: ignore[misc]
                                   "decoding a batch", drop=False)
                with self._committing_lock:  # before the committer can take it
                    self._committing += 1
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
                    with self._committing_lock:
                        self._committing -= 1
                    self.inbox.wake()  # a batch being gathered may go now
                self.housekeeping.step()
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
            result = self.link.retry(lambda: self.writer.commit(self.link.db(), plan, now),
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
        plan = self.link.retry(lambda: self._plan([message]), "decoding a message", drop=False)
        try:
            result = self.link.retry(
                lambda: self.writer.commit(self.link.db(), plan, datetime.now(UTC)),
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
            self.link.retry(lambda: self._store_letter(letter), "dead-lettering")
        except GatewayStopping:
            raise
        except Exception as exc:  # noqa: BLE001 - acknowledged anyway: it must not block
            log.error("could not dead-letter a message on %s (%s); dropped",
                      printable(message.topic, 120), type(exc).__name__)
            self.stats.add("messages_dropped")
        self.stats.reject(letter.reason)

    def _store_letter(self, letter: DeadLetter) -> None:
        conn = self.link.db()
        with conn.transaction():
            write_dead_letters(conn, [letter], gateway=self.config.name)
