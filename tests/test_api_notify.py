"""The API and the notifier together, through the database only (api/ and notify/ do not
import each other): an acknowledgement in the API stops the escalation on a driven clock;
Twilio's callbacks served by `geowarn api`'s app, signed over the externally visible URL;
deliveries listed and masked by role; the CAP feed and documents; Web Push registration."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from lxml import etree
from twilio.request_validator import RequestValidator

from alerts.methods.levels import Level
from api import users
from geowarn.cli import main
from geowarn.settings import override_settings, reset_settings
from notify import deliveries
from notify.channels.file import FileChannel
from notify.notifier import Notifier
from services.api_app import production_problems, served_app
from tests import notify_world as world
from tests.fixtures.api import PASSWORD, login

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://warn.example.org/geowarn"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _run(n: Notifier) -> None:
    while n.step():
        pass


def _escalations(conn: psycopg.Connection) -> list[deliveries.Delivery]:
    return [d for d in deliveries.list_deliveries(conn) if d.purpose == "escalation"]


def test_acknowledging_in_the_api_stops_the_escalation(conn: psycopg.Connection, db_url: str,
                                                       client: TestClient,
                                                       tmp_path: Path) -> None:
    world.build(conn, households=2)
    (opened,) = world.change(conn, Level.ORANGE)
    users.add_user(conn, "duty.lishui", PASSWORD, "duty_officer", [world.COUNTY])
    clock = Clock()
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock)
    _run(n)
    start = clock.now
    assert conn.execute("SELECT next_at FROM escalations").fetchone() == (
        start + timedelta(minutes=15),)  # orange escalates after 15 minutes by default
    clock.now = start + timedelta(minutes=10)
    r = client.post(f"/api/alerts/{opened.alert_id}/ack", headers=login(client, "duty.lishui"),
                    json={"note": "patrol on the way"})
    assert r.status_code == 200, r.text
    _run(n)  # the notifier's next step sees the acknowledgement
    row = conn.execute("SELECT stopped_at, stopped_by, next_at FROM escalations").fetchone()
    assert row == (start + timedelta(minutes=10), "duty.lishui", None)
    # Unacknowledged, the same alert reaches the city officer at minute 15
    # (tests/test_notify_escalation_cap.py); acknowledged, nothing more is sent.
    for minutes in (15, 30, 120):
        clock.now = start + timedelta(minutes=minutes)
        _run(n)
    n.close()
    assert _escalations(conn) == []


def _signed(url: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, form)}


def test_callbacks_served_by_the_api_check_the_public_url(
        seeded: dict[str, int], conn: psycopg.Connection, db_url: str) -> None:
    (delivery_id,) = conn.execute("SELECT min(delivery_id) FROM deliveries").fetchone() or (0,)
    conn.execute("UPDATE deliveries SET state = 'queued', provider_id = 'SM1' "
                 "WHERE delivery_id = %s", (delivery_id,))
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    path = f"/twilio/status?d={delivery_id}"
    try:
        settings = override_settings(twilio_auth_token=TOKEN, notify_callback_url=PUBLIC)
        with TestClient(served_app(settings, db_url)) as c:
            # Signed over the local address: what a proxy would break, or a forger try.
            local = c.post(path, data=form, headers=_signed(f"http://testserver{path}", form))
            assert local.status_code == 403
            assert c.post(path, data=form).status_code == 403
            assert deliveries.get(conn, delivery_id).state == "queued"  # type: ignore[union-attr]
            ok = c.post(path, data=form, headers=_signed(PUBLIC + path, form))
            assert ok.status_code == 204
            assert deliveries.get(conn, delivery_id).state == "delivered"  # type: ignore[union-attr]
            assert "/twilio/status" not in c.get("/openapi.json").text
        # Without an auth token nothing could verify Twilio: the routes do not exist.
        settings = override_settings(twilio_auth_token=None)
        with TestClient(served_app(settings, db_url)) as c:
            assert c.post(path, data=form, headers=_signed(PUBLIC + path, form)).status_code \
                == 404
    finally:
        reset_settings()


def test_notifications_masked_for_roles_that_do_not_call_people(
        seeded: dict[str, int], client: TestClient) -> None:
    alert = seeded["HP-XIHU"]
    officer = client.get("/api/notifications", params={"alert_id": alert},
                         headers=login(client, "duty.xihu"))
    monitor = client.get("/api/notifications", params={"alert_id": alert},
                         headers=login(client, "monitor.xihu"))
    assert officer.status_code == monitor.status_code == 200
    (o,), (m,) = officer.json(), monitor.json()
    assert (o["recipient_name"], o["masked_phone"]) == ("张三丰", "+86137****1234")
    assert "村文化礼堂" in o["body"] and o["channel"] == "sms" and o["state"] == "pending"
    assert (m["recipient_name"], m["masked_phone"], m["body"]) == ("张**", None, None)
    assert "13700001234" not in officer.text  # the full number is never stored
    headers = login(client, "admin")
    for params, field in (({"alert_id": "0"}, "alert_id"), ({"channel": "fax"}, "channel"),
                          ({"state": "lost"}, "state"), ({"limit": "0"}, "limit"),
                          ({"since": "2026-07-01T00:00"}, "since")):
        r = client.get("/api/notifications", headers=headers, params=params)
        assert r.status_code == 422 and field in r.text, (params, r.text)
    assert client.get("/api/notifications", headers=headers,
                      params={"alert_id": 999999}).status_code == 404
    r = client.get("/api/notifications", headers=headers, params={"channel": "voice"})
    assert r.status_code == 200 and r.json() == []


def test_cap_feed_and_documents(seeded: dict[str, int], client: TestClient) -> None:
    headers = login(client, "duty.city")
    feed = client.get("/api/cap/feed", headers=headers)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    root = etree.fromstring(feed.content)
    atom = "{http://www.w3.org/2005/Atom}"
    links = [e.find(f"{atom}link").get("href") for e in root.findall(f"{atom}entry")]
    assert len(links) == 2  # HP-XIHU and HP-SHANG, not HP-JIAO of another city
    doc = client.get(links[0], headers=headers)
    assert doc.status_code == 200 and doc.headers["content-type"].startswith(
        "application/cap+xml")
    assert b"urn:oasis:names:tc:emergency:cap:1.2" in doc.content
    only = client.get("/api/cap/feed", headers=headers,
                      params={"alert_id": seeded["HP-XIHU"]}).content
    assert len(etree.fromstring(only).findall(f"{atom}entry")) == 1
    assert client.get("/api/cap/nope", headers=headers).status_code == 404
    r = client.get("/api/cap/bad%20id", headers=headers)
    assert r.status_code == 422 and "identifier" in r.text


def _vapid_key(path: Path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    raw = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_web_push_registration(seeded: dict[str, int], conn: psycopg.Connection,
                               client: TestClient, tmp_path: Path) -> None:
    conn.execute("INSERT INTO people (person_id, name, phone, language, roles, county_code) "
                 "VALUES ('duty-2', '值班员乙', '+8613500000009', 'zh', '{county_officer}', "
                 "'330110')")
    users.add_user(conn, "duty.push", PASSWORD, "duty_officer", ["330110"], person_id="duty-2")
    headers = login(client, "duty.push")
    try:
        public = _vapid_key(tmp_path / "vapid.pem")
        override_settings(notify_vapid_key_file=tmp_path / "vapid.pem")
        assert client.get("/api/push/vapid-public-key", headers=headers).json() == {
            "public_key": public}
    finally:
        reset_settings()
    p256dh = base64.urlsafe_b64encode(b"\x04" + bytes(64)).decode().rstrip("=")
    sub = {"endpoint": "https://push.example.net/send/abc123", "expirationTime": None,
           "keys": {"p256dh": p256dh, "auth": "tBHItJI5svbpez7KI4CCXg"}}
    status = client.get("/api/push/status", headers=headers).json()
    assert status == {"configured": False, "linked": True, "endpoints": []}
    r = client.post("/api/push/subscriptions", headers=headers, json=sub)
    assert r.status_code == 201 and r.json()["person_id"] == "duty-2"
    assert client.get("/api/push/status", headers=headers).json()["endpoints"] == [
        sub["endpoint"]]
    # Another user's status never lists it; one not linked to the directory cannot receive.
    assert client.get("/api/push/status", headers=login(client, "duty.xihu")).json() == {
        "configured": False, "linked": False, "endpoints": []}
    assert conn.execute("SELECT person_id, active FROM push_subscriptions").fetchall() == [
        ("duty-2", True)]
    # A user not linked to the directory has nobody to send to.
    r = client.post("/api/push/subscriptions", headers=login(client, "duty.xihu"), json=sub)
    assert r.status_code == 422 and "person" in r.json()["detail"]
    for bad, field in (({**sub, "endpoint": "http://push.example.net/x"}, "endpoint"),
                       ({**sub, "keys": {"p256dh": "x", "auth": "y"}}, "keys.p256dh")):
        r = client.post("/api/push/subscriptions", headers=headers, json=bad)
        assert r.status_code == 422 and field in r.text, r.text
    gone = {"endpoint": sub["endpoint"]}
    assert client.post("/api/push/subscriptions/remove", headers=headers,
                       json=gone).status_code == 204
    assert client.post("/api/push/subscriptions/remove", headers=headers,
                       json=gone).status_code == 404
    assert conn.execute("SELECT active FROM push_subscriptions").fetchone() == (False,)
    assert client.get("/api/push/status", headers=headers).json()["endpoints"] == []


def test_production_mode_refuses_unsafe_settings(tmp_path: Path) -> None:
    try:
        unsafe = override_settings(database_url=None, api_cors_origins="*",
                                   twilio_account_sid="AC1", twilio_auth_token=None,
                                   notify_webhook_url="https://hook.example.org/x",
                                   notify_webhook_secret=None)
        problems = " ".join(production_problems(unsafe))
        for name in ("GEOWARN_DATABASE_URL", "GEOWARN_API_CORS_ORIGINS",
                     "GEOWARN_TWILIO_AUTH_TOKEN", "GEOWARN_NOTIFY_WEBHOOK_SECRET"):
            assert name in problems
        key = tmp_path / "vapid.pem"
        _vapid_key(key)
        key.chmod(0o644)
        proxied = override_settings(database_url="postgresql://geowarn@db/geowarn",
                                    twilio_auth_token=TOKEN,
                                    notify_callback_url="http://10.0.0.5:8080",
                                    notify_vapid_key_file=key)
        problems = " ".join(production_problems(proxied))
        assert "GEOWARN_NOTIFY_CALLBACK_URL" in problems and "chmod 600" in problems
        key.chmod(0o600)
        safe = override_settings(database_url="postgresql://geowarn@db/geowarn",
                                 twilio_auth_token=TOKEN, notify_callback_url=PUBLIC,
                                 api_cors_origins="https://console.example.org",
                                 notify_vapid_key_file=key)
        assert production_problems(safe) == []
    finally:
        reset_settings()


def test_geowarn_api_refuses_to_start_in_production_mode(
        capsys: pytest.CaptureFixture[str]) -> None:
    try:
        override_settings(production=True, database_url=None, api_cors_origins="*")
        assert main(["api", "--port", "1"]) == 2
    finally:
        reset_settings()
    err = capsys.readouterr().err
    assert "production mode" in err and "GEOWARN_DATABASE_URL" in err
    assert "GEOWARN_API_CORS_ORIGINS" in err


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
