"""/api/cap: the CAP 1.2 messages the notifier wrote for every warning event (notify's
cap_feed table, read here), as an Atom feed and one document at a time.

CAP consumers (a county's public warning platform, a media gateway) poll the feed with an
API key of a viewer whose scope covers what they republish: each user sees the messages of
alerts in their counties only. A drill's messages (status Exercise) never appear in the live
feed: `?status=Exercise` lists them alone, for the officers and monitors who take part
(roles that may confirm receipt); a viewer, whose key a republishing platform holds, may
not ask for them, nor fetch one by its identifier.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS
from api.scope import allowed, sql_prefixes, whole_province

router = APIRouter(prefix="/api/cap", tags=["CAP"], responses=ERRORS)
CAP_TYPE = "application/cap+xml"
ATOM = "http://www.w3.org/2005/Atom"
_CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
_FROM = """cap_feed c JOIN alerts a USING (alert_id)
    LEFT JOIN hazard_points h ON a.target_type = 'hazard' AND h.hazard_id = a.target_id"""


def _scope_sql(counties: tuple[str, ...]) -> tuple[str, list[Any]]:
    tail = " OR h.county_code IS NULL)" if whole_province(counties) else ")"
    return "(h.county_code LIKE ANY(%s)" + tail, [sql_prefixes(counties)]


def _check_exercise(user: CurrentUser, field: str) -> None:
    if not allowed(user.role, "confirm_receipt"):
        raise HTTPException(403, f"{field}: exercise (演练) messages are for the officers and "
                                 f"monitors taking part, not role {user.role}")


def _headline(xml: str) -> str:
    try:
        found = ET.fromstring(xml).find(f"{_CAP}info/{_CAP}headline")
    except ET.ParseError:
        return ""
    return (found.text or "") if found is not None else ""


@router.get("/feed", summary="CAP messages of your counties as an Atom feed",
            response_class=Response,
            responses={200: {"content": {"application/atom+xml": {}}}})
def feed(conn: Conn, user: CurrentUser,
         alert_id: Annotated[int | None, Query(ge=1)] = None,
         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
         status: Annotated[Literal["Actual", "Exercise"], Query(
             description="Actual: live warnings (default); Exercise: drills only")] = "Actual",
         ) -> Response:
    """Newest first; each entry links to its CAP document (`/api/cap/{identifier}`)."""
    require(user, "read", check_county=False)
    if status == "Exercise":
        _check_exercise(user, "status")
    where, params = _scope_sql(user.counties)
    where += " AND a.exercise IS NULL" if status == "Actual" else " AND a.exercise IS NOT NULL"
    if alert_id is not None:
        where += " AND c.alert_id = %s"
        params.append(alert_id)
    rows = conn.execute(f"SELECT c.identifier, c.alert_id, c.msg_type, c.sent, c.xml "
                        f"FROM {_FROM} WHERE {where} ORDER BY c.sent DESC, c.identifier DESC "
                        f"LIMIT %s", [*params, limit]).fetchall()
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    drills = status == "Exercise"
    ET.SubElement(root, f"{{{ATOM}}}id").text = "urn:geowarn:cap-feed" + (
        ":exercise" if drills else "")
    ET.SubElement(root, f"{{{ATOM}}}title").text = "GeoWarn CAP 1.2" + (
        " (演练 exercises)" if drills else "")
    newest = rows[0][3] if rows else datetime(2000, 1, 1, tzinfo=UTC)
    ET.SubElement(root, f"{{{ATOM}}}updated").text = newest.isoformat()
    author = ET.SubElement(root, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "GeoWarn"
    for identifier, alert, kind, sent, xml in rows:
        entry = ET.SubElement(root, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:geowarn:cap:{identifier}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = _headline(xml) or identifier
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = sent.isoformat()
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = f"{kind} (alert {alert})"
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="alternate", type=CAP_TYPE,
                      href=f"/api/cap/{identifier}")
    body = ET.tostring(root, encoding="unicode", xml_declaration=True)
    return Response(body, media_type="application/atom+xml")


@router.get("/{identifier}", summary="one CAP 1.2 document", response_class=Response,
            responses={200: {"content": {CAP_TYPE: {}}}})
def document(identifier: Annotated[str, Path(max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")],
             conn: Conn, user: CurrentUser) -> Response:
    row = conn.execute(f"SELECT c.xml, h.county_code, a.exercise FROM {_FROM} "
                       "WHERE c.identifier = %s", (identifier,)).fetchone()
    if row is None:
        raise HTTPException(404, f"identifier: no CAP message {identifier!r}")
    require(user, "read", row[1])
    if row[2] is not None:
        _check_exercise(user, "identifier")
    return Response(row[0], media_type=CAP_TYPE)
