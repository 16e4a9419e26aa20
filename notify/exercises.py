"""Exercises (演练) in the store: start, end, participants, and the drill of an alert.

While an exercise is active in a database, every alert opened there belongs to it (the
trigger of migration 0130), so the notifier sends it as a drill (notify/drill.py). That is
why an exercise runs in a database no live engine writes to (a throwaway one, where the
registry, hazard points, households and people to drill with were imported): `start`
refuses while a `geowarn engine` leads on the database or a live alert is open there (a
drill's data would change a live alert, and a live warning would go out as a drill).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from geowarn.errors import InvalidInput, NotFound
from notify.drill import Drill

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RECIPIENT = re.compile(r"^(person|household|hazard):.+$")
# The advisory key a leading `geowarn engine` holds (alerts/engine/service.py _LEADER_KEY).
ENGINE_LEADER_KEY = 0x6765_6F77_6172_6E45


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    started_at: datetime
    ended_at: datetime | None
    participants: int
    alerts: int


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(f"exercise name {name!r}: 1-64 letters, digits, '_', '.', '-'")
    return name


def active(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT name FROM exercises WHERE ended_at IS NULL").fetchone()
    return str(row[0]) if row else None


def _engine_leading(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
        "classid::bigint = %s AND objid::bigint = %s AND objsubid = 1 AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        (ENGINE_LEADER_KEY >> 32, ENGINE_LEADER_KEY & 0xFFFF_FFFF)).fetchone()
    return bool(row and row[0])


def start(conn: psycopg.Connection, name: str, title: str = "") -> None:
    """Start exercise `name` (new, or one that ended: it starts again)."""
    _check_name(name)
    current = active(conn)
    if current == name:
        return
    if current is not None:
        raise InvalidInput(f"exercise {current!r} is active in this database: end it first")
    if _engine_leading(conn):
        raise InvalidInput("a `geowarn engine` leads on this database: its alerts would go "
                           "out as drills. Run the exercise in a throwaway database")
    row = conn.execute("SELECT count(*) FROM alerts WHERE status <> 'resolved' AND "
                       "exercise IS NULL").fetchone()
    if row and row[0]:
        raise InvalidInput(f"{row[0]} live alert(s) are open in this database: a drill's data "
                           "would change them. Run the exercise in a throwaway database")
    with conn.transaction():
        conn.execute("INSERT INTO exercises (name, title) VALUES (%s, %s) ON CONFLICT (name) "
                     "DO UPDATE SET ended_at = NULL, started_at = now(), "
                     "title = coalesce(nullif(EXCLUDED.title, ''), exercises.title)",
                     (name, title))


def start_in_database(name: str) -> None:
    """`start` on the configured database (for `replay --exercise` and `simulate
    --exercise`), saying so on stderr."""
    import sys

    from geowarn.db import connect

    with connect() as conn:
        start(conn, name)
    print(f"exercise {name} is active: the alerts raised in this database are drills of it, "
          "sent only to its participants", file=sys.stderr)


def end(conn: psycopg.Connection, name: str) -> None:
    cur = conn.execute("UPDATE exercises SET ended_at = now() WHERE name = %s AND ended_at IS "
                       "NULL", (_check_name(name),))
    if cur.rowcount == 0:
        _exists(conn, name)
        raise InvalidInput(f"exercise {name!r} is not active")


def _exists(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM exercises WHERE name = %s", (name,)).fetchone() is None:
        raise NotFound(f"no exercise {name!r} (geowarn exercise start {name})")


def add_participants(conn: psycopg.Connection, name: str, recipient_ids: Iterable[str]) -> int:
    """Add recipients (person:ID, household:ID, hazard:POINT:monitor:N, ...); how many were
    new."""
    _exists(conn, _check_name(name))
    ids = list(dict.fromkeys(r.strip() for r in recipient_ids if r.strip()))
    bad = [r for r in ids if not RECIPIENT.match(r)]
    if bad:
        raise InvalidInput(f"participant {bad[0]!r}: write person:ID, household:ID or "
                           "hazard:POINT:monitor:N (as `geowarn notifications` names them)")
    added = 0
    with conn.transaction():
        for rid in ids:
            cur = conn.execute("INSERT INTO exercise_participants (exercise, recipient_id) "
                               "VALUES (%s, %s) ON CONFLICT DO NOTHING", (name, rid))
            added += cur.rowcount
    return added


def remove_participants(conn: psycopg.Connection, name: str,
                        recipient_ids: Iterable[str]) -> int:
    _exists(conn, _check_name(name))
    cur = conn.execute("DELETE FROM exercise_participants WHERE exercise = %s AND "
                       "recipient_id = ANY(%s)", (name, list(recipient_ids)))
    return cur.rowcount


def participants(conn: psycopg.Connection, name: str) -> frozenset[str]:
    return frozenset(str(r[0]) for r in conn.execute(
        "SELECT recipient_id FROM exercise_participants WHERE exercise = %s", (name,)))


def drill_of(conn: psycopg.Connection, alert_id: int) -> Drill | None:
    """The drill an alert belongs to; None for a live alert."""
    row = conn.execute("SELECT a.exercise, e.title FROM alerts a JOIN exercises e ON "
                       "e.name = a.exercise WHERE a.alert_id = %s", (alert_id,)).fetchone()
    if row is None:
        return None
    return Drill(str(row[0]), participants(conn, str(row[0])), str(row[1] or ""))


def list_exercises(conn: psycopg.Connection) -> list[Exercise]:
    rows = conn.execute(
        "SELECT e.name, e.title, e.started_at, e.ended_at, "
        "(SELECT count(*) FROM exercise_participants p WHERE p.exercise = e.name), "
        "(SELECT count(*) FROM alerts a WHERE a.exercise = e.name) "
        "FROM exercises e ORDER BY e.started_at, e.name").fetchall()
    return [Exercise(str(n), str(t), s, e, int(p), int(a)) for n, t, s, e, p, a in rows]
