"""The CAP feed: one CAP 1.2 document per warning event, kept for the API to serve."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from alerts.lifecycle.outbox import OutboxItem
from notify.cap_out import CapEvent, build
from notify.messages import level_words
from notify.planner import EventContext

SENDER = "geowarn@localhost"
VALIDITY = timedelta(hours=6)


def msg_type(event_kind: str) -> str:
    return {"opened": "Alert", "resolved": "Cancel"}.get(event_kind, "Update")


def write_cap(conn: psycopg.Connection, item: OutboxItem, ctx: EventContext, *,
              now: datetime, sender: str = SENDER) -> str:
    """Write (once) the CAP document of `item`'s event; returns its identifier."""
    identifier = f"geowarn-{item.alert_id}-{item.event_id}"
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
    doc = build(CapEvent(
        identifier=identifier, sender=sender, sent=now, msg_type=kind, level=level,
        hazard_kind=item.hazard_kind, headline=headline,
        area_desc=f"{name}（{ctx.place}）" if ctx.place else name,
        area=ctx.hazard.geometry if ctx.hazard else None, county_code=ctx.county_code,
        expires=now + VALIDITY, references=refs))
    conn.execute("INSERT INTO cap_feed (identifier, event_id, alert_id, msg_type, sent, xml) "
                 "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                 (identifier, item.event_id, item.alert_id, kind, now, doc))
    return identifier


def feed(conn: psycopg.Connection, *, limit: int = 100) -> list[tuple[str, str]]:
    """(identifier, xml), newest first."""
    return [(str(i), str(x)) for i, x in conn.execute(
        "SELECT identifier, xml FROM cap_feed ORDER BY sent DESC, identifier DESC LIMIT %s",
        (limit,)).fetchall()]
