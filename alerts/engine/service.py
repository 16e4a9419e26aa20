"""`geowarn engine`: the warning engine as a service around the pure tick.

One `Engine.step(now)` = load the readings newer than each channel's watermark, run
alerts.engine.tick.tick, and in ONE transaction apply the resulting level changes through the alert
lifecycle (idempotent) and save the engine state. A crash therefore loses neither or both;
after a restart the state comes back from the database, the rings are refilled from the
readings store, and re-evaluating the unprocessed readings yields the same changes, which the
lifecycle recognises as replays.

Clocks (`EngineConfig.clock`): "wall" judges silence and regional validity at the wall clock
(production); "data" at the newest reading time seen (a simulator or a backlog replayed through
the broker); a caller that drives `step(now=...)` itself is a replay clock.

Triggers: after every ingest commit (LISTEN geowarn_readings, read on its own thread:
alerts/engine/listener.py; the payload names the channels
or says "*") and on a periodic tick for silence, dwell, regional validity and auto-resolve.
A step's work follows what changed, not the registry: it loads the notified channels only
(their late readings from each one's own arrival mark, alerts/engine/arrival.py), saves
only the state rows that changed (alerts/engine/state.py), and searches the whole
registry for unjudged readings only on start, for "*", on a replay step and every
`search_period_s` (alerts/engine/data.py `channels_with_new_readings`, server-side).
One active engine at a time: the leader holds pg_try_advisory_lock on a dedicated session; a
standby retries every `standby_poll_s` and takes over when that session ends. Partitioned
(`EngineConfig.partition`, `geowarn engine --partitions N`): an Engine judges one partition's
channels (alerts/engine/partitions.py) and auto-resolves only its own targets' alerts; which
process leads which partition is alerts/engine/leadership.py.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import psycopg

from alerts.engine import arrival, disp_late, late_series, registry_delta
from alerts.engine import data as engine_data
from alerts.engine import state as engine_state
from alerts.engine.field_reports import FieldReportFloors
from alerts.engine.listener import Listener
from alerts.engine.partitions import Partition
from alerts.engine.rules import resolve
from alerts.engine.tick import EngineState, Setup, build_setup, fill_memory, tick
from alerts.engine.tick_setup import GROUPS, Samples
from alerts.lifecycle.writes import AlertEvent, LevelChange, apply_changes, auto_resolve
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput

log = logging.getLogger(__name__)
_LEADER_KEY = 0x6765_6F77_6172_6E45  # GeoWarn's own advisory-lock key for the engine


@dataclass(frozen=True)
class EngineConfig:
    name: str = "engine"
    clock: Literal["wall", "data"] = "wall"
    period_s: float = 30.0
    quiet_s: float = 6 * 3600.0  # auto-resolve after this long cleared (data time)
    standby_poll_s: float = 2.0
    # Wall clock only: a channel the engine has never judged starts this far back. Every
    # sample is judged in its own round, so judging a year of history on a first start
    # would take hours; a week covers the longest window (72 h rain) with room.
    backfill_s: float = 7 * 86400.0
    # New readings arrive by NOTIFY (the gateway sends one with every commit); this often
    # a periodic tick also searches the whole registry for unjudged readings, a safety net
    # for writers that do not notify. It costs one index probe per channel on the server,
    # so it is not done on every periodic tick.
    search_period_s: float = 300.0
    partition: Partition = Partition()  # the part of the registry this engine judges

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "data"):
            raise InvalidInput(f"engine clock must be 'wall' or 'data', got {self.clock!r}")
        if not (self.period_s > 0 and self.quiet_s > 0 and self.standby_poll_s > 0
                and self.backfill_s > 0 and self.search_period_s > 0):
            raise InvalidInput("engine period, quiet, standby poll, backfill and search "
                               "period must be positive")


class Engine:
    """The engine on one database connection (not thread-safe: one thread drives it)."""

    def __init__(self, db_url: str, config: EngineConfig = EngineConfig()) -> None:  # noqa: B008
        self.db_url = db_url
        self.config = config
        self.conn = psycopg.connect(db_url)
        self.setup: Setup
        self.state: EngineState
        self.clock = -math.inf
        self.saved: engine_state.Saved  # what the database holds: the next save diffs it
        self.regional = engine_data.RegionalFloors()
        self.reports = FieldReportFloors()
        self.known: registry_delta.Known  # what the setup was built from (set by load())
        self.arrivals: arrival.ArrivalMarks  # per channel, up to where late ones were looked for
        self.rejudge = np.zeros(0, np.int64)  # rain rows a restart found late readings for
        self.redo = Samples.empty()  # series samples a restart cut from the refilled rings
        self.registry: set[int] = set()  # every channel id, this partition's or not
        self.load()

    def close(self) -> None:
        self.conn.close()

    def load(self) -> None:
        """(Re)build the setup from the registry and rules, restore the saved state and refill
        the rings from the readings store."""
        with self.conn.transaction():
            mark = arrival.take(self.conn)  # before any read of readings
            self.known, channels = registry_delta.known_now(self.conn, self.config.partition)
            self.registry = set(self.known.every)
            params = resolve(channels, self.known.overrides)
            self.setup = build_setup(channels, params, windows=self.known.windows)
            restored = engine_state.restore(self.conn, self.config.name, self.setup)
            self.state = restored.state
            self.saved = restored.saved
            # Late readings may have arrived since the last committed step: the refilled
            # rings hold them, and the first step judges their rain channels again, as a
            # live engine would have (alerts/engine/late.py; judging a channel again whose
            # sums did not change changes nothing).
            # Every channel from the oldest saved arrival mark on (alerts/engine/arrival.py).
            since = arrival.restored(self.conn, self.config.name) or mark
            fill_memory(self.setup, self.state,
                        engine_data.load_memory(self.conn, self.setup, self.state))
            late = engine_data.load_late(self.conn, self.setup, self.state, since)
            self.arrivals = arrival.ArrivalMarks.looked_at_all(self.setup, mark)
            rain = np.unique(late.ch)
            self.rejudge = rain[self.setup.group_of[rain] == GROUPS.index("rainfall")]
            # Series channels are judged again from their oldest late reading on.
            self.redo = late_series.cut_refilled(self.setup, self.state, late)
            self.clock = restored.clock if restored.clock is not None else -math.inf
        log.info("engine %s: %d channels, %d targets, clock %s", self.config.name,
                 self.setup.n, len(self.setup.targets), clock_text(self.clock))

    def reload_if_changed(self) -> bool:
        """Apply what changed in the registry and rules since the last look, at the cost of
        what changed (alerts/engine/registry_delta.py); True if anything did."""
        try:
            with self.conn.transaction():
                known, change = registry_delta.find_change(self.conn, self.known, self.setup,
                                                           self.config.partition)
                if change is None:
                    self.known = known
                    return False
                oldest = datetime.fromtimestamp(self.arrivals.oldest(), UTC)
                done = registry_delta.apply(self.conn, self.config.name, self.setup,
                                            self.state, self.saved, change, self.rejudge,
                                            oldest)
        except registry_delta.Unspliceable as exc:
            log.warning("engine %s: registry change reloads everything (cannot splice %s)",
                        self.config.name, exc)
            self.load()
            return True
        self.setup, self.state, self.saved = done.setup, done.state, done.saved
        self.arrivals = self.arrivals.remapped(done.setup)
        self.known, self.registry, self.rejudge = known, set(known.every), done.rejudge
        log.info("engine %s: registry change, %d channels (%d reloaded, %d removed)",
                 self.config.name, done.setup.n, len(done.reloaded), len(done.removed))
        return True

    def step(self, now: float | None = None, channel_ids: set[int] | None = None,
             periodic: bool = False) -> list[AlertEvent]:
        """One tick. `now` (seconds) drives a replay clock; else the configured clock.
        `channel_ids`: the channels with new readings (from NOTIFY); None: find them."""
        if channel_ids is not None and not channel_ids <= self.registry:
            self.reload_if_changed()  # a channel the setup does not know: the registry changed
        try:
            with self.conn.transaction():
                mark = arrival.take(self.conn)  # before any read of readings
                until = now if now is not None else (
                    time.time() if self.config.clock == "wall" else math.inf)
                since = (until - self.config.backfill_s
                         if self.config.clock == "wall" and now is None else -math.inf)
                index = self.setup.index
                which = (engine_data.channels_with_new_readings(
                    self.conn, self.config.name, self.setup, until, since)
                    if channel_ids is None else sorted(index[c] for c in channel_ids
                                                       if c in index))
                samples = engine_data.load_samples(self.conn, self.setup, self.state, until,
                                                   which, since)
                # Readings that arrived since each channel's last look, behind the watermark
                # (a backlog after live reports): by arrival, not data time. The notified
                # channels only, or all.
                looked = None if channel_ids is None else which
                samples = engine_data.merge_samples(samples, engine_data.load_late(
                    self.conn, self.setup, self.state, self.arrivals.at, looked))
                arrivals = self.arrivals.after(looked, mark)
                samples = engine_data.merge_samples(samples, self.redo)
                # Late displacement readings are judged again from the store's readings.
                samples = engine_data.merge_samples(samples, engine_data.load_spans(
                    self.conn, self.setup, disp_late.plan(self.setup, self.state, samples)))
                clock = until if math.isfinite(until) else max(
                    self.clock, float(samples.t.max()) if samples.t.size else self.clock)
                clock = max(clock, self.clock)
                if not math.isfinite(clock):
                    return []  # data clock before any data: nothing to judge yet
                regional = self.regional.levels(self.conn, self.setup, clock)
                reports = self.reports.levels(self.conn, self.setup, clock)
                self.state, result = tick(self.setup, self.state, samples, clock, regional,
                                          reports, self.rejudge)
                changes = self.reports.annotate(
                    [LevelChange(**asdict(c)) for c in result.changes])
                events = self._apply(changes, clock, periodic)
                # A notified step compares only the rows its tick touched; a periodic one
                # compares every row (a safety net for anything that changed otherwise).
                saved = engine_state.save(self.conn, self.config.name, self.setup,
                                          self.state, clock, self.saved,
                                          None if periodic else result.touched)
                arrivals.save(self.conn, self.config.name)
        except Exception:
            # The tick advanced the in-memory state; the database did not: start again from
            # what was committed.
            self.conn.rollback()
            self.load()
            raise
        self.clock = clock
        self.saved = saved  # committed: the database now holds exactly this
        self.rejudge = self.rejudge[:0]
        self.redo = Samples.empty()
        self.arrivals = arrivals  # the channels looked at: their late ones up to `mark`
        return events

    def _apply(self, changes: list[LevelChange], clock: float, periodic: bool
               ) -> list[AlertEvent]:
        """Apply level changes in data-time order, auto-resolving what fell due before each
        (so a replay in big steps resolves exactly what living through it resolved), then,
        on a periodic tick, what is due at the clock."""
        quiet = timedelta(seconds=self.config.quiet_s)
        # A partition resolves only its own targets' alerts: another partition's clock may
        # lag behind this one's, and resolving for it would close an alert it re-raises.
        targets = None if self.config.partition.whole else self.setup.targets
        events: list[AlertEvent] = []
        for when in sorted({c.data_time for c in changes}):
            events += auto_resolve(self.conn, data_time=when, quiet=quiet, targets=targets)
            events += apply_changes(self.conn, [c for c in changes if c.data_time == when],
                                    engine=self.config.name)
        if periodic:
            events += auto_resolve(self.conn, data_time=datetime.fromtimestamp(clock, UTC),
                                   quiet=quiet, targets=targets)
        for e in events:
            log_event(e)
        return events


def clock_text(clock: float) -> str:
    """The engine clock for people: an ISO time, or "not started" before any data."""
    if not math.isfinite(clock):
        return "not started (no data judged yet)"
    return datetime.fromtimestamp(clock, UTC).isoformat(timespec="seconds")


def log_event(e: AlertEvent) -> None:
    """One readable line per alert event (target and level; never people or phones)."""
    level = Level(e.level)
    log.info("alert %d %s: %s %s %s -> %s at %s", e.alert_id, e.kind, e.hazard_kind,
             e.target_type, e.target_id, level.name.lower() if level else "none",
             e.data_time.astimezone(UTC).isoformat())


class Service:
    """Leader election, LISTEN and the periodic tick around an Engine."""

    def __init__(self, db_url: str, config: EngineConfig = EngineConfig()) -> None:  # noqa: B008
        self.db_url = db_url
        self.config = config
        self.leading = threading.Event()
        # Observable moments: the lock was found held by another leader (this one stands
        # by), and a new leader has caught up with what arrived while no engine ran.
        self.refused = threading.Event()
        self.caught_up = threading.Event()
        self.ticks = 0
        self.engine: Engine | None = None

    def run(self, stop: threading.Event) -> None:
        lock = psycopg.connect(self.db_url, autocommit=True)
        try:
            while not stop.is_set():
                row = lock.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_KEY,)).fetchone()
                if row and row[0]:
                    break
                self.refused.set()
                stop.wait(self.config.standby_poll_s)  # standby: the leader's session holds it
            if stop.is_set():
                return
            log.info("engine %s is the leader", self.config.name)
            self.leading.set()
            self._lead(stop, lock)
        finally:
            self.leading.clear()
            if self.engine is not None:
                self.engine.close()
            lock.close()

    def lead(self, stop: threading.Event, session: psycopg.Connection) -> None:
        """Lead until `stop` (for a caller that holds the leadership lock on `session`
        itself: alerts/engine/leadership.py); closes the engine on return."""
        try:
            self._lead(stop, session)
        finally:
            if self.engine is not None:
                self.engine.close()
                self.engine = None

    def _lead(self, stop: threading.Event, lock: psycopg.Connection) -> None:
        listen = Listener(self.db_url)  # before the catch-up step: nothing falls between
        try:
            self.engine = engine = Engine(self.db_url, self.config)
            engine.step(periodic=True)  # catch up with what arrived while no engine ran
            self.caught_up.set()
            next_periodic = time.monotonic() + self.config.period_s
            next_search = time.monotonic() + self.config.search_period_s
            while not stop.is_set():
                wait = max(0.0, min(next_periodic - time.monotonic(), 0.5))
                got, ids = listen.take(wait)  # all that arrived during the last step
                if got:
                    engine.step(channel_ids=ids)
                    self.ticks += 1
                if time.monotonic() >= next_periodic:
                    lock.execute("SELECT 1")  # our leadership lives as long as this session
                    engine.reload_if_changed()
                    search = time.monotonic() >= next_search
                    # Silence, regional validity and auto-resolve; the readings search only
                    # now and then (None: search, empty: the notified channels had it all).
                    engine.step(periodic=True, channel_ids=None if search else set())
                    self.ticks += 1
                    next_periodic = time.monotonic() + self.config.period_s
                    if search:
                        next_search = time.monotonic() + self.config.search_period_s
        finally:
            listen.close()
