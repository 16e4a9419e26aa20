"""Escalation: a warning nobody acknowledges climbs to the next officer tier.

When an alert opens or rises, its escalation clock starts: if it is not acknowledged within
`routing.escalate_after_min[level]` minutes, the next officer of OFFICER_LADDER above those
the level already reaches is sent the warning, and the first tier (the point's monitors and
responsible person) gets a reminder; then again after the same time, until the ladder is
exhausted. Acknowledgement stops it, whoever records it: the CLI (`geowarn notify ack`), an SMS
reply "1"/收到 (notify/callbacks.py), or the API (`POST /api/alerts/{id}/ack`). The API may not
import notify (tests/test_layers.py), so it only writes the acknowledgement to the alert
(alerts/lifecycle) and the notifier reacts: each step first stops the escalations of alerts
that are no longer open (`stop_settled`), recording who acknowledged or resolved them, and a
due escalation re-checks the alert's status under lock before sending. Every time comes from
the caller's clock, so tests drive it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from alerts.lifecycle.outbox import OutboxItem
from gis import store
from notify import deliveries, messages, people
from notify.planner import PlannedDelivery
from notify.routing import RoutingTable

FIRST_TIER = ("monitor", "responsible")
VALIDITY = timedelta(hours=1)


def on_event(conn: psycopg.Connection, item: OutboxItem, routing: RoutingTable, *,
             now: datetime) -> None:
    if item.event_kind in ("opened", "raised") and item.target_type == "hazard":
        minutes = routing.escalate_after_min.get(int(item.level))
        if minutes is None:
            return
        conn.execute(
            "INSERT INTO escalations (alert_id, event_id, level, tier, started_at, next_at) "
            "VALUES (%s, %s, %s, 0, %s, %s) ON CONFLICT (alert_id) DO UPDATE SET "
            "event_id = EXCLUDED.event_id, level = EXCLUDED.level, tier = 0, "
            "started_at = EXCLUDED.started_at, next_at = EXCLUDED.next_at, "
            # A rise re-opens an acknowledged alert (alerts/lifecycle), so it escalates anew.
            "stopped_at = NULL, stopped_by = NULL",
            (item.alert_id, item.event_id, int(item.level), now,
             now + timedelta(minutes=minutes)))
    elif item.event_kind == "resolved":
        stop(conn, item.alert_id, by="resolved", now=now)


def stop(conn: psycopg.Connection, alert_id: int, *, by: str, now: datetime) -> bool:
    """Stop an alert's escalation; False when none was running."""
    cur = conn.execute("UPDATE escalations SET stopped_at = %s, stopped_by = %s, next_at = NULL "
                       "WHERE alert_id = %s AND stopped_at IS NULL", (now, by, alert_id))
    return cur.rowcount > 0


def stop_settled(conn: psycopg.Connection, *, now: datetime) -> int:
    """Stop the running escalations of alerts acknowledged or resolved elsewhere (the API,
    `geowarn alerts`), naming who did it; how many were stopped."""
    cur = conn.execute(
        "UPDATE escalations e SET stopped_at = %s, next_at = NULL, stopped_by = CASE "
        "WHEN a.status = 'acknowledged' THEN coalesce(a.acknowledged_by, 'acknowledged') "
        "ELSE coalesce(a.resolved_by, 'resolved') END "
        "FROM alerts a WHERE a.alert_id = e.alert_id AND e.stopped_at IS NULL "
        "AND a.status <> 'open'", (now,))
    return cur.rowcount


def run_due(conn: psycopg.Connection, routing: RoutingTable,
            templates: messages.Templates, *, now: datetime, hotline: str) -> int:
    """Take every due escalation one tier up; how many were escalated."""
    done = 0
    with conn.transaction():
        stop_settled(conn, now=now)
        rows = conn.execute(
            "SELECT e.alert_id, e.event_id, e.level, e.tier, e.started_at, a.status, "
            "a.target_id FROM escalations e JOIN alerts a USING (alert_id) "
            "WHERE e.stopped_at IS NULL AND e.next_at <= %s ORDER BY e.next_at "
            "FOR UPDATE OF e SKIP LOCKED", (now,)).fetchall()
        for alert_id, event_id, level, tier, started, status, hazard_id in rows:
            if status != "open":
                stop(conn, alert_id, by=f"alert {status}", now=now)
                continue
            tier += 1
            planned = _tier_deliveries(conn, routing, templates, hazard_id, level, tier,
                                       minutes=int((now - started).total_seconds() // 60),
                                       now=now, hotline=hotline)
            deliveries.insert_planned(conn, event_id, alert_id, planned,
                                      valid_until=now + VALIDITY, now=now, round_=tier)
            more = routing.next_tier(_county(conn, hazard_id), level, tier + 1) is not None
            minutes = routing.escalate_after_min.get(level, 30.0)
            conn.execute("UPDATE escalations SET tier = %s, next_at = %s WHERE alert_id = %s",
                         (tier, now + timedelta(minutes=minutes) if more else None, alert_id))
            done += 1
    return done


def _county(conn: psycopg.Connection, hazard_id: str) -> str:
    row = conn.execute("SELECT county_code FROM hazard_points WHERE hazard_id = %s",
                       (hazard_id,)).fetchone()
    return str(row[0]) if row else ""


def _tier_deliveries(conn: psycopg.Connection, routing: RoutingTable,
                     templates: messages.Templates, hazard_id: str, level: int, tier: int,
                     *, minutes: int, now: datetime, hotline: str) -> list[PlannedDelivery]:
    found = store.load_hazards(conn, [hazard_id])
    if not found:
        return []
    hazard = found[0]
    role = routing.next_tier(hazard.county_code, level, tier)
    recipients = [c for c in people.hazard_contacts(conn, [hazard_id],
                                                    known=people.directory(conn))]
    audiences = [("monitor" if "monitor" in c.roles else "responsible", c) for c in recipients]
    if role is not None:
        audiences += [(r, c) for r, c in people.on_duty(conn, hazard.county_code, now, (role,))]
    out, seen = [], set()
    for audience, c in audiences:
        if c.recipient_id in seen:
            continue
        seen.add(c.recipient_id)
        body = templates.render_sms("escalation", c.language, {
            "hazard": hazard.name, "level": messages.level_words(level, c.language),
            "minutes": minutes, "hotline": hotline})
        out.append(PlannedDelivery(c.recipient_id, c.name, c.phone, c.language, audience,
                                   routing.sms_channel, "escalation", body))
    return out


def acknowledge(conn: psycopg.Connection, alert_id: int, *, user: str, now: datetime,
                note: str | None = None) -> bool:
    """Acknowledge the alert (alerts/lifecycle) if still open, and stop its escalation."""
    from alerts.lifecycle import writes as lifecycle
    from alerts.lifecycle.queries import get_alert_row

    if get_alert_row(conn, alert_id).status == "open":
        lifecycle.acknowledge(conn, alert_id, user=user, note=note)
    return stop(conn, alert_id, by=user, now=now)
