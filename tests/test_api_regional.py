"""Regional warnings through the API: GeoJSON and CAP import by admins and duty officers for
warnings covering only their counties (codes named and hazard points under the polygon),
all-or-nothing with 4xx naming the field, and the list of warnings concerning a user."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from gis.regional import regional_floor
from tests.fixtures.api import SQUARE, login
from tests.test_gis_regional import cap_doc, cap_info

GEO = {"Content-Type": "application/geo+json"}
CAP = {"Content-Type": "application/cap+xml"}
AT = datetime(2026, 6, 21, 6, tzinfo=UTC)


def feature(wid: str, **props: Any) -> dict[str, Any]:
    geometry = props.pop("geometry", None)
    base = {"id": wid, "issuer": "杭州市自然资源和规划局", "level": "orange",
            "valid_from": "2026-06-21T08:00:00+08:00",
            "valid_to": "2026-06-22T08:00:00+08:00", "headline": "地质灾害气象风险预警"}
    return {"type": "Feature", "geometry": geometry, "properties": {**base, **props}}


def collection(*features: dict[str, Any]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def test_officers_import_warnings_for_their_counties_only(
        seeded: dict[str, int], conn: psycopg.Connection, client: TestClient) -> None:
    xihu, admin = login(client, "duty.xihu"), login(client, "admin")
    r = client.post("/api/regional-warnings", headers={**xihu, **GEO},
                    content=collection(feature("W-XIHU", county_codes=["330110"])))
    assert r.status_code == 200, r.text
    assert (r.json()["inserted"], r.json()["warnings"]) == (1, ["W-XIHU"])
    assert regional_floor(conn, ["HP-XIHU", "HP-SHANG"], AT) == {"HP-XIHU": 3, "HP-SHANG": 0}
    # The whole city is beyond a county officer; so is a polygon over other counties' points.
    r = client.post("/api/regional-warnings", headers={**xihu, **GEO},
                    content=collection(feature("W-CITY", county_codes="330100")))
    assert r.status_code == 403 and "330100" in r.json()["detail"]
    area = feature("W-AREA", geometry=SQUARE, level="red")
    r = client.post("/api/regional-warnings", headers={**xihu, **GEO}, content=collection(area))
    assert r.status_code == 403 and "330106" in r.json()["detail"] \
        and "331002" in r.json()["detail"]
    for who in ("monitor.xihu", "viewer.jiao"):
        r = client.post("/api/regional-warnings", headers={**login(client, who), **GEO},
                        content=collection(feature("W-X", county_codes=["330110"])))
        assert r.status_code == 403, who
    r = client.post("/api/regional-warnings", headers={**admin, **GEO},
                    content=collection(area))
    assert r.status_code == 200 and r.json()["inserted"] == 1
    assert regional_floor(conn, ["HP-JIAO"], AT) == {"HP-JIAO": 4}
    # Listing: what concerns each user.
    listed = client.get("/api/regional-warnings", headers=login(client, "viewer.jiao")).json()
    assert [(w["id"], w["covered_hazards"]) for w in listed] == [("W-AREA", ["HP-JIAO"])]
    listed = client.get("/api/regional-warnings", headers=login(client, "duty.city"),
                        params={"active_at": "2026-06-21T10:00:00+08:00"}).json()
    assert {w["id"] for w in listed} == {"W-XIHU", "W-AREA"}
    assert client.get("/api/regional-warnings", headers=xihu,
                      params={"active_at": "2026-06-23T10:00:00+08:00"}).json() == []


def test_bad_warnings_are_refused_whole_naming_the_field(seeded: dict[str, int],
                                                        conn: psycopg.Connection,
                                                        client: TestClient) -> None:
    headers = {**login(client, "admin"), **GEO}
    cases = [("{not json", "not JSON"), (json.dumps({"type": "Feature"}), "FeatureCollection"),
             (collection(feature("W-1", county_codes=["330110"]),
                         feature("W-2", county_codes=["330110"], level="purple")), "level"),
             (collection(feature("W-3", county_codes=["330110"], valid_to=None)), "valid_to"),
             (collection(feature("W-4")), "county_codes"),
             (collection(feature("W-5", county_codes=["33"])), "county_codes"), ("", "body")]
    for body, field in cases:
        r = client.post("/api/regional-warnings", headers=headers, content=body)
        assert r.status_code == 422 and field in r.json()["detail"], (body, r.text)
    assert conn.execute("SELECT count(*) FROM regional_warnings").fetchone() == (0,)
    r = client.post("/api/regional-warnings", headers=headers, content=b"\xff\xfe")
    assert r.status_code == 422 and "UTF-8" in r.text
    r = client.post("/api/regional-warnings", headers=headers, content=b" " * (3 << 20))
    assert r.status_code == 413


def test_cap_import_update_and_cancel_within_scope(seeded: dict[str, int],
                                                   conn: psycopg.Connection,
                                                   client: TestClient) -> None:
    xihu, city = login(client, "duty.xihu"), login(client, "duty.city")
    area = "<geocode><valueName>ADCODE</valueName><value>330110</value></geocode>"
    alert = cap_doc(identifier="CAP-XIHU", info=cap_info(severity="Severe", area=area))
    r = client.post("/api/regional-warnings/cap", headers={**xihu, **CAP}, content=alert)
    assert r.status_code == 200 and r.json()["warnings"] == ["CAP-XIHU"], r.text
    assert regional_floor(conn, ["HP-XIHU"], AT) == {"HP-XIHU": 3}
    jiao = "<geocode><valueName>ADCODE</valueName><value>331002</value></geocode>"
    r = client.post("/api/regional-warnings/cap", headers={**login(client, "admin"), **CAP},
                    content=cap_doc(identifier="CAP-JIAO", info=cap_info(area=jiao)))
    assert r.status_code == 200
    # An officer may not end a warning of another city's county...
    cancel_jiao = cap_doc(identifier="CAP-JIAO-X", msg_type="Cancel",
                          sent="2026-06-21T12:00:00+08:00",
                          references="synthetic@example.org,CAP-JIAO,2026-06-21T08:00:00+08:00")
    r = client.post("/api/regional-warnings/cap", headers={**city, **CAP}, content=cancel_jiao)
    assert r.status_code == 403 and "331002" in r.json()["detail"]
    # ...but the city's duty officer may end one of a county of the city.
    cancel = cap_doc(identifier="CAP-XIHU-X", msg_type="Cancel",
                     sent="2026-06-21T12:00:00+08:00",
                     references="synthetic@example.org,CAP-XIHU,2026-06-21T08:00:00+08:00")
    r = client.post("/api/regional-warnings/cap", headers={**city, **CAP}, content=cancel)
    assert r.status_code == 200, r.text
    assert regional_floor(conn, ["HP-XIHU"], datetime(2026, 6, 21, 5, tzinfo=UTC)) == {
        "HP-XIHU": 0}  # 13:00 in China, after the Cancel's 12:00
    for body, field in ((cap_doc(status="Exercise"), "Exercise"), ("<alert", "XML"),
                        (cap_doc(info=cap_info(expires="")), "expires")):
        r = client.post("/api/regional-warnings/cap", headers={**xihu, **CAP}, content=body)
        assert r.status_code == 422 and field in r.json()["detail"], r.text
