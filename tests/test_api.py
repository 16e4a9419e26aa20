"""The duty officers' API against the real database: logins and sessions, the authorization
matrix (every role x endpoint x own/other county), masking of personal data, clear 4xx."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import users
from api.scope import covers, prefix
from geowarn.cli import main
from tests.fixtures.api import HAZARDS, PASSWORD, USERS, login


def test_scope_codes() -> None:
    assert prefix("330000") == "33" and prefix("330100") == "3301" and prefix("330110") == "330110"
    assert covers(["330100"], "330110") and not covers(["330100"], "331002")
    assert covers(["330000"], None) and not covers(["330110"], None)


def test_login_session_logout_and_errors(seeded: dict[str, int], client: TestClient) -> None:
    bad = client.post("/api/auth/login", json={"username": "duty.xihu", "password": "nope"})
    unknown = client.post("/api/auth/login", json={"username": "ghost", "password": "nope"})
    assert bad.status_code == unknown.status_code == 401
    assert bad.json() == unknown.json()  # no telling which user names exist
    headers = login(client, "duty.xihu")
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["counties"] == ["330110"]
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    r = client.get("/api/auth/me", headers=headers)
    assert r.status_code == 401 and "log in again" in r.json()["detail"]
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/api/alerts", headers={"Authorization": "Bearer forged"}).status_code \
        == 401


def test_expired_and_revoked_sessions(seeded: dict[str, int], conn: psycopg.Connection,
                                      client: TestClient) -> None:
    old, _, _ = users.login(conn, "duty.xihu", PASSWORD, "test", session_hours=1,
                            now=datetime.now(UTC) - timedelta(hours=2))
    r = client.get("/api/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401
    headers = login(client, "duty.city")
    other = login(client, "duty.city")
    r = client.post("/api/auth/password", headers=headers,
                    json={"current_password": PASSWORD, "new_password": "a new long secret"})
    assert r.status_code == 204
    # A password change ends every session of the user.
    assert client.get("/api/auth/me", headers=other).status_code == 401
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    fresh = login(client, "duty.city", "a new long secret")
    assert main(["users", "disable", "duty.city"]) == 0
    assert client.get("/api/auth/me", headers=fresh).status_code == 401
    r = client.post("/api/auth/login", json={"username": "duty.city",
                                             "password": "a new long secret"})
    assert r.status_code == 401 and "disabled" in r.json()["detail"]


def test_login_throttled_after_repeated_failures(seeded: dict[str, int],
                                                 client: TestClient) -> None:
    for _ in range(users.THROTTLE_FAILURES):
        r = client.post("/api/auth/login", json={"username": "admin", "password": "guess"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # Another user is not locked out by someone guessing at "admin".
    assert client.post("/api/auth/login", json={"username": "duty.xihu",
                                                "password": PASSWORD}).status_code == 200


def test_api_key_for_machine_clients(seeded: dict[str, int], conn: psycopg.Connection,
                                     client: TestClient) -> None:
    key = users.create_api_key(conn, "viewer.jiao", "wall display")
    conn.commit()
    r = client.get("/api/alerts", headers={"X-API-Key": key})
    assert r.status_code == 200 and [a["target"]["id"] for a in r.json()] == ["HP-JIAO"]
    assert client.get("/api/alerts", headers={"X-API-Key": key + "x"}).status_code == 401


def _expected(role: str, counties: list[str], action: str, county: str | None) -> int:
    from api.scope import allowed
    if not allowed(role, action):
        return 403
    return 200 if covers(counties, county) else 403


def test_authorization_matrix(seeded: dict[str, int], conn: psycopg.Connection,
                              client: TestClient) -> None:
    """Lists and the main details by role x own/other county (the matrix of every route the
    app serves is tests/test_api_authz.py)."""
    county_of = {hid: county for hid, county, _ in HAZARDS}
    cap_id = dict(conn.execute("SELECT alert_id, identifier FROM cap_feed").fetchall())
    conn.commit()
    checked = 0
    for username, (role, counties) in USERS.items():
        headers = login(client, username)
        visible = {a["target"]["id"] for a in
                   client.get("/api/alerts", headers=headers).json()}
        assert visible == ({hid for hid, county, _ in HAZARDS if covers(counties, county)}
                           | ({"RIVER-1"} if covers(counties, None) else set()))
        features = client.get("/api/hazards", headers=headers).json()["features"]
        assert {f["id"] for f in features} == {h for h, c, _ in HAZARDS if covers(counties, c)}
        own = {seeded[h] for h, c, _ in HAZARDS if covers(counties, c)}
        told = client.get("/api/notifications", headers=headers).json()
        assert {d["alert_id"] for d in told} == own, username
        feed = client.get("/api/cap/feed", headers=headers).text
        assert {i for a, i in cap_id.items() if f"/api/cap/{i}\"" in feed} == \
            {cap_id[a] for a in own}, username
        for hid, county in county_of.items():
            alert_id = seeded[hid]
            cases: list[tuple[str, str, str, dict[str, Any] | None]] = [
                ("read", "GET", f"/api/alerts/{alert_id}", None),
                ("read", "GET", f"/api/hazards/{hid}", None),
                ("read", "GET", f"/api/notifications?alert_id={alert_id}", None),
                ("read", "GET", f"/api/cap/{cap_id[alert_id]}", None),
                ("act_on_alerts", "POST", f"/api/alerts/{alert_id}/comments",
                 {"text": "patrol sent"}),
                ("act_on_alerts", "POST", f"/api/alerts/{alert_id}/ack", {"note": "seen"}),
            ]
            for action, method, url, body in cases:
                r = client.request(method, url, headers=headers, json=body)
                want = _expected(role, counties, action, county)
                if want == 200 and url.endswith("/comments"):
                    want = 201
                if want == 200 and url.endswith("/ack") and r.status_code == 422:
                    assert "already acknowledged" in r.json()["detail"]
                    continue  # a colleague of the same county acknowledged it first
                assert r.status_code == want, (username, method, url, r.text)
                checked += 1
    assert checked >= len(USERS) * len(HAZARDS) * 3


def test_acknowledge_and_resolve_are_audited(seeded: dict[str, int],
                                             client: TestClient) -> None:
    headers = login(client, "duty.xihu")
    alert_id = seeded["HP-XIHU"]
    r = client.post(f"/api/alerts/{alert_id}/ack", headers=headers,
                    json={"note": "called monitor 李四"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert r.json()["acknowledged_by"] == "duty.xihu"
    r = client.post(f"/api/alerts/{alert_id}/resolve", headers=headers, json={})
    assert r.status_code == 422 and "reason" in r.text
    r = client.post(f"/api/alerts/{alert_id}/resolve", headers=headers,
                    json={"reason": "inspected: sensor knocked by a branch"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    detail = client.get(f"/api/alerts/{alert_id}", headers=headers).json()
    assert [(a["actor"], a["action"]) for a in detail["audit"]
            if a["actor"] != "test"] == [("duty.xihu", "acknowledged"),
                                         ("duty.xihu", "resolved")]
    assert detail["events"][0]["level"] == "red"


def test_filters_and_clear_4xx(seeded: dict[str, int], client: TestClient) -> None:
    headers = login(client, "admin")
    r = client.get("/api/alerts", headers=headers, params={"level": "orange"})
    assert [a["level"] for a in r.json()] == ["red", "orange"]
    r = client.get("/api/alerts", headers=headers, params={"kind": "water_level"})
    assert [a["target"]["id"] for a in r.json()] == ["RIVER-1"]
    for params, field in (({"status": "lost"}, "status"), ({"level": "purple"}, "level"),
                          ({"county": "33"}, "county"), ({"limit": "0"}, "limit"),
                          ({"since": "2026-07-01T00:00"}, "since")):
        r = client.get("/api/alerts", headers=headers, params=params)
        assert r.status_code == 422 and field in r.text, (params, r.text)
    assert client.get("/api/alerts/999999", headers=headers).status_code == 404
    assert client.get("/api/alerts/abc", headers=headers).status_code == 422
    r = client.post(f"/api/alerts/{seeded['HP-XIHU']}/ack", headers=headers,
                    json={"note": "x", "extra": 1})
    assert r.status_code == 422 and "extra" in r.text
    r = client.post(f"/api/alerts/{seeded['HP-XIHU']}/ack", headers=headers,
                    content=b"{not json", )
    assert r.status_code == 422
    # A NUL byte, which PostgreSQL cannot store, is refused by the schema, naming the field.
    r = client.post(f"/api/alerts/{seeded['HP-XIHU']}/comments", headers=headers,
                    json={"text": "a\u0000b"})
    assert r.status_code == 422 and "text" in r.json()["detail"], r.text
    r = client.post("/api/auth/login", json={"username": "ad\u0000min", "password": "x"})
    assert r.status_code == 422 and "username" in r.json()["detail"], r.text
    assert client.get("/api/hazards/NOPE", headers=headers).status_code == 404


def test_personal_data_masked_for_roles_that_do_not_call_people(
        seeded: dict[str, int], client: TestClient) -> None:
    officer = client.get("/api/hazards/HP-XIHU", headers=login(client, "duty.xihu")).json()
    monitor = client.get("/api/hazards/HP-XIHU", headers=login(client, "monitor.xihu")).json()
    assert {h["phone"] for h in officer["resident_households"]} == {"13700001234", None}
    assert {h["name"] for h in officer["resident_households"]} == {"张三丰", "赵六"}
    assert {h["phone"] for h in monitor["resident_households"]} == {"137****1234", None}
    assert {h["name"] for h in monitor["resident_households"]} == {"张**", "赵*"}
    assert monitor["shelters"][0]["contact"]["phone"] == "136****9999"
    assert officer["level"] == "red" and officer["shelters"][0]["name"] == "村文化礼堂"
    fc = client.get("/api/hazards", headers=login(client, "monitor.xihu"))
    assert fc.headers["content-type"].startswith("application/geo+json")
    assert "13700001234" not in fc.text and "13912345678" not in fc.text


def test_healthz_and_users_cli(db_url: str, client: TestClient,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    monkeypatch.setenv("NEW_PW", "a long enough password")
    assert main(["users", "add", "duty.lin", "--role", "duty_officer", "--county", "330182",
                 "--password-env", "NEW_PW"]) == 0
    assert main(["users", "add", "duty.lin", "--role", "duty_officer", "--county", "330182",
                 "--password-env", "NEW_PW"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["users", "add", "x.y", "--role", "viewer", "--county", "33",
                 "--password-env", "NEW_PW"]) == 2
    assert "six-digit" in capsys.readouterr().err
    monkeypatch.setenv("SHORT", "short")
    assert main(["users", "add", "x.z", "--role", "viewer", "--county", "330182",
                 "--password-env", "SHORT"]) == 2
    assert "at least 10" in capsys.readouterr().err
    assert main(["users", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [u["username"] for u in listed] == ["duty.lin"]
    assert "a long enough password" not in json.dumps(listed)
    with psycopg.connect(db_url) as c:
        stored = c.execute("SELECT password_hash FROM api_users").fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")


def test_metrics_for_admins_only(seeded: dict[str, int], conn: psycopg.Connection,
                                 client: TestClient) -> None:
    conn.execute("INSERT INTO dead_letters (received_at, topic, reason, detail, payload, "
                 "payload_size) VALUES (now(), 't', 'bad_json', 'x', '', 0)")
    conn.commit()
    assert client.get("/metrics", headers=login(client, "duty.city")).status_code == 403
    r = client.get("/metrics", headers=login(client, "admin"))
    assert r.status_code == 200
    text = r.text
    assert 'geowarn_open_alerts{hazard_kind="deformation",level="red"} 1.0' in text
    assert 'geowarn_open_alerts{hazard_kind="water_level",level="blue"} 1.0' in text
    assert 'geowarn_dead_letters{reason="bad_json"} 1.0' in text
    depth = re.search(r"^geowarn_outbox_depth (\S+)$", text, re.M)
    assert depth is not None and float(depth.group(1)) == 4.0, text  # the four openings


def test_hazard_map_etag_and_gzip(seeded: dict[str, int], conn: psycopg.Connection,
                                  client: TestClient) -> None:
    headers = login(client, "duty.city")
    first = client.get("/api/hazards", headers={**headers, "Accept-Encoding": "gzip"})
    assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and "Accept-Encoding" in first.headers["vary"]
    same = client.get("/api/hazards", headers={**headers, "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    other = client.get("/api/hazards", headers={**headers, "If-None-Match": 'W/"stale"'})
    assert other.status_code == 200 and other.json() == first.json()
    plain = client.get("/api/hazards", headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == first.json()
    # A level change is a new collection: the old tag no longer matches.
    from alerts.lifecycle.writes import LevelChange, apply_changes
    from alerts.methods.levels import Level
    from tests.fixtures.api import T0
    apply_changes(conn, [LevelChange("hazard", "HP-SHANG", "deformation", Level.RED,
                                     T0.replace(hour=3))], engine="test")
    changed = client.get("/api/hazards", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    # Any change to a point's row is a new version, whoever writes it (the tag is built from
    # the rows' versions, not from the body), and nothing else is.
    again = client.get("/api/hazards", headers=headers)
    assert again.headers["etag"] == changed.headers["etag"]
    conn.execute("UPDATE hazard_points SET name = name || ' (复核)' WHERE hazard_id = 'HP-XIHU'")
    renamed = client.get("/api/hazards", headers={**headers,
                                                  "If-None-Match": again.headers["etag"]})
    assert renamed.status_code == 200 and "复核" in renamed.text
    resolved = client.post(f"/api/alerts/{seeded['HP-SHANG']}/resolve", headers=headers,
                           json={"reason": "inspected"})
    assert resolved.status_code == 200
    after = client.get("/api/hazards", headers={**headers,
                                                "If-None-Match": renamed.headers["etag"]})
    assert after.status_code == 200
    assert [f["properties"]["level"] for f in after.json()["features"]
            if f["id"] == "HP-SHANG"] == ["none"]
    # Another scope sees another collection with its own tag.
    jiao = client.get("/api/hazards", headers=login(client, "viewer.jiao"))
    assert jiao.headers["etag"] != changed.headers["etag"]
