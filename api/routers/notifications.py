"""/api/notifications: who was told what about an alert, when, by which channel, and whether
it arrived (the notifier's deliveries table, read here; api/ does not import notify/).

Visible within the user's counties (an alert's county is its hazard point's). The delivery
record keeps only the recipient's id and masked number, never the full one; roles that do
not call people (monitor, viewer) see no number at all, the recipient's name masked and no
message text (it names shelters and their contacts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from alerts.lifecycle.queries import get_alert_row
from api.deps import Conn, CurrentUser, require
from api.routers.hazards import mask_name
from api.schemas import ERRORS
from api.scope import allowed, sql_prefixes, whole_province

router = APIRouter(prefix="/api/notifications", tags=["notifications"], responses=ERRORS)
Channel = Literal["sms", "voice", "push", "webhook", "file"]
State = Literal["pending", "sending", "queued", "sent", "delivered", "undelivered", "failed",
                "rejected", "expired", "uncertain"]


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 41, "alert_id": 17, "event_id": 90, "recipient_id": "person:county-1",
        "recipient_name": "县值班员", "masked_phone": "+86 135****0002",
        "audience": "county_officer", "channel": "sms", "round": 0, "purpose": "warning",
        "state": "delivered", "attempts": 1, "error_code": None, "error_text": None,
        "shelter_id": None, "body": "【地灾预警】...", "sent_by": "notifier-1",
        "created_at": "2026-07-01T02:00:01+00:00", "accepted_at": "2026-07-01T02:00:02+00:00",
        "updated_at": "2026-07-01T02:00:09+00:00", "valid_until": "2026-07-01T03:00:01+00:00"}]})
    id: int
    alert_id: int
    event_id: int
    recipient_id: str
    recipient_name: str | None
    masked_phone: str | None
    audience: str
    channel: str
    round: int
    purpose: str
    state: str
    attempts: int
    error_code: str | None
    error_text: str | None
    shelter_id: str | None
    body: str | None
    sent_by: str | None
    created_at: datetime
    accepted_at: datetime | None
    updated_at: datetime
    valid_until: datetime


_SELECT = """SELECT d.delivery_id, d.alert_id, d.event_id, d.recipient_id, d.recipient_name,
    d.masked_phone, d.audience, d.channel, d.round, d.purpose, d.state, d.attempts,
    d.error_code, d.error_text, d.shelter_id, d.body, d.claimed_by, d.created_at,
    d.accepted_at, d.updated_at, d.valid_until
    FROM deliveries d JOIN alerts a USING (alert_id)
    LEFT JOIN hazard_points h ON a.target_type = 'hazard' AND h.hazard_id = a.target_id"""


@router.get("", response_model=list[DeliveryOut], summary="deliveries of warnings")
def list_notifications(
    conn: Conn, user: CurrentUser,
    alert_id: Annotated[int | None, Query(ge=1, description="only this alert's")] = None,
    channel: Annotated[Channel | None, Query()] = None,
    state: Annotated[State | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """Newest first. With `alert_id`, 403 when the alert lies outside your counties."""
    require(user, "read", check_county=False)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since: give a time zone (2026-07-01T08:00+08:00)")
    where = ["(h.county_code LIKE ANY(%s)" + (" OR h.county_code IS NULL)"
                                              if whole_province(user.counties) else ")")]
    params: list[Any] = [sql_prefixes(user.counties)]
    if alert_id is not None:
        require(user, "read", get_alert_row(conn, alert_id).county_code)  # 404, 403
        where.append("d.alert_id = %s")
        params.append(alert_id)
    for column, value in (("d.channel", channel), ("d.state", state)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("d.created_at >= %s")
        params.append(since)
    rows = conn.execute(f"{_SELECT} WHERE {' AND '.join(where)} "
                        "ORDER BY d.delivery_id DESC LIMIT %s", [*params, limit]).fetchall()
    personal = allowed(user.role, "read_personal")
    return [_out(r, personal) for r in rows]


def _out(r: tuple[Any, ...], personal: bool) -> dict[str, Any]:
    (did, alert, event, rid, name, phone, audience, channel, round_, purpose, state,
     attempts, code, text, shelter, body, by, created, accepted, updated, valid) = r
    return {"id": did, "alert_id": alert, "event_id": event, "recipient_id": rid,
            "recipient_name": name if personal else mask_name(name),
            "masked_phone": phone if personal else None, "audience": audience,
            "channel": channel, "round": round_, "purpose": purpose, "state": state,
            "attempts": attempts, "error_code": code, "error_text": text,
            "shelter_id": shelter, "body": body if personal else None, "sent_by": by,
            "created_at": created, "accepted_at": accepted, "updated_at": updated,
            "valid_until": valid}
