"""Loading what planning an event needs (the I/O side of notify/planner.py).

For an outbox item: the alert and its event (evidence), the hazard point with its linked
monitors and responsible person, the duty officers on duty at the event's data time, the
device maintainers, the households and the shelters within reach, and who was told before
for this alert (for falls and the all-clear).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg

from alerts.lifecycle.outbox import OutboxItem
from geowarn import push_subscriptions as push_store
from gis import store
from gis.model import HazardPoint, Household
from notify import people
from notify.forecast_news import Forecast, forecast_of
from notify.people import Contact
from notify.phones import PhoneError, to_e164
from notify.planner import EventContext, Told

SHELTER_REACH_M = 10_000.0


def _e164(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return to_e164(raw)
    except PhoneError:
        return None


def _floor_only(evidence: Mapping[str, Any], level: int) -> bool:
    """The combined level comes from the regional floor alone, not from this point's data."""
    floor = evidence.get("regional_floor")
    kinds = evidence.get("kind_levels")
    if not isinstance(floor, int) or not isinstance(kinds, Mapping) or floor < level:
        return False
    return max((int(v) for v in kinds.values() if isinstance(v, int)), default=0) < level


# What a device alert says happened (the maintenance template's {reason}).
_FINDINGS_ZH = {"implausible": "数值不合理", "repeating": "重复值", "flat": "数值不变",
                "step": "阶跃", "slip": "滑移"}


def _device_reason(kind: str, evidence: Mapping[str, Any]) -> str:
    if kind == "data_quality":
        if not evidence.get("channels"):
            return "数据恢复正常"
        names = [str(c.get("finding", "")).split(":")[0] for c in evidence["channels"]
                 if isinstance(c, Mapping)]
        found = "、".join(dict.fromkeys(_FINDINGS_ZH.get(n, n) for n in names if n))
        return f"数据异常（{found}）" if found else "数据异常"
    return "无数据上报" if evidence.get("reason") == "silent" else "恢复上报"


def forecast_text(fc: Forecast | None) -> str:
    """A forecast, short for an SMS (UTC): "07-16 14:20Z (07-16 13:10 – 07-16 16:40)"."""
    if fc is None:
        return "-"
    text = f"{fc.time:%m-%d %H:%M}Z"
    if fc.lower is not None and fc.upper is not None:
        text += f" ({fc.lower:%m-%d %H:%M} – {fc.upper:%m-%d %H:%M})"
    return text


def told_forecast(conn: psycopg.Connection, item: OutboxItem) -> Forecast | None:
    """The forecast the officers were last texted for this alert: that of the latest earlier
    "updated" event with an update delivery not failed (notify/forecast_news.py); None when
    none was texted."""
    row = conn.execute(
        "SELECT e.evidence FROM deliveries d JOIN alert_events e USING (event_id) "
        "WHERE d.alert_id = %s AND d.purpose = 'update' AND e.kind = 'updated' "
        "AND (e.data_time, e.event_id) < (%s, %s) "
        "AND d.state NOT IN ('failed', 'rejected', 'expired') "
        "ORDER BY e.data_time DESC, e.event_id DESC LIMIT 1",
        (item.alert_id, item.data_time, item.event_id)).fetchone()
    return forecast_of(row[0]) if row and isinstance(row[0], Mapping) else None


def _device_place(conn: psycopg.Connection, device_id: str) -> tuple[str | None, str]:
    row = conn.execute("SELECT d.hazard_id, h.county_code FROM devices d LEFT JOIN "
                       "hazard_points h USING (hazard_id) WHERE d.device_id = %s",
                       (device_id,)).fetchone()
    if row is None:
        return None, ""
    return row[0], row[1] or ""


def told_before(conn: psycopg.Connection, alert_id: int) -> list[Told]:
    rows = conn.execute(
        "SELECT DISTINCT ON (recipient_id) recipient_id, recipient_name, audience, language "
        "FROM deliveries WHERE alert_id = %s AND purpose IN ('warning', 'escalation') "
        "AND state NOT IN ('failed', 'rejected', 'expired') "
        "ORDER BY recipient_id, delivery_id", (alert_id,)).fetchall()
    return [Told(*r) for r in rows]


def load(conn: psycopg.Connection, item: OutboxItem, *, hotline: str,
         place_names: Mapping[str, str]) -> EventContext:
    ev = conn.execute("SELECT evidence FROM alert_events WHERE event_id = %s",
                      (item.event_id,)).fetchone()
    evidence: Mapping[str, Any] = ev[0] if ev and isinstance(ev[0], Mapping) else {}
    hazard: HazardPoint | None = None
    county = ""
    reason = ""
    hazard_id: str | None = None
    if item.target_type == "hazard":
        hazard_id = item.target_id
    elif item.target_type == "device":
        hazard_id, county = _device_place(conn, item.target_id)
        reason = _device_reason(item.hazard_kind, evidence)
    if hazard_id is not None:
        found = store.load_hazards(conn, [hazard_id])
        hazard = found[0] if found else None
        county = hazard.county_code if hazard else county
    contacts = _contacts(conn, hazard, county, item.data_time, item.target_id)
    households: list[Household] = []
    shelters = []
    if hazard is not None and item.target_type == "hazard":
        households = [dataclasses.replace(h, phone=_e164(h.phone))
                      for h in store.load_households(conn, hazard.hazard_id)]
        ranked = store.nearest_shelters(conn, hazard.hazard_id, max_distance_m=SHELTER_REACH_M)
        by_id = {s.shelter_id: s for s in store.load_shelters(conn)}
        shelters = [(by_id[r.shelter_id], r.distance_m) for r in ranked]
    told = told_before(conn, item.alert_id) if item.event_kind in (
        "lowered", "cleared", "resolved", "updated") else []
    forecast: Forecast | None = None
    told_fc: Forecast | None = None
    if item.event_kind == "updated":
        forecast, told_fc = forecast_of(evidence), told_forecast(conn, item)
        reason = forecast_text(forecast)
    lookup = {t.recipient_id: p for t in told if (p := people.phone_of(conn, t.recipient_id))}
    if item.event_kind == "resolved":
        row = conn.execute("SELECT resolve_reason FROM alerts WHERE alert_id = %s",
                           (item.alert_id,)).fetchone()
        reason = str(row[0]) if row and row[0] else reason
    return EventContext(
        event_id=item.event_id, alert_id=item.alert_id, event_kind=item.event_kind,
        level=int(item.level), previous_level=int(item.previous_level),
        hazard_kind=item.hazard_kind, data_time=item.data_time,
        target_type=item.target_type, target_id=item.target_id, county_code=county,
        hazard=hazard, contacts=contacts, households=households, shelters=shelters,
        told=told, floor_only=_floor_only(evidence, int(item.level)), reason=reason,
        hotline=hotline, place=place_names.get(county, county), lookup_phone=lookup,
        push_recipients=frozenset(push_store.people_with_push(conn)), forecast=forecast,
        told_forecast=told_fc)


def _contacts(conn: psycopg.Connection, hazard: HazardPoint | None, county: str,
              at: datetime, target_id: str) -> dict[str, list[Contact]]:
    directory = people.directory(conn)
    out: dict[str, list[Contact]] = {}
    if hazard is not None:
        for c in people.hazard_contacts(conn, [hazard.hazard_id], known=directory):
            role = "monitor" if "monitor" in c.roles else "responsible"
            out.setdefault(role, []).append(c)
    if county:
        for role, person in people.on_duty(conn, county, at):
            out.setdefault(role, []).append(person)
    maintainers = [p for p in directory if "maintainer" in p.roles
                   and (target_id in p.device_ids
                        or (not p.device_ids and county and people.scope_covers(
                            p.county_code, county)))]
    if maintainers:
        out["maintainer"] = maintainers
    return out
