"""The CAP feed: one CAP 1.2 document per warning event, kept for the API to serve.

Identifiers: `geowarn-ALERT-EVENT` by default. With an issuing-unit code set
(GEOWARN_CAP_SENDER_CODE, 14 digits: the 6-digit GB/T 2260 administrative code, a 3-digit
GB/T 4657 institution code, a 3-digit internal and a 2-digit extension code, "000"/"00" by
default), identifiers take the national profile's form ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N
(GB/T 35965.1-2018 annex A, as read in a copy of its value rules; the standard itself is not
in ../shared/reference): the unit, the entry time in Beijing time, and N = 0..9 numbering the
unit's messages of that second. An eleventh message in one second is entered at the next
second (its identifier says so; `sent` keeps the real time). The institution code cannot be
derived here: it is the deployment's to give.

A drill's events are written too, as status Exercise with the exercise in <note> and
【演练】 in the headline (notify/cap_out.py), for the exercise's participants to see what a
real warning would have published. They stay out of the live feed: /api/cap/feed shows them
only when asked (?status=Exercise), to officers and monitors, never to a viewer (the role a
republishing platform's key has).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import psycopg

from alerts.lifecycle.outbox import OutboxItem
from notify.cap_out import CHINA, CapEvent, build
from notify.drill import PREFIX, Drill
from notify.messages import level_words
from notify.planner import EventContext

SENDER = "geowarn@localhost"
VALIDITY = timedelta(hours=6)
UNIT_CODE = re.compile(r"^[1-9][0-9]{13}$")
_PER_SECOND = 10  # N is one digit


def _profile_ids(conn: psycopg.Connection, unit: str, now: datetime) -> list[str]:
    """Free profile identifiers from `now` on, in order (the sequence and, past nine, the
    following seconds)."""
    out: list[str] = []
    at = now.astimezone(CHINA).replace(microsecond=0)
    while len(out) < 3:
        prefix = f"{unit}_{at:%Y%m%d%H%M%S}_"
        taken = {str(r[0]) for r in conn.execute(
            "SELECT identifier FROM cap_feed WHERE identifier LIKE %s", (prefix + "%",))}
        out += [f"{prefix}{n}" for n in range(_PER_SECOND) if f"{prefix}{n}" not in taken]
        at += timedelta(seconds=1)
    return out


def msg_type(event_kind: str) -> str:
    return {"opened": "Alert", "resolved": "Cancel"}.get(event_kind, "Update")


def exercise_note(drill: Drill) -> str:
    title = f"（{drill.title}）" if drill.title else ""
    return (f"演练{drill.exercise}{title}：非真实预警，仅供演练。"
            f"GeoWarn exercise {drill.exercise}: not a real warning.")


def write_cap(conn: psycopg.Connection, item: OutboxItem, ctx: EventContext, *,
              now: datetime, sender: str = SENDER, unit: str | None = None,
              drill: Drill | None = None) -> str:
    """Write (once) the CAP document of `item`'s event; returns its identifier. `unit`: the
    issuing-unit code for the national profile's identifiers (module docstring); `drill`:
    the exercise the alert is a drill of (status Exercise)."""
    stored = conn.execute("SELECT identifier FROM cap_feed WHERE event_id = %s",
                          (item.event_id,)).fetchone()
    if stored is not None:
        return str(stored[0])
    refs = [(sender, str(i), t) for i, t in conn.execute(
        "SELECT identifier, sent FROM cap_feed WHERE alert_id = %s AND event_id < %s "
        "ORDER BY sent, identifier", (item.alert_id, item.event_id)).fetchall()]
    kind = msg_type(item.event_kind)
    if kind != "Alert" and not refs:
        kind = "Alert"  # the first message we write for this alert (e.g. older history)
    name = ctx.hazard.name if ctx.hazard else item.target_id
    level = int(item.level)
    headline = (f"{name}解除预警" if kind == "Cancel" or level == 0
                else f"{name}{level_words(level, 'zh')}")
    if drill is not None:
        headline = PREFIX["zh"] + headline
    candidates = (_profile_ids(conn, unit, now) if unit
                  else [f"geowarn-{item.alert_id}-{item.event_id}"])
    for identifier in candidates:
        doc = build(CapEvent(
            identifier=identifier, sender=sender, sent=now, msg_type=kind, level=level,
            hazard_kind=item.hazard_kind, headline=headline,
            area_desc=f"{name}（{ctx.place}）" if ctx.place else name,
            area=ctx.hazard.geometry if ctx.hazard else None, county_code=ctx.county_code,
            expires=now + VALIDITY, references=refs,
            status="Actual" if drill is None else "Exercise",
            note="" if drill is None else exercise_note(drill),
            hazard_type=ctx.hazard.hazard_type if ctx.hazard else ""))
        # Another notifier may take the same profile identifier in the same second: then
        # the next one is tried (the event itself is written once: event_id is unique).
        row = conn.execute(
            "INSERT INTO cap_feed (identifier, event_id, alert_id, msg_type, sent, xml) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING identifier",
            (identifier, item.event_id, item.alert_id, kind, now, doc)).fetchone()
        if row is not None:
            return identifier
        stored = conn.execute("SELECT identifier FROM cap_feed WHERE event_id = %s",
                              (item.event_id,)).fetchone()
        if stored is not None:
            return str(stored[0])
    raise RuntimeError(f"no free CAP identifier for event {item.event_id}")


def feed(conn: psycopg.Connection, *, limit: int = 100,
         exercise: bool = False) -> list[tuple[str, str]]:
    """(identifier, xml), newest first: the live messages, or with `exercise` the drills'."""
    return [(str(i), str(x)) for i, x in conn.execute(
        "SELECT c.identifier, c.xml FROM cap_feed c JOIN alerts a USING (alert_id) "
        "WHERE (a.exercise IS NOT NULL) = %s ORDER BY c.sent DESC, c.identifier DESC LIMIT %s",
        (exercise, limit)).fetchall()]
