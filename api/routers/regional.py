"""/api/regional-warnings: regional meteorological geohazard risk warnings (issued per county
or polygon, usually for 24 hours), imported as GeoJSON or CAP 1.2 and listed. Each sets a
floor under the levels of the hazard points it covers (gis/regional.py; the engine reads it).

Who may import: admins and duty officers, for warnings whose whole coverage lies in their
counties: every administrative code it names, and the county of every hazard point its
polygon covers. An import is all or nothing: one bad feature refuses the file, naming it.
A CAP Update or Cancel may end only warnings the same rule would let the user import.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS
from api.scope import covers, prefix
from api.users import User
from gis import geometry, regional
from gis.geometry import GeometryError
from gis.model import FieldError, RegionalWarning
from gis.store import load_hazards

router = APIRouter(prefix="/api/regional-warnings", tags=["regional warnings"],
                   responses={**ERRORS, 413: ERRORS[422] | {"description": "body too large"}})
MAX_BODY = 2 * 1024 * 1024
LEVEL_NAMES = ("none", "blue", "yellow", "orange", "red")


class ImportOut(BaseModel):
    inserted: int
    updated: int
    unchanged: int
    warnings: list[str]
    notes: list[str]


class RegionalWarningOut(BaseModel):
    id: str
    issuer: str
    level: str
    valid_from: datetime
    valid_to: datetime
    cancelled_at: datetime | None
    county_codes: list[str]
    geometry: dict[str, Any] | None
    headline: str | None
    source: str
    covered_hazards: list[str]


def _body_doc(types: Sequence[str]) -> dict[str, Any]:
    schema = {"type": "object"} if "json" in types[0] else {"type": "string"}
    return {"requestBody": {"required": True,
                            "content": {t: {"schema": schema} for t in types}}}


async def _text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body: larger than {MAX_BODY // (1024 * 1024)} MiB")
    if not body.strip():
        raise HTTPException(422, "body: empty")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "body: not UTF-8") from None


def _covered(conn: Conn, w: RegionalWarning) -> list[tuple[str, str]]:
    """(hazard id, county) of the hazard points `w`'s polygon covers."""
    if w.geometry is None:
        return []
    found = load_hazards(conn, bbox=w.geometry.bounds)
    shapes = [(h.hazard_id, h.county_code, h.geometry) for h in found]
    ids = regional.covered(RegionalWarning(w.warning_id, w.issuer, w.level, w.valid_from,
                                           w.valid_to, (), w.geometry), shapes)
    return sorted((h, c) for h, c, _ in shapes if h in ids)


def _check_cover(conn: Conn, user: User, w: RegionalWarning) -> None:
    outside = [c for c in w.county_codes if not covers(user.counties, c)]
    outside += sorted({c for _, c in _covered(conn, w) if not covers(user.counties, c)})
    if outside:
        raise HTTPException(403, f"warning {w.warning_id}: covers {', '.join(outside)}, "
                                 f"outside your counties ({', '.join(user.counties)})")


def _stored(conn: Conn, ids: Sequence[str]) -> list[RegionalWarning]:
    rows = conn.execute(
        "SELECT warning_id, issuer, level, valid_from, valid_to, county_codes, geometry, "
        "headline, source, cancelled_at FROM regional_warnings WHERE warning_id = ANY(%s) "
        "OR split_part(warning_id, '#', 1) = ANY(%s) ORDER BY warning_id",
        (list(ids), list(ids))).fetchall()
    return [RegionalWarning(r[0], r[1], r[2], r[3], r[4], tuple(r[5]),
                            geometry.from_geojson(r[6]) if r[6] is not None else None,
                            r[7], r[8], r[9]) for r in rows]


def _report(report: regional.ImportReport, ids: list[str]) -> dict[str, Any]:
    return {"inserted": report.inserted, "updated": report.updated,
            "unchanged": report.unchanged, "warnings": ids,
            "notes": [str(p) for p in report.warnings]}


@router.post("", response_model=ImportOut, summary="import warnings from GeoJSON",
             openapi_extra=_body_doc(["application/geo+json", "application/json"]))
async def import_geojson(request: Request, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    """A FeatureCollection: properties id, issuer, level (blue..red or 1..4), valid_from,
    valid_to (ISO 8601 with offset), county_codes and/or a Polygon geometry, headline."""
    require(user, "import_warnings", check_county=False)
    text = await _text(request)
    try:
        parsed = regional.read_geojson(text)
    except (FieldError, GeometryError) as exc:
        raise HTTPException(422, f"body: {exc}") from None
    if parsed.errors:
        raise HTTPException(422, "; ".join(str(p) for p in parsed.errors))
    for w in parsed.records:
        _check_cover(conn, user, w)
    report = regional.store_warnings(conn, parsed)
    return _report(report, [w.warning_id for w in parsed.records])


@router.post("/cap", response_model=ImportOut, summary="import a CAP 1.2 warning message",
             openapi_extra=_body_doc(["application/cap+xml", "application/xml"]))
async def import_cap(request: Request, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    """Alert adds warnings; Update adds and ends the referenced ones; Cancel ends them."""
    require(user, "import_warnings", check_county=False)
    text = await _text(request)
    try:
        parsed, ends = regional.read_cap(text)
    except (FieldError, GeometryError) as exc:
        raise HTTPException(422, f"body: {exc}") from None
    for w in [*parsed.records, *_stored(conn, list(ends))]:
        _check_cover(conn, user, w)
    report = regional.store_warnings(conn, parsed, ends=ends)
    return _report(report, [w.warning_id for w in parsed.records])


def _overlaps(scopes: Sequence[str], code: str) -> bool:
    """A code and a scope overlap when either contains the other (a province-wide warning
    concerns a county officer; a county warning concerns the city's)."""
    return any(code.startswith(prefix(s)) or s.startswith(prefix(code)) for s in scopes)


@router.get("", response_model=list[RegionalWarningOut],
            summary="regional warnings concerning your counties")
def list_warnings(conn: Conn, user: CurrentUser,
                  active_at: Annotated[datetime | None, Query(
                      description="only those in force at this time")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    """Newest first. A warning concerns you when a code it names overlaps your scope or its
    polygon covers one of your hazard points."""
    require(user, "read", check_county=False)
    if active_at is not None and active_at.tzinfo is None:
        raise HTTPException(422, "active_at: give a time zone (2026-07-01T08:00+08:00)")
    rows = conn.execute(
        "SELECT warning_id FROM regional_warnings WHERE %(at)s::timestamptz IS NULL OR "
        "(valid_from <= %(at)s AND valid_to > %(at)s AND (cancelled_at IS NULL OR "
        "cancelled_at > %(at)s)) ORDER BY valid_from DESC, warning_id LIMIT %(n)s",
        {"at": active_at, "n": limit}).fetchall()
    out = []
    for w in _stored(conn, [r[0] for r in rows]):
        hazards = [h for h, c in _covered(conn, w) if covers(user.counties, c)]
        if not hazards and not any(_overlaps(user.counties, c) for c in w.county_codes):
            continue
        out.append({"id": w.warning_id, "issuer": w.issuer, "level": LEVEL_NAMES[w.level],
                    "valid_from": w.valid_from, "valid_to": w.valid_to,
                    "cancelled_at": w.cancelled_at, "county_codes": list(w.county_codes),
                    "geometry": geometry.to_geojson(w.geometry) if w.geometry else None,
                    "headline": w.headline, "source": w.source, "covered_hazards": hazards})
    out.sort(key=lambda d: (d["valid_from"], d["id"]), reverse=True)
    return out
