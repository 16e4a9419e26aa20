"""The API as the console uses it: a browser sends its next request the moment a response
arrives, so a route's transaction must be committed before its response is sent (else the
session of a fresh login, or an acknowledgement, is not yet visible to the next request);
the console's files come with a Content-Security-Policy that refuses anything from elsewhere;
/ leads to the console; GET /api/me/hazards lists a monitor's points with receipts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import MutableMapping
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers import stream
from api.routers.console import CONSOLE_DIR
from tests.fixtures.api import PASSWORD, login


def _asgi_call(method: str, path: str, body: dict[str, Any], headers: dict[str, str],
               on_body: Any) -> int:
    """Call the app in-process and run `on_body()` when the response's body is sent."""
    app = create_app()
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 50000),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())]
             + [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    status: list[int] = []
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            on_body()

    # In a thread of its own: a session's Playwright (browser tests) keeps an event loop
    # running in this one.
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(app(scope, receive, send))
        except BaseException as exc:  # re-raised in the test's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if failed:
        raise failed[0]
    return status[0]


def test_committed_before_the_response_is_sent(seeded: dict[str, int], db_url: str,
                                               conn: psycopg.Connection) -> None:
    seen: dict[str, Any] = {}

    def sessions() -> None:
        with psycopg.connect(db_url) as other:
            seen["sessions"] = other.execute("SELECT count(*) FROM api_sessions").fetchone()

    assert _asgi_call("POST", "/api/auth/login",
                      {"username": "duty.xihu", "password": PASSWORD}, {}, sessions) == 200
    assert seen["sessions"] == (1,)

    with TestClient(create_app()) as client:
        headers = login(client, "duty.xihu")
    alert_id = seeded["HP-XIHU"]

    def status() -> None:
        with psycopg.connect(db_url) as other:
            seen["status"] = other.execute("SELECT status FROM alerts WHERE alert_id = %s",
                                           (alert_id,)).fetchone()

    assert _asgi_call("POST", f"/api/alerts/{alert_id}/ack", {"note": "seen"}, headers,
                      status) == 200
    assert seen["status"] == ("acknowledged",)


def test_console_files_refuse_anything_from_elsewhere(db_url: str, client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    js = client.get("/console/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    # Not one URL to another host in any of the console's files.
    for f in CONSOLE_DIR.iterdir():
        text = f.read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), f.name
        assert "https://" not in text and "//cdn" not in text, f.name
    assert client.get("/console/nothing.js").status_code == 404


def test_my_hazards_for_a_monitor(seeded: dict[str, int], client: TestClient) -> None:
    monitor = login(client, "monitor.xihu")
    points = client.get("/api/me/hazards", headers=monitor).json()
    assert [(p["id"], p["level"]) for p in points] == [("HP-XIHU", "red")]
    (alert,) = points[0]["alerts"]
    assert alert["id"] == seeded["HP-XIHU"] and alert["received_at"] is None
    r = client.post(f"/api/alerts/{alert['id']}/receipt", headers=monitor)
    assert r.status_code == 200, r.text
    (again,) = client.get("/api/me/hazards", headers=monitor).json()[0]["alerts"]
    assert again["received_at"] is not None
    # Officers have no assigned points; the list is theirs only.
    assert client.get("/api/me/hazards", headers=login(client, "duty.xihu")).json() == []
    assert client.get("/api/me/hazards").status_code == 401


def test_a_nul_byte_is_a_4xx_not_a_500(seeded: dict[str, int], client: TestClient) -> None:
    """Found by schemathesis while testing the console: a NUL in the login's user name."""
    r = client.post("/api/auth/login", json={"username": "\u0000", "password": "x"})
    assert r.status_code == 422 and r.json()["detail"].startswith("username:"), r.text
    headers = login(client, "duty.xihu")
    r = client.post(f"/api/alerts/{seeded['HP-XIHU']}/comments", headers=headers,
                    json={"text": "a\u0000b"})
    assert r.status_code == 422 and r.json()["detail"].startswith("text:"), r.text
    # Where no schema pattern catches it (a path), the database's refusal is a 422 too.
    r = client.get("/api/hazards/HP%00XIHU", headers=headers)
    assert r.status_code == 422 and "NUL" in r.json()["detail"], r.text


def test_event_stream_ends_when_its_session_ends(seeded: dict[str, int],
                                                 conn: psycopg.Connection, console_server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's live stream authenticates once by its cookie; a session revoked
    afterwards (logout elsewhere, password change) must not keep receiving alerts."""
    monkeypatch.setattr(stream, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(stream, "REAUTH_S", 0.2)
    r = httpx.post(f"{console_server}/api/auth/login",
                   json={"username": "duty.xihu", "password": PASSWORD})
    cookies = {"geowarn_session": r.cookies["geowarn_session"]}
    lines: list[str] = []
    with httpx.stream("GET", f"{console_server}/api/alerts/stream", cookies=cookies,
                      timeout=httpx.Timeout(20.0)) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            lines.append(line)
            if line.startswith("retry:"):
                conn.execute("UPDATE api_sessions SET revoked_at = now()")
            if line == "event: ended":
                break
    assert "event: ended" in lines and lines[0].startswith("retry:")
    again = httpx.get(f"{console_server}/api/alerts/stream", cookies=cookies, timeout=10)
    assert again.status_code == 401
