"""/api/alerts: the alert queue, one alert's story, and what a duty officer does with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from psycopg import sql
from psycopg.rows import dict_row

from alerts.lifecycle import writes
from alerts.lifecycle.queries import (
    ALERT_COLUMNS,
    ALERT_FROM,
    HAZARD_KINDS,
    STATUSES,
    Alert,
    alert_from_row,
    alert_json,
    detail_json,
    get_alert,
    get_alert_row,
    parse_level,
)
from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS, AckIn, AlertDetailOut, AlertOut, CommentIn, ResolveIn
from api.scope import sql_prefixes, whole_province
from api.users import User

router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=ERRORS)


def _scope_condition(user: User) -> tuple[sql.Composable, list[Any]]:
    if whole_province(user.counties):
        # Alerts with no county (sites, unplaced devices) are the province's to see.
        return (sql.SQL("(h.county_code IS NULL OR h.county_code LIKE ANY(%s))"),
                [sql_prefixes(user.counties)])
    return sql.SQL("h.county_code LIKE ANY(%s)"), [sql_prefixes(user.counties)]


@router.get("", response_model=list[AlertOut], summary="the alert queue")
def list_alerts(
    conn: Conn, user: CurrentUser,
    level: Annotated[str | None, Query(description="at least this level: blue..red")] = None,
    alert_status: Annotated[list[str] | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(description="hazard kind")] = None,
    county: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{5}$")] = None,
    since: Annotated[datetime | None, Query(description="touched at or after")] = None,
    until: Annotated[datetime | None, Query(description="latest data before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Unresolved first, then by level and age: the order a duty room works in."""
    require(user, "read", check_county=False)
    where, params = _scope_condition(user)
    conditions = [where]
    if alert_status:
        bad = [s for s in alert_status if s not in STATUSES]
        if bad:
            raise HTTPException(422, f"status: unknown {', '.join(bad)} (known: "
                                f"{', '.join(STATUSES)})")
        conditions.append(sql.SQL("a.status = ANY(%s)"))
        params.append(alert_status)
    if level is not None:
        conditions.append(sql.SQL("a.level >= %s"))
        params.append(int(parse_level(level)))
    if kind is not None:
        if kind not in HAZARD_KINDS:
            raise HTTPException(422, f"kind: unknown {kind!r} (known: {', '.join(HAZARD_KINDS)})")
        conditions.append(sql.SQL("a.hazard_kind = %s"))
        params.append(kind)
    if county is not None:
        conditions.append(sql.SQL("h.county_code = %s"))
        params.append(county)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, f"{name}: give a time zone (2026-07-01T08:00+08:00)")
    if since is not None:
        conditions.append(sql.SQL("(a.last_data_time >= %s OR a.resolved_at >= %s)"))
        params += [since, since]
    if until is not None:
        conditions.append(sql.SQL("a.last_data_time < %s"))
        params.append(until)
    query = (sql.SQL(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE ")
             + sql.SQL(" AND ").join(conditions)
             + sql.SQL(" ORDER BY a.status = 'resolved', a.level DESC, a.opened_at, "
                       "a.alert_id LIMIT %s"))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, [*params, limit]).fetchall()
    return [alert_json(alert_from_row(r)) for r in rows]


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
