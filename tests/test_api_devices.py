"""/api/devices, readings for charts and dead letters through the API, scoped by county."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from tests.fixtures.api import login


def _devices(conn: psycopg.Connection) -> datetime:
    add_device(conn, DeviceSpec(device_id="CM-XIHU", kind="crack_meter", hazard_id="HP-XIHU"))
    add_device(conn, DeviceSpec(device_id="CM-JIAO", kind="crack_meter", hazard_id="HP-JIAO"))
    add_device(conn, DeviceSpec(device_id="RG-LOOSE", kind="rain_gauge"))
    cid = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'CM-XIHU'").fetchone()
    assert cid is not None
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    write_readings(conn, [(cid[0], t0 + timedelta(minutes=10 * i), 10.0 + 0.1 * i, 0)
                          for i in range(36)])
    conn.execute("INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, "
                 "payload, payload_size) VALUES (now(), 'gw/v1/CM-XIHU/telemetry', 'CM-XIHU', "
                 "'bad_json', 'not JSON', 'x', 1)")
    conn.commit()
    return t0


def test_devices_scoped_with_health_readings_and_commands(
        seeded: dict[str, int], conn: psycopg.Connection, client: TestClient) -> None:
    t0 = _devices(conn)
    xihu = login(client, "duty.xihu")
    listed = client.get("/api/devices", headers=xihu).json()
    assert [d["id"] for d in listed] == ["CM-XIHU"]
    admin = login(client, "admin")
    assert {d["id"] for d in client.get("/api/devices", headers=admin).json()} == {
        "CM-XIHU", "CM-JIAO", "RG-LOOSE"}
    assert client.get("/api/devices/CM-JIAO", headers=xihu).status_code == 403
    detail = client.get("/api/devices/CM-XIHU", headers=xihu).json()
    assert detail["channels"] == [{"channel": "opening", "unit": "mm"}]
    assert detail["latest"][0]["value"] == 13.5
    raw = client.get("/api/devices/CM-XIHU/readings", headers=xihu,
                     params={"from": t0.isoformat()}).json()
    assert raw["raw"] and len(raw["readings"]) == 36
    hourly = client.get("/api/devices/CM-XIHU/readings", headers=xihu,
                        params={"from": t0.isoformat(), "bucket": "1h", "agg": "max"}).json()
    assert [round(b["value"], 2) for b in hourly["readings"]] == [10.5, 11.1, 11.7, 12.3,
                                                                   12.9, 13.5]
    for params, field in (({"from": "2026-07-01T00:00"}, "from"),
                          ({"from": t0.isoformat(), "bucket": "soon"}, "bucket"),
                          ({"from": t0.isoformat(), "bucket": "1m", "to":
                            (t0 + timedelta(days=3650)).isoformat()}, "bucket"),
                          ({"from": t0.isoformat(), "channel": "rain"}, "channel"),
                          ({}, "from")):
        r = client.get("/api/devices/CM-XIHU/readings", headers=xihu, params=params)
        assert r.status_code == 422 and field in r.text, (params, r.text)
    r = client.post("/api/devices/CM-XIHU/commands", headers=xihu,
                    json={"name": "set_interval", "params": {"sample_s": 60, "upload_s": 600}})
    assert r.status_code == 201, r.text
    again = client.get("/api/devices/CM-XIHU", headers=xihu).json()
    assert again["commands"][0]["state"] == "queued"
    assert again["commands"][0]["requested_by"] == "duty.xihu"
    r = client.post("/api/devices/CM-XIHU/commands", headers=xihu,
                    json={"name": "format_disk"})
    assert r.status_code == 422
    monitor = login(client, "monitor.xihu")
    assert client.post("/api/devices/CM-XIHU/commands", headers=monitor,
                       json={"name": "reboot"}).status_code == 403


def test_dead_letters_through_the_api(seeded: dict[str, int], conn: psycopg.Connection,
                                      client: TestClient) -> None:
    _devices(conn)
    xihu = login(client, "duty.xihu")
    letters = client.get("/api/deadletters", headers=xihu, params={"device": "CM-XIHU"}).json()
    assert [(d["reason"], d["payload_excerpt"]) for d in letters] == [("bad_json", "x")]
    assert client.get("/api/deadletters", headers=xihu).status_code == 422
    assert client.get("/api/deadletters", headers=xihu,
                      params={"device": "CM-JIAO"}).status_code == 403
    assert len(client.get("/api/deadletters", headers=login(client, "admin")).json()) == 1
