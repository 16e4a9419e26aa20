"""Monitors' field reports from a phone (multipart, optional photo) and receipt confirmation."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from api import users
from tests.fixtures.api import PASSWORD, login

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def test_monitor_reports_on_assigned_point_with_photo(seeded: dict[str, int],
                                                      client: TestClient) -> None:
    monitor = login(client, "monitor.xihu")
    r = client.post("/api/hazards/HP-XIHU/reports", headers=monitor,
                    data={"kind": "cracks_widening", "severity": "severe",
                          "note": "后缘裂缝比昨天宽约2厘米", "lon": "120.005", "lat": "30.005"},
                    files={"photo": ("crack.jpg", JPEG, "image/jpeg")})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    officer = login(client, "duty.xihu")
    listed = client.get("/api/hazards/HP-XIHU/reports", headers=officer).json()
    assert [(x["kind"], x["severity"], x["reporter"]) for x in listed] == [
        ("cracks_widening", "severe", "monitor.xihu")]
    photo = client.get(listed[0]["photo"]["url"], headers=officer)
    assert photo.status_code == 200 and photo.content == JPEG
    assert photo.headers["content-type"] == "image/jpeg"
    assert listed[0]["id"] == report_id
    # Outside one's county: neither the list nor the photo.
    other = login(client, "viewer.jiao")
    assert client.get("/api/hazards/HP-XIHU/reports", headers=other).status_code == 403
    assert client.get(listed[0]["photo"]["url"], headers=other).status_code == 403


def test_reports_refused_with_reasons(seeded: dict[str, int], conn: psycopg.Connection,
                                      client: TestClient) -> None:
    users.add_user(conn, "monitor.shang", PASSWORD, "monitor", ["330110"],
                   hazard_ids=["HP-SHANG"])
    conn.commit()
    unassigned = login(client, "monitor.shang")
    r = client.post("/api/hazards/HP-XIHU/reports", headers=unassigned,
                    data={"kind": "bulging", "severity": "minor"})
    assert r.status_code == 403 and "assigned" in r.json()["detail"]
    viewer = login(client, "viewer.jiao")
    assert client.post("/api/hazards/HP-JIAO/reports", headers=viewer,
                       data={"kind": "bulging", "severity": "minor"}).status_code == 403
    monitor = login(client, "monitor.xihu")
    cases = [
        ({"kind": "earthquake", "severity": "minor"}, None, 422, "kind"),
        ({"kind": "bulging", "severity": "awful"}, None, 422, "severity"),
        ({"kind": "bulging", "severity": "minor", "observed_at": "2099-01-01T00:00+08:00"},
         None, 422, "future"),
        ({"kind": "bulging", "severity": "minor", "lon": "120.0"}, None, 422, "both"),
        ({"kind": "bulging", "severity": "minor"}, ("x.png", b"GIF89a....", "image/png"),
         415, "JPEG, PNG or WebP"),
        ({"kind": "bulging", "severity": "minor"},
         ("big.png", PNG + b"\x00" * (5 * 1024 * 1024), "image/png"), 413, "MiB"),
    ]
    for data, photo, code, text in cases:
        r = client.post("/api/hazards/HP-XIHU/reports", headers=monitor, data=data,
                        files={"photo": photo} if photo else None)
        assert r.status_code == code and text in r.text, (data, r.text)
    assert client.post("/api/hazards/NOPE/reports", headers=monitor,
                       data={"kind": "bulging", "severity": "minor"}).status_code == 404
    with psycopg.connect(conn.info.dsn) as c:
        assert c.execute("SELECT count(*) FROM field_reports").fetchone() == (0,)


def test_monitor_confirms_receipt(seeded: dict[str, int], client: TestClient) -> None:
    monitor = login(client, "monitor.xihu")
    alert_id = seeded["HP-XIHU"]
    r = client.post(f"/api/alerts/{alert_id}/receipt", headers=monitor)
    assert r.status_code == 200
    assert ("monitor.xihu", "received") in [(a["actor"], a["action"]) for a in r.json()["audit"]]
    # A monitor may confirm but not acknowledge for the duty room.
    assert client.post(f"/api/alerts/{alert_id}/ack", headers=monitor,
                       json={}).status_code == 403
    assert client.post(f"/api/alerts/{seeded['HP-JIAO']}/receipt",
                       headers=monitor).status_code == 403
