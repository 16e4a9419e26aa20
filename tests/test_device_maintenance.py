"""Maintenance windows on a device (devices/maintenance.py): through the engine against the
real database (a GNSS antenna re-mount inside a window is an expected offset, no data-quality
alert; a river gauge's readings inside one raise nothing, and the level comes after it), the
CLI (add, list, cancel, refusals) and the API (who may add and cancel, in which county)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.engine.service import Engine, EngineConfig
from devices import maintenance
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.errors import InvalidInput
from geowarn.readings import write_readings
from simulators.displacement_scenarios import DAY, stable
from tests.fixtures.api import login

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(round(float(seconds)), UTC)


def _channel(conn: psycopg.Connection, device: str) -> int:
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s ORDER BY "
                       "channel_id LIMIT 1", (device,)).fetchone()
    assert row is not None
    return int(row[0])


def _alerts(conn: psycopg.Connection) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for tid, kind, ek, level, when in conn.execute(
            "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time FROM alert_events e "
            "JOIN alerts a USING (alert_id) ORDER BY e.data_time, e.event_id"):
        out.setdefault((tid, kind), []).append((ek, level, when))
    return out


def test_readings_in_a_window_raise_nothing_and_offsets_are_expected(
        db_url: str, conn: psycopg.Connection) -> None:
    # Two GNSS stations with the same 25 mm antenna re-mount on day 10; one has a window.
    s = stable(7, days=14, noise_mm=0.5, step_s=600, steps=((10.0, 25.0),))
    for dev in ("GN-A", "GN-B"):
        add_device(conn, DeviceSpec(dev, kind="gnss", reporting_interval_s=600))
        cid = _channel(conn, dev)
        write_readings(conn, [(cid, _ts(t), float(v), 0) for t, v in zip(s.t, s.v,
                                                                           strict=True)])
    maintenance.add_window(conn, "GN-A", _ts(s.t[0] + 9.5 * DAY), _ts(s.t[0] + 10.5 * DAY),
                           "antenna re-mount", actor="test")
    # Two river gauges rising above the warning stage at 09:30; one is in a window 09-12 h.
    for dev in ("WL-A", "WL-B"):
        add_device(conn, DeviceSpec(dev, kind="water_level", site_id=f"RIVER-{dev}",
                                    reporting_interval_s=600))
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('site', %s, "
                     "%s)", (f"RIVER-{dev}", json.dumps({"warning_m": 15.0, "guaranteed_m":
                                                          16.5, "historical_max_m": 18.0})))
        cid = _channel(conn, dev)
        write_readings(conn, [(cid, T0 + timedelta(minutes=10 * i),
                               12.0 if i < 57 else 15.6, 0) for i in range(100)])
    maintenance.add_window(conn, "WL-A", T0 + timedelta(hours=9), T0 + timedelta(hours=12),
                           "gauge cleaned", actor="test")
    engine = Engine(db_url, EngineConfig(clock="data", quiet_s=1000 * 3600.0))
    try:
        engine.step()
    finally:
        engine.close()
    got = _alerts(conn)
    assert ("GN-A", "data_quality") not in got  # expected offset: nothing for the maintainer
    assert [e[:2] for e in got[("GN-B", "data_quality")]][0] == ("opened", 1)
    assert not any(k[0] == "GN-A" and k[1] == "deformation" for k in got)
    # The gauge in maintenance warns at its first reading after the window, the other before
    # it ends: its 3.6 m jump in 10 min is faster than onset_max_rate_per_h (15 m/h), so it
    # warns on the third confirming reading (09:30 + 3 x 10 min), not on the jump.
    (opened_a, *_), (opened_b, *_) = got[("RIVER-WL-A", "water_level")], \
        got[("RIVER-WL-B", "water_level")]
    assert opened_a[0] == "opened" and opened_a[2] == T0 + timedelta(hours=12, minutes=10)
    assert opened_b[0] == "opened" and opened_b[2] == T0 + timedelta(hours=10)


def test_maintenance_commands(conn: psycopg.Connection, capsys: pytest.CaptureFixture) -> None:
    add_device(conn, DeviceSpec("GN-C", kind="gnss"))
    conn.commit()
    assert main(["devices", "maintenance", "GN-C", "--from", "2026-12-02T08:00+08:00",
                 "--to", "2026-12-02T18:00+08:00", "--reason", "antenna re-mount"]) == 0
    out = capsys.readouterr().out
    assert "maintenance window" in out and "raise nothing" in out
    assert main(["devices", "maintenance-list", "GN-C", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reason"] == "antenna re-mount" and row["from"] == "2026-12-02T00:00:00+00:00"
    assert main(["devices", "maintenance-cancel", str(row["id"])]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["devices", "maintenance-list", "GN-C"]) == 0
    assert "no maintenance windows" in capsys.readouterr().out
    assert main(["devices", "maintenance-list", "--all"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["devices", "maintenance-cancel", str(row["id"])]) != 0
    assert "already cancelled" in capsys.readouterr().err
    assert main(["devices", "maintenance", "GN-C", "--from", "now", "--to",
                 "2026-01-01T00:00Z", "--reason", "x"]) != 0
    assert "after from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["devices", "maintenance", "GN-C", "--from", "2026-12-02T08:00", "--to", "now",
              "--reason", "x"])
    assert "UTC offset" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--reason"):
        main(["devices", "maintenance", "GN-C", "--from", "now", "--to", "now"])
    assert main(["devices", "maintenance", "GN-C"]) == 0  # without a window: the status
    assert "GN-C: maintenance" in capsys.readouterr().out


def test_windows_validated() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="90 days"):
        maintenance.add_window(None, "X", t, t + timedelta(days=91), "x",  # type: ignore[arg-type]
                               actor="t")
    with pytest.raises(InvalidInput, match="time zone"):
        maintenance.add_window(None, "X", t.replace(tzinfo=None), t,  # type: ignore[arg-type]
                               "x", actor="t")
    with pytest.raises(InvalidInput, match="reason"):
        maintenance.add_window(None, "X", t, t + timedelta(hours=1), " ",  # type: ignore[arg-type]
                               actor="t")


def test_maintenance_through_the_api(seeded: dict[str, int], conn: psycopg.Connection,
                                     client: TestClient) -> None:
    add_device(conn, DeviceSpec("CM-XIHU", kind="crack_meter", hazard_id="HP-XIHU"))
    add_device(conn, DeviceSpec("CM-JIAO", kind="crack_meter", hazard_id="HP-JIAO"))
    conn.commit()
    body = {"from": "2026-12-02T08:00:00+08:00", "to": "2026-12-02T18:00:00+08:00",
            "reason": "sensor reset"}
    url = "/api/devices/CM-XIHU/maintenance"
    duty = login(client, "duty.xihu")
    r = client.post(url, headers=duty, json=body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["device_id"] == "CM-XIHU" and made["created_by"] == "duty.xihu"
    # Only admins and duty officers of the device's county add or cancel.
    for user, code in (("monitor.xihu", 403), ("viewer.jiao", 403), ("admin", 201),
                       ("duty.city", 201)):
        assert client.post(url, headers=login(client, user), json=body).status_code == code
    assert client.post("/api/devices/CM-JIAO/maintenance", headers=duty,
                       json=body).status_code == 403
    assert client.get("/api/devices/CM-JIAO/maintenance", headers=duty).status_code == 403
    listed = client.get(url, headers=login(client, "monitor.xihu")).json()  # reading is fine
    assert len(listed) == 3 and listed[0]["reason"] == "sensor reset"
    # Bad input: 4xx naming the field, never a 500.
    for bad, field in (({**body, "from": "2026-12-02T08:00:00"}, "from"),
                       ({**body, "to": "2026-12-01T08:00:00+08:00"}, "after from"),
                       ({**body, "reason": ""}, "reason"), ({**body, "extra": 1}, "extra")):
        r = client.post(url, headers=duty, json=bad)
        assert 400 <= r.status_code < 500 and field in r.text, (bad, r.text)
    assert client.post("/api/devices/NOPE/maintenance", headers=login(client, "admin"),
                       json=body).status_code == 404
    # Cancel: its own device's window only, once.
    wid = made["id"]
    assert client.delete(f"/api/devices/CM-XIHU/maintenance/{wid}",
                         headers=login(client, "monitor.xihu")).status_code == 403
    assert client.delete(f"/api/devices/CM-JIAO/maintenance/{wid}",
                         headers=login(client, "admin")).status_code == 404
    r = client.delete(f"/api/devices/CM-XIHU/maintenance/{wid}", headers=duty)
    assert r.status_code == 200 and r.json()["cancelled_by"] == "duty.xihu"
    assert client.delete(f"/api/devices/CM-XIHU/maintenance/{wid}",
                         headers=duty).status_code == 422
    assert len(client.get(url, headers=duty).json()) == 2
    assert len(client.get(url, headers=duty, params={"include_cancelled": True}).json()) == 3
