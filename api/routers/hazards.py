"""/api/hazards: hazard points (隐患点) as an RFC 7946 FeatureCollection with their current
warning level, and one point's devices, monitors, shelters and households.

Residents' and monitors' names and phones are personal data: roles that do not call people
(monitor, viewer) see them masked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS
from api.scope import allowed, sql_prefixes
from gis.model import mask_phone
from gis.store import get_hazard, list_households, load_shelters, nearest_shelters

router = APIRouter(prefix="/api/hazards", tags=["hazard points"], responses=ERRORS)
LEVEL_NAMES = ("none", "blue", "yellow", "orange", "red")


_COLLECTION = (
    "SELECT coalesce(json_agg(json_build_object("
    " 'type', 'Feature', 'id', h.hazard_id, 'geometry', h.geometry,"
    " 'properties', json_build_object('id', h.hazard_id, 'name', h.name,"
    "   'hazard_type', h.hazard_type, 'scale', h.scale, 'county_code', h.county_code,"
    "   'households', h.households, 'people', h.people, 'status', h.status,"
    "   'level', (ARRAY['none','blue','yellow','orange','red'])[coalesce(l.level, 0) + 1],"
    "   'alert_id', l.alert_id)) ORDER BY h.hazard_id), '[]'::json)::text ")
# Each point's highest unresolved alert, found once for all of them (a hash join over the
# open alerts' partial index) rather than one lookup per point: the lookups were half of
# the collection's time with 5,000 points (bench/api).
_FROM = (
    "FROM hazard_points h LEFT JOIN (SELECT DISTINCT ON (a.target_id) a.target_id, "
    "  a.level, a.alert_id FROM alerts a WHERE a.target_type = 'hazard' "
    "  AND a.status <> 'resolved' ORDER BY a.target_id, a.level DESC, a.alert_id) l "
    "  ON l.target_id = h.hazard_id ")


def mask_name(name: str | None) -> str | None:
    """张三丰 -> 张**: enough for an officer to recognise a record, not to identify a person."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


@router.get("", summary="hazard points in your counties as a GeoJSON FeatureCollection",
            response_class=Response,
            responses={200: {"content": {"application/geo+json": {}}},
                       304: {"description": "unchanged since the ETag in If-None-Match"}})
def hazards(conn: Conn, user: CurrentUser, request: Request,
            county: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{5}$")] = None,
            bbox: Annotated[str | None, Query(
                description="min_lon,min_lat,max_lon,max_lat",
                pattern=r"^-?[0-9.]+,-?[0-9.]+,-?[0-9.]+,-?[0-9.]+$")] = None,
            if_none_match: Annotated[str | None, Header(
                max_length=1000, description="the ETag of a collection you hold")] = None,
            ) -> Response:
    """With 5,000 polygons this is about 2 MB: it carries an ETag, and a console that sends
    it back in If-None-Match gets 304 with no body while nothing changed. The tag is a
    version of what the collection is made of, so a 304 costs no building: each point's row
    version (PostgreSQL's xmin, new with every update whoever makes it) and the alert it
    shows, the query's text and its parameters (scope, county, bbox). The last few
    collections are kept by that version. Compressed (gzip) when the client accepts it, as
    every larger response is."""
    require(user, "read", check_county=False)
    where = ["h.county_code LIKE ANY(%s)"]
    params: list[Any] = [sql_prefixes(user.counties)]
    if county:
        where.append("h.county_code = %s")
        params.append(county)
    if bbox:
        x0, y0, x1, y1 = (float(v) for v in bbox.split(","))
        where.append("h.max_lon >= %s AND h.max_lat >= %s AND h.min_lon <= %s "
                     "AND h.min_lat <= %s")
        params += [x0, y0, x1, y1]
    tail = _FROM + "WHERE " + " AND ".join(where)
    row = conn.execute(
        "SELECT current_database() || md5(coalesce(string_agg(h.hazard_id || '/' || "
        "h.xmin::text || '/' || coalesce(l.alert_id || '/' || l.level, ''), ',' "
        "ORDER BY h.hazard_id), '')) " + tail,
        params).fetchone()
    version = f"{_COLLECTION}{tail}{params!r}{row[0] if row else ''}"
    # Weak: the same collection is sent gzipped or not (RFC 9110 §8.8.1).
    etag = 'W/"' + hashlib.blake2b(version.encode(), digest_size=16).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache",
               "Vary": "Authorization, Cookie, Accept-Encoding"}
    if if_none_match and etag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    cached = _cached(etag)
    if cached is None:
        # Built in SQL and passed through as text: 5,000 polygons need no Python objects.
        # (Read in a later snapshot than the version: a change in between costs the client
        # one more transfer at its next refresh, never a stale map.)
        row = conn.execute(_COLLECTION + tail, params).fetchone()
        body = '{"type":"FeatureCollection","features":' + (row[0] if row else "[]") + "}"
        cached = _cache(etag, body.encode())
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        # Compressed once per version, not per request (the GZip middleware passes a
        # response that names its encoding through).
        return Response(cached.gzipped(), media_type="application/geo+json",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(cached.body, media_type="application/geo+json", headers=headers)


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class _Collection:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzipped is None:  # two threads may both compress once: harmless
            self._gzipped = gzip.compress(self.body, compresslevel=5, mtime=0)
        return self._gzipped


# The last few collections by version: after a level change every console of a county asks
# for the same new collection at once, and it is built once (the version is read fresh on
# every request, so a cached body is never an outdated one). A few MB at most.
_BODIES: OrderedDict[str, _Collection] = OrderedDict()
_BODIES_LOCK = threading.Lock()
CACHED_COLLECTIONS = 8


def _cached(etag: str) -> _Collection | None:
    with _BODIES_LOCK:
        found = _BODIES.get(etag)
        if found is not None:
            _BODIES.move_to_end(etag)
        return found


def _cache(etag: str, body: bytes) -> _Collection:
    with _BODIES_LOCK:
        found = _BODIES[etag] = _Collection(body)
        while len(_BODIES) > CACHED_COLLECTIONS:
            _BODIES.popitem(last=False)
        return found


@router.get("/{hazard_id}", summary="one hazard point: devices, monitors, shelters, households")
def hazard_detail(hazard_id: str, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    hazard = get_hazard(conn, hazard_id)
    require(user, "read", hazard.county_code)
    personal = allowed(user.role, "read_personal")

    def person(name: str | None, phone: str | None) -> dict[str, str | None]:
        return {"name": name if personal else mask_name(name),
                "phone": phone if personal else mask_phone(phone)}

    devices = conn.execute(
        "SELECT d.device_id, d.kind, d.status, d.name, d.lon, d.lat, h.last_seen "
        "FROM devices d LEFT JOIN device_health h USING (device_id) "
        "WHERE d.hazard_id = %s ORDER BY d.device_id", (hazard_id,)).fetchall()
    shelters = {s.shelter_id: s for s in load_shelters(conn)}
    ranked = nearest_shelters(conn, hazard_id)
    def shelter(shelter_id: str, distance_m: float) -> dict[str, Any]:
        s = shelters[shelter_id]
        return {"id": s.shelter_id, "name": s.name, "distance_m": round(distance_m),
                "free": s.free,
                "contact": person(s.contact.name, s.contact.phone) if s.contact else None}

    level = conn.execute(
        "SELECT max(level) FROM alerts WHERE target_type = 'hazard' AND target_id = %s "
        "AND status <> 'resolved'", (hazard_id,)).fetchone()
    return {
        "id": hazard.hazard_id, "name": hazard.name, "hazard_type": hazard.hazard_type,
        "scale": hazard.scale, "county_code": hazard.county_code, "status": hazard.status,
        "households": hazard.households, "people": hazard.people,
        "level": LEVEL_NAMES[int(level[0] or 0) if level else 0],
        "geometry": json.loads(json.dumps(hazard.geometry.__geo_interface__)),
        "responsible": (person(hazard.responsible.name, hazard.responsible.phone)
                        if hazard.responsible else None),
        "monitors": [person(m.name, m.phone) for m in hazard.monitors],
        "devices": [{"id": d, "kind": k, "status": s, "name": n, "lon": lon, "lat": lat,
                     "last_seen": seen.isoformat() if seen else None}
                    for d, k, s, n, lon, lat, seen in devices],
        "shelters": [shelter(r.shelter_id, r.distance_m) for r in ranked[:5]
                     if r.shelter_id in shelters],
        "resident_households": [
            {"id": h.household_id, "members": h.members, **{
                k: v for k, v in person(h.head, h.phone).items()}}
            for h in list_households(conn, hazard_id, reveal_phones=True)],
    }
