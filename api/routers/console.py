"""The duty officers' and monitors' console: static files (api/console/) served by the API,
and the one query the console needs that no resource gives: the user's own hazard points.

The console is plain JavaScript modules, CSS and SVG drawn by its own code, so it works on a
closed network: no CDN, no web fonts, no map tiles. The Content-Security-Policy on its files
makes the browser refuse anything from elsewhere (and inline scripts), so a later change
cannot quietly add an outside dependency.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import Scope

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS, LevelName
from api.scope import covers

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
LEVELS: tuple[LevelName, ...] = ("none", "blue", "yellow", "orange", "red")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A console updated with the server shows the new files at the next load.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["console"], responses=ERRORS)


class ConsoleFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


class MyAlertOut(BaseModel):
    id: int
    hazard_kind: str
    level: LevelName
    status: str
    last_data_time: datetime
    received_at: datetime | None
    exercise: str | None = Field(default=None, description=(
        "the exercise (演练) this alert is a drill of; null for a live alert"))


class MyHazardOut(BaseModel):
    id: str
    name: str | None
    hazard_type: str | None
    county_code: str
    level: LevelName
    alerts: list[MyAlertOut]


@router.get("/api/me/hazards", response_model=list[MyHazardOut],
            summary="the hazard points assigned to me, their level, and their unresolved "
                    "alerts with when I confirmed receiving each")
def my_hazards(conn: Conn, user: CurrentUser) -> list[dict[str, Any]]:
    """For monitors (assigned with `geowarn users add --hazard`); empty for other users."""
    require(user, "read", check_county=False)
    rows = conn.execute(
        "SELECT h.hazard_id, h.name, h.hazard_type, h.county_code, a.alert_id, "
        "a.hazard_kind, a.level, a.status, a.last_data_time, a.exercise, "
        "(SELECT max(l.at) FROM audit_log l WHERE l.object_type = 'alert' "
        "  AND l.object_id = a.alert_id::text AND l.action = 'received' AND l.actor = %s) "
        "FROM api_users u JOIN hazard_points h ON h.hazard_id = ANY(u.hazard_ids) "
        "LEFT JOIN alerts a ON a.target_type = 'hazard' AND a.target_id = h.hazard_id "
        "  AND a.status <> 'resolved' "
        "WHERE u.username = %s ORDER BY h.hazard_id, a.level DESC, a.alert_id",
        (user.username, user.username)).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for hid, name, htype, county, aid, kind, level, status, data_time, exercise, received \
            in rows:
        if county is None or not covers(user.counties, county):
            continue  # an assignment outside the user's counties shows nothing
        point = out.setdefault(hid, {"id": hid, "name": name, "hazard_type": htype,
                                     "county_code": county, "level": "none", "alerts": []})
        if aid is None:
            continue
        point["alerts"].append({
            "id": aid, "hazard_kind": kind, "level": LEVELS[level], "status": status,
            "last_data_time": data_time, "received_at": received, "exercise": exercise})
        if LEVELS.index(point["level"]) < level:
            point["level"] = LEVELS[level]
    return list(out.values())


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/console/")


def install(app: FastAPI) -> None:
    """The console's files under /console/, its query, and / leading to it."""
    app.include_router(router)
    app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
