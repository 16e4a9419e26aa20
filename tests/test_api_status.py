"""/api/status: what the gateways, engines and notifier last reported, read back."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests.fixtures.api import login


def test_status_reports_gateways_engines_outbox_and_stale_reports(
        seeded: dict[str, int], conn: psycopg.Connection, client: TestClient) -> None:
    conn.execute("INSERT INTO ingest_stats (gateway, updated_at, started_at, counters) VALUES "
                 "('gw-live', now() - interval '5 seconds', now() - interval '1 hour', "
                 "'{\"readings_stored\": 812, \"dead_letters\": 3, \"pending_messages\": 0, "
                 "\"stalled_s\": 0}'), "
                 "('gw-gone', now() - interval '10 minutes', now() - interval '2 hours', '{}')")
    conn.execute("INSERT INTO engine_state (engine, clock, saved_at, layout) VALUES "
                 "('engine', extract(epoch FROM now()), now(), '{}')")
    conn.execute("INSERT INTO engine_state_rows (engine, scope, key, packed) VALUES "
                 "('engine', 'channel', '1', ''), ('engine', 'channel', '2', ''), "
                 "('engine', 'channel', '3', ''), ('engine', 'target', 'hazard:H', '')")
    conn.execute("INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, "
                 "payload, payload_size) VALUES (now(), 't', 'D', 'bad_json', 'x', 'x', 1), "
                 "(now() - interval '2 days', 't', 'D', 'bad_json', 'x', 'x', 1)")
    conn.commit()
    viewer = login(client, "viewer.jiao")  # no personal data: every role may read it
    body = client.get("/api/status", headers=viewer).json()
    gws = {g["gateway"]: g for g in body["gateways"]}
    assert gws["gw-live"]["readings_stored"] == 812 and gws["gw-live"]["dead_letters"] == 3
    assert gws["gw-live"]["stale"] is False and gws["gw-gone"]["stale"] is True
    assert [(e["engine"], e["channels"], e["stale"]) for e in body["engines"]] == [
        ("engine", 3, False)]
    pending = conn.execute("SELECT count(*) FROM notification_outbox "
                           "WHERE state = 'pending'").fetchone()
    assert body["dead_letters_24h"] == 1 and pending and body["outbox_pending"] == pending[0]
    # A tighter limit makes the live gateway stale too; a bad limit is a 4xx naming it.
    tight = client.get("/api/status?stale_after_s=1", headers=viewer).json()
    assert all(g["stale"] for g in tight["gateways"])
    bad = client.get("/api/status?stale_after_s=-3", headers=viewer)
    assert bad.status_code == 422 and "stale_after_s" in bad.text
    assert client.get("/api/status").status_code == 401
