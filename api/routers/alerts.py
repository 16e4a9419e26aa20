"""/api/alerts: the alert queue, one alert's story, and what a duty officer does with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from alerts.lifecycle import queries, writes
from alerts.lifecycle.queries import Alert, alert_json, detail_json, get_alert, get_alert_row
from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS, AckIn, AlertDetailOut, AlertOut, CommentIn, ResolveIn
from api.scope import prefix, whole_province
from api.users import User

router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=ERRORS)


@router.get("", response_model=list[AlertOut], summary="the alert queue")
def list_alerts(
    conn: Conn, user: CurrentUser,
    level: Annotated[str | None, Query(description="at least this level: blue..red")] = None,
    alert_status: Annotated[list[str] | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(description="hazard kind")] = None,
    county: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{5}$")] = None,
    since: Annotated[datetime | None, Query(description="touched at or after")] = None,
    until: Annotated[datetime | None, Query(description="latest data before")] = None,
    exercise: Annotated[str | None, Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["flood-drill-2026"],
        description="only the drills of this exercise (演练)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Unresolved first, then by level and age: the order a duty room works in."""
    require(user, "read", check_county=False)
    found = queries.list_alerts(
        conn, status=alert_status or None, hazard_kind=kind, min_level=level, since=since,
        until=until, county=county, county_prefixes=[prefix(c) for c in user.counties],
        include_no_county=whole_province(user.counties), exercise=exercise,
        oldest_first=True, limit=limit)
    return [alert_json(a) for a in found]


def _visible(conn: Conn, user: User, alert_id: int, action: str) -> Alert:
    alert = get_alert_row(conn, alert_id)  # NotFound -> 404
    require(user, action, alert.county_code)
    return alert


@router.get("/{alert_id}", response_model=AlertDetailOut,
            summary="one alert with its level history, evidence and audit trail")
def alert_detail(alert_id: int, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    _visible(conn, user, alert_id, "read")
    return detail_json(get_alert(conn, alert_id))


@router.post("/{alert_id}/ack", response_model=AlertOut, summary="acknowledge")
def acknowledge(alert_id: int, body: AckIn, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    _visible(conn, user, alert_id, "act_on_alerts")
    return alert_json(writes.acknowledge(conn, alert_id, user=user.username, note=body.note))


@router.post("/{alert_id}/resolve", response_model=AlertOut, summary="resolve with a reason")
def resolve(alert_id: int, body: ResolveIn, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    _visible(conn, user, alert_id, "act_on_alerts")
    return alert_json(writes.resolve(conn, alert_id, user=user.username, reason=body.reason))


@router.post("/{alert_id}/comments", status_code=status.HTTP_201_CREATED,
             response_model=AlertDetailOut, summary="add a note to the audit trail")
def add_comment(alert_id: int, body: CommentIn, conn: Conn,
                user: CurrentUser) -> dict[str, Any]:
    _visible(conn, user, alert_id, "act_on_alerts")
    writes.comment(conn, alert_id, user=user.username, text=body.text)
    return detail_json(get_alert(conn, alert_id))


@router.post("/{alert_id}/receipt", response_model=AlertDetailOut,
             summary="confirm that you received the warning (monitors on their phones)")
def confirm_receipt(alert_id: int, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    _visible(conn, user, alert_id, "confirm_receipt")
    writes.comment(conn, alert_id, user=user.username, text="received the warning",
                   action="received")
    return detail_json(get_alert(conn, alert_id))
