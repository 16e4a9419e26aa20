"""/api/alerts/stream: server-sent events of alert changes, for the console's live queue.

Each event is one audit row of an alert (opened, raised, lowered, cleared, resolved by the
engine; acknowledged, resolved, commented by people), its SSE id the audit row's id, so a
client that reconnects with Last-Event-ID (EventSource does so by itself) receives exactly
what it missed. A trigger NOTIFYs each new row (migration 0121): the stream wakes on it, with
no polling; a comment line every 15 s keeps proxies from closing an idle stream. Only alerts
in the user's counties are sent. `exercise` names the exercise of a drill's alert (null for
a live one), so the console marks drills as it does in the queue. The stream re-checks its
session every REAUTH_S: once the session is logged out, expired or revoked (or the user
disabled) it sends an `ended` event and closes; EventSource's reconnection is refused (401).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import StreamingUser, authenticate, require
from api.schemas import ERRORS
from api.scope import sql_prefixes, whole_province
from api.users import User
from geowarn.db import database_url, transaction
from geowarn.errors import DatabaseUnavailable

router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=ERRORS)
CHANNEL = "geowarn_alert_changes"
KEEPALIVE_S = 15.0
REAUTH_S = 15.0
ENDED = 'event: ended\ndata: {"detail": "the session ended: log in again"}\n\n'
BATCH = 500

_SELECT = """SELECT l.id, l.at, l.actor, l.action, l.detail, a.alert_id, a.target_type,
    a.target_id, h.name, h.county_code, a.hazard_kind, a.status, a.level, a.exercise
    FROM audit_log l JOIN alerts a ON l.object_type = 'alert' AND a.alert_id::text = l.object_id
    LEFT JOIN hazard_points h ON a.target_type = 'hazard' AND h.hazard_id = a.target_id
    WHERE l.object_type = 'alert' AND l.id > %s AND (h.county_code LIKE ANY(%s) {extra})
    ORDER BY l.id LIMIT %s"""
LEVELS = ("none", "blue", "yellow", "orange", "red")


def _event(row: tuple[Any, ...]) -> str:
    (audit_id, at, actor, action, detail, alert_id, ttype, tid, name, county, kind, status,
     level, exercise) = row
    data = {"alert_id": alert_id, "action": action, "actor": actor, "at": at.isoformat(),
            "target": {"type": ttype, "id": tid, "name": name, "county_code": county},
            "hazard_kind": kind, "status": status, "level": LEVELS[level],
            "exercise": exercise, "detail": detail}
    return f"id: {audit_id}\nevent: alert\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _changes(user: User, after: int,
                   still_valid: Callable[[], bool] | None = None) -> AsyncIterator[str]:
    extra = "OR h.county_code IS NULL" if whole_province(user.counties) else ""
    query = _SELECT.format(extra=extra)
    prefixes = sql_prefixes(user.counties)
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        yield "retry: 3000\n\n"
        checked = time.monotonic()
        while True:
            # Send what is there (everything after `after`), then wait for the next NOTIFY.
            while True:
                cur = await conn.execute(query, (after, prefixes, BATCH))
                rows = await cur.fetchall()
                for row in rows:
                    after = int(row[0])
                    yield _event(row)
                if len(rows) < BATCH:
                    break
            woke = False
            async for _ in conn.notifies(timeout=KEEPALIVE_S, stop_after=1):
                woke = True
            if not woke:
                yield ": keepalive\n\n"
            if still_valid is not None and time.monotonic() - checked >= REAUTH_S:
                checked = time.monotonic()
                if not await asyncio.to_thread(still_valid):
                    yield ENDED
                    return


def _session_check(request: Request, x_api_key: str | None) -> Callable[[], bool]:
    """Whether the stream's credentials still authenticate (a database outage is not an
    ended session: the stream goes on)."""
    def check() -> bool:
        try:
            with transaction() as conn:
                authenticate(conn, request, x_api_key)
        except HTTPException:
            return False
        except DatabaseUnavailable:
            return True
        return True
    return check


def _start_after(conn_after: int | None, last_event_id: str | None) -> int:
    for value in (last_event_id, conn_after):
        if value is not None and str(value).strip().isdigit():
            return int(value)
    return -1


@router.get("/stream", summary="alert changes as server-sent events (resumable)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(user: StreamingUser, request: Request,
                 last_event_id: Annotated[str | None, Header()] = None,
                 x_api_key: Annotated[str | None, Header()] = None,
                 after: Annotated[int | None, Query(ge=0, description=(
                     "start after this event id (default: only new changes)"))] = None,
                 ) -> StreamingResponse:
    require(user, "read", check_county=False)
    start = _start_after(after, last_event_id)
    if start < 0:
        start = await _latest_id()
    return StreamingResponse(_changes(user, start, _session_check(request, x_api_key)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _latest_id() -> int:
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
        cur = await conn.execute("SELECT coalesce(max(id), 0) FROM audit_log")
        row = await cur.fetchone()
    return int(row[0]) if row else 0
