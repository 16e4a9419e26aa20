"""Field reports (宏观巡查): a monitor on patrol reports what it sees at a hazard point (new or
widening cracks, bulging, seepage or turbid water, falling rocks, tilted trees or poles,
unusual sounds) with a severity, a note and optionally a photo, from a phone.

Monitors report only on the points assigned to them (`geowarn users add --hazard`); officers
of the county read the reports. Photos: JPEG, PNG or WebP recognised by their first bytes
(the declared type is not trusted), at most 5 MiB.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS
from gis.store import get_hazard

router = APIRouter(tags=["field reports"], responses=ERRORS)
Kind = Literal["new_cracks", "cracks_widening", "bulging", "seepage", "turbid_water",
               "falling_rocks", "tilted_trees_or_poles", "unusual_sounds", "other"]
Severity = Literal["minor", "moderate", "severe"]
MAX_PHOTO = 5 * 1024 * 1024
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def photo_type(head: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _assigned(conn: Conn, username: str, hazard_id: str) -> bool:
    row = conn.execute("SELECT %s = ANY(hazard_ids) FROM api_users WHERE username = %s",
                       (hazard_id, username)).fetchone()
    return bool(row and row[0])


@router.post("/api/hazards/{hazard_id}/reports", status_code=status.HTTP_201_CREATED,
             summary="a monitor's field report, with an optional photo (multipart form)")
async def submit(hazard_id: str, conn: Conn, user: CurrentUser,
                 kind: Annotated[Kind, Form()], severity: Annotated[Severity, Form()],
                 note: Annotated[str | None, Form(max_length=2000)] = None,
                 observed_at: Annotated[datetime | None, Form()] = None,
                 lon: Annotated[float | None, Form(ge=-180, le=180)] = None,
                 lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
                 photo: Annotated[UploadFile | None, File()] = None) -> dict[str, Any]:
    hazard = get_hazard(conn, hazard_id)
    require(user, "report_field", hazard.county_code)
    if user.role == "monitor" and not _assigned(conn, user.username, hazard_id):
        raise HTTPException(403, f"{hazard_id} is not one of your assigned hazard points")
    now = datetime.now(UTC)
    when = observed_at or now
    if when.tzinfo is None:
        raise HTTPException(422, "observed_at: give a time zone (2026-07-01T08:00+08:00)")
    if when > now + timedelta(minutes=5):
        raise HTTPException(422, "observed_at: in the future")
    if (lon is None) != (lat is None):
        raise HTTPException(422, "lon, lat: give both or neither")
    data: bytes | None = None
    mime: str | None = None
    if photo is not None:
        data = await photo.read(MAX_PHOTO + 1)
        if len(data) > MAX_PHOTO:
            raise HTTPException(413, f"photo: larger than {MAX_PHOTO // (1024 * 1024)} MiB")
        if not data:
            raise HTTPException(422, "photo: empty file")
        mime = photo_type(data[:16])
        if mime is None:
            raise HTTPException(415, "photo: not a JPEG, PNG or WebP image")
    row = conn.execute(
        "INSERT INTO field_reports (hazard_id, reporter, kind, severity, note, observed_at, "
        "received_at, lon, lat, photo, photo_type, photo_size) VALUES (%s, %s, %s, %s, %s, "
        "%s, %s, %s, %s, %s, %s, %s) RETURNING report_id",
        (hazard_id, user.username, kind, severity, (note or "").strip() or None, when, now,
         lon, lat, data, mime, len(data) if data else None)).fetchone()
    assert row is not None
    conn.execute("INSERT INTO audit_log (actor, action, object_type, object_id, detail) "
                 "VALUES (%s, 'field_report', 'hazard', %s, jsonb_build_object("
                 "'report_id', %s::bigint, 'kind', %s::text, 'severity', %s::text))",
                 (user.username, hazard_id, row[0], kind, severity))
    return {"id": row[0], "hazard_id": hazard_id, "kind": kind, "severity": severity,
            "observed_at": when, "photo": mime is not None}


@router.get("/api/hazards/{hazard_id}/reports", summary="field reports on a hazard point")
def reports(hazard_id: str, conn: Conn, user: CurrentUser,
            since: datetime | None = None) -> list[dict[str, Any]]:
    hazard = get_hazard(conn, hazard_id)
    require(user, "read", hazard.county_code)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since: give a time zone")
    rows = conn.execute(
        "SELECT report_id, reporter, kind, severity, note, observed_at, received_at, lon, "
        "lat, photo_type, photo_size FROM field_reports WHERE hazard_id = %s "
        "AND (%s::timestamptz IS NULL OR observed_at >= %s) ORDER BY observed_at DESC "
        "LIMIT 500", (hazard_id, since, since)).fetchall()
    return [{"id": r[0], "reporter": r[1], "kind": r[2], "severity": r[3], "note": r[4],
             "observed_at": r[5], "received_at": r[6], "lon": r[7], "lat": r[8],
             "photo": {"type": r[9], "size": r[10],
                       "url": f"/api/reports/{r[0]}/photo"} if r[9] else None}
            for r in rows]


@router.get("/api/reports/{report_id}/photo", summary="a field report's photo",
            response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {},
                                         "image/webp": {}}}})
def report_photo(report_id: int, conn: Conn, user: CurrentUser) -> Response:
    row = conn.execute("SELECT r.photo, r.photo_type, h.county_code FROM field_reports r "
                       "JOIN hazard_points h USING (hazard_id) WHERE r.report_id = %s",
                       (report_id,)).fetchone()
    if row is None or row[0] is None:
        raise HTTPException(404, f"report {report_id} has no photo")
    require(user, "read", row[2])
    return Response(bytes(row[0]), media_type=row[1],
                    headers={"Content-Disposition": "inline",
                             "X-Content-Type-Options": "nosniff"})
