"""What the gateway's writer thread does between batches, each at its own interval: send
queued device commands, watch the group's peers (takeover), save and log the counters, and
give memory back after a backlog drained. One thread does it all, so none of it races the
commits for the writer's database connection."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import psycopg

from devices import commands as device_commands
from ingest.db_link import DatabaseLink
from ingest.gateway_config import GatewayConfig
from ingest.inbox import Inbox, release_free_heap
from ingest.mqtt_client import GatewayConnection, MqttError
from ingest.progress import PipelineProgress
from ingest.stats import IngestStats, summary_line
from ingest.takeover import PeerTakeover

log = logging.getLogger("ingest.gateway")  # the gateway's log, as before the split
_TRIM_AFTER_BYTES = 4 * 1024 * 1024  # a drained backlog this large gives memory back


class Housekeeping:
    def __init__(self, config: GatewayConfig, link: DatabaseLink, stats: IngestStats,
                 progress: PipelineProgress, inbox: Inbox, mqtt: GatewayConnection,
                 takeover: PeerTakeover | None) -> None:
        self.config = config
        self.link = link
        self.stats = stats
        self.progress = progress
        self.inbox = inbox
        self.mqtt = mqtt
        self.takeover = takeover
        self._last_stats = time.monotonic()
        self._last_log = time.monotonic()
        self._logged: dict[str, Any] | None = None  # the snapshot of the last summary line
        self._last_commands = 0.0
        self._last_peer_check = 0.0
        self._held_peak = 0  # most message bytes held since memory was last given back

    def step(self) -> None:
        self.dispatch_commands()
        self.check_peers()
        self.flush_stats()
        self.give_back_memory()

    def give_back_memory(self) -> None:
        """After a backlog drained, return freed heap to the OS: glibc keeps freed blocks of
        its per-thread arenas, so a burst would otherwise stay in RSS (measured: +57 MiB after
        60 MiB of messages with a large bound; tests/test_ingest_memory.py)."""
        held = self.inbox.held_bytes
        self._held_peak = max(self._held_peak, held)
        if held == 0 and self._held_peak > _TRIM_AFTER_BYTES:
            self._held_peak = 0
            release_free_heap()

    def check_peers(self) -> None:
        if self.takeover is None or time.monotonic() - self._last_peer_check < 1.0:
            return
        self._last_peer_check = time.monotonic()
        self.takeover.step()
        self.stats.add("peers_adopted", len(self.takeover.adopted)
                       - self.stats.count("peers_adopted"))

    def dispatch_commands(self) -> None:
        """Send queued device commands and time out unanswered ones, once a second."""
        if time.monotonic() - self._last_commands < 1.0 or not self.mqtt.connected.is_set():
            return
        self._last_commands = time.monotonic()
        try:
            conn = self.link.db()
            sent = device_commands.dispatch_pending(conn, self.mqtt.publish)
            expired = device_commands.expire(conn)
        except (psycopg.Error, MqttError) as exc:
            self.link.drop()
            log.warning("command dispatch postponed: %s", exc)
            return
        self.stats.add("commands_sent", len(sent))
        self.stats.add("commands_timed_out", len(expired))

    def flush_stats(self) -> None:
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
            conn = self.link.db()
            with conn.transaction():
                conn.execute(
                    "INSERT INTO ingest_stats (gateway, updated_at, started_at, counters) "
                    "VALUES (%s, now(), to_timestamp(%s), %s) ON CONFLICT (gateway) DO UPDATE "
                    "SET updated_at = now(), started_at = EXCLUDED.started_at, "
                    "counters = EXCLUDED.counters",
                    (self.config.name, self.stats.started_at, json.dumps(snapshot)))
        except psycopg.Error as exc:
            self.link.drop()
            log.debug("stats not saved: %s", exc)
