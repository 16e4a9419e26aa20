"""Arrival marks: per channel, the ingested_at stamp before which a step has seen every
reading, so late readings (a backlog behind the watermark, alerts/engine/data.py
`load_late`) are fetched from each channel's last look on, not from the last search step.

A reading's ingested_at is its writer's transaction start (now(), the column's default), and
that transaction may commit after a step's snapshot: a step that read everything committed
has not necessarily seen everything stamped before its own start. `take` therefore marks the
start of the oldest transaction still open in this database when the step began (from
pg_stat_activity, read before the step's first read of readings), less ARRIVAL_MARGIN_S;
any reading stamped before the mark was committed, and so seen, by then. The mark is never
older than ARRIVAL_OVERLAP_S before the step's now(): a writer holding readings uncommitted
for longer (an idle-in-transaction session, a long import) is not judged late, as before
(and an open session does not pin the mark). When the server cannot tell (the other
sessions' transactions hidden from this role, activity tracking off in one, a prepared
transaction waiting) the mark is that bound, now() − ARRIVAL_OVERLAP_S.

`ArrivalMarks` keeps one mark per setup row: a notified step advances its notified channels,
a search step and a restart every channel. What the marks overlap (readings of a writer
that was open at the previous mark) comes again and counts once (alerts/engine/late.py).
Persisted: the oldest mark (engine_state.arrived, migration 0168), written when it moves (on
search steps); a restart looks at every channel from there, so nothing committed while no
engine ran, or that a notified step had not looked at, is lost.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from alerts.engine.tick_setup import Setup

# How far before its now() a step's mark may lie at most (the longest a writer may hold late
# readings uncommitted and still have them judged late). Ingest commits in groups of well
# under a second.
ARRIVAL_OVERLAP_S = 30.0
# A writer takes its start stamp a moment before pg_stat_activity shows it.
ARRIVAL_MARGIN_S = 1.0

_OPEN = (
    "SELECT now(), min(a.xact_start), coalesce(bool_or(a.state = 'disabled' OR NOT ("
    "pg_has_role('pg_read_all_stats', 'USAGE') OR (a.usesysid IS NOT NULL AND "
    "pg_has_role(a.usesysid, 'USAGE')))), false), "
    "EXISTS (SELECT 1 FROM pg_prepared_xacts p WHERE p.database = current_database()) "
    "FROM pg_stat_activity a WHERE a.datname = current_database() "
    "AND a.pid <> pg_backend_pid() AND a.backend_type <> 'autovacuum worker'")


def take(conn: psycopg.Connection) -> datetime:
    """This transaction's arrival mark (see the module docstring); call it before the
    transaction reads readings (pg_stat_activity is read once per transaction)."""
    row = conn.execute(_OPEN).fetchone()
    assert row is not None
    now, oldest, unknown, prepared = row
    bound: datetime = now - timedelta(seconds=ARRIVAL_OVERLAP_S)
    if unknown or prepared:
        return bound
    first = now if oldest is None else min(now, oldest)
    return max(bound, first - timedelta(seconds=ARRIVAL_MARGIN_S))


class ArrivalMarks:
    """The arrival mark per setup row (seconds since the epoch). `every`: the mark of the
    last look at every row (what a channel added later starts from); `saved`: the oldest
    mark as the database holds it (NaN: not known to be saved)."""

    def __init__(self, channel_ids: list[int], at: np.ndarray, every: float) -> None:
        self.channel_ids = channel_ids
        self.at = at
        self.every = every
        self.saved = math.nan

    @classmethod
    def looked_at_all(cls, setup: Setup, mark: datetime) -> ArrivalMarks:
        """Every row looked at up to `mark` (a restart's load)."""
        return cls([c.channel_id for c in setup.channels],
                   np.full(setup.n, mark.timestamp(), np.float64), mark.timestamp())

    def after(self, rows: list[int] | None, mark: datetime) -> ArrivalMarks:
        """The marks once a step that looked at `rows` (None: every row) at `mark` has
        committed; the caller keeps them only then."""
        at = self.at.copy()
        if rows is None:
            at[:] = mark.timestamp()
        elif rows:
            at[np.asarray(rows, np.int64)] = mark.timestamp()
        out = ArrivalMarks(self.channel_ids, at,
                           mark.timestamp() if rows is None else self.every)
        out.saved = self.saved
        return out

    def oldest(self) -> float:
        return float(self.at.min()) if self.at.size else self.every

    def save(self, conn: psycopg.Connection, engine: str) -> None:
        """Write the oldest mark when it differs from the saved one (inside the step's
        transaction, after the state's header row is written)."""
        oldest = self.oldest()
        if oldest != self.saved:  # NaN: never equal
            conn.execute("UPDATE engine_state SET arrived = %s WHERE engine = %s",
                         (datetime.fromtimestamp(oldest, UTC), engine))
            self.saved = oldest

    def remapped(self, setup: Setup) -> ArrivalMarks:
        """The marks on a new setup (a registry change): a channel kept keeps its mark, a new
        one takes the oldest (it has no watermark yet: nothing of it is late before its
        first step, which marks it)."""
        old = dict(zip(self.channel_ids, self.at.tolist(), strict=True))
        fill = self.oldest()
        ids = [c.channel_id for c in setup.channels]
        out = ArrivalMarks(ids, np.array([old.get(c, fill) for c in ids], np.float64),
                           self.every)
        out.saved = self.saved
        return out


def restored(conn: psycopg.Connection, engine: str) -> datetime | None:
    """The oldest mark saved for `engine`; an engine saved before marks were kept: its last
    save less ARRIVAL_OVERLAP_S (what it used then); None: nothing saved."""
    row = conn.execute("SELECT arrived, saved_at FROM engine_state WHERE engine = %s",
                       (engine,)).fetchone()
    if row is None:
        return None
    arrived, saved_at = row
    if arrived is not None:
        got: datetime = arrived
        return got
    return None if saved_at is None else saved_at - timedelta(seconds=ARRIVAL_OVERLAP_S)
