"""Web Push through pywebpush to a local push service: VAPID-signed, encrypted (aes128gcm),
decrypted here with the subscriber's keys; gone subscriptions deactivated."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from alerts.methods.levels import Level
from geowarn import cli
from geowarn import push_subscriptions as push_store
from notify import deliveries
from notify.channels.file import FileChannel
from notify.channels.webpush import WebPush, generate_vapid_keys
from notify.notifier import Notifier
from notify.routing import RoutingTable
from tests import notify_world as world


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class PushService:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.received.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body))
                self.send_response(410 if self.path.startswith("/gone") else 201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def push_service() -> Iterator[PushService]:
    svc = PushService()
    t = threading.Thread(target=svc.server.serve_forever, daemon=True)
    t.start()
    yield svc
    svc.server.shutdown()
    svc.server.server_close()


def browser_keys() -> tuple[ec.EllipticCurvePrivateKey, str, bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    return key, b64(public), auth, b64(auth)


def test_vapid_keys_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vapid.pem"
    assert cli.main(["notify", "vapid-keys", "--out", str(out)]) == 0
    assert (out.stat().st_mode & 0o777) == 0o600
    public = capsys.readouterr().out.split(": ")[-1].strip()
    assert len(base64.urlsafe_b64decode(public + "==")) == 65  # uncompressed P-256 point
    assert cli.main(["notify", "vapid-keys", "--out", str(out)]) == 2  # never replaced


def test_officers_get_encrypted_pushes(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                       push_service: PushService) -> None:
    world.build(conn, households=1)
    key, p256dh, auth, auth64 = browser_keys()
    push_store.subscribe(conn, "county-1", f"{push_service.base}/sub/1", p256dh, auth64)
    push_store.subscribe(conn, "town-1", f"{push_service.base}/gone/1", p256dh, auth64)
    vapid = tmp_path / "vapid.pem"
    generate_vapid_keys(vapid)

    def subs(rid: str) -> list[dict[str, Any]]:
        with psycopg.connect(db_url) as c:
            return list(push_store.subscriptions(c, rid))

    def gone(endpoint: str) -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            push_store.deactivate(c, endpoint)

    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch,
                          "push": WebPush(vapid, "mailto:duty@example.org", subs, gone=gone)},
                 routing=RoutingTable(web_push=True))
    world.change(conn, Level.ORANGE)
    while n.step():
        pass
    n.close()
    rows = {d.recipient_id: d for d in deliveries.list_deliveries(conn) if d.channel == "push"}
    assert set(rows) == {"person:county-1", "person:town-1"}
    assert rows["person:county-1"].state == "sent"
    assert rows["person:town-1"].state == "rejected"
    assert conn.execute("SELECT active FROM push_subscriptions WHERE endpoint LIKE '%%gone%%'"
                        ).fetchone() == (False,)
    path, headers, body = next(r for r in push_service.received if r[0] == "/sub/1")
    assert headers["content-encoding"] == "aes128gcm" and int(headers["ttl"]) > 3000
    assert headers["authorization"].startswith("vapid t=")
    plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    payload = json.loads(plain)
    assert "橙色预警" in payload["body"] and payload["tag"].startswith("GW")
