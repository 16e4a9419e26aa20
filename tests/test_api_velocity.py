"""GET /api/devices/{id}/velocity: the engine's own velocities per scale, hour by hour.

The console world's slope (tests/console_world.py) is judged by the real engine; at every
alert event the evidence holds the velocities the engine found then. The endpoint's series
must give those same numbers at that hour (the evidence rounds to 2 significant digits),
and a step the engine removes must not show as a velocity. Bad parameters are 4xx naming
the parameter; other counties' users are refused."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.engine.disp_evidence import sig
from alerts.engine.service import Engine, EngineConfig
from api import users
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from tests.console_world import PASSWORD, SLOPE, World, build
from tests.fixtures.api import SQUARE, login

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def world(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(conn, db_url)
    yield w
    w.close()


def _hour(iso: str) -> datetime:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.replace(minute=0, second=0, microsecond=0)


def _series(client: TestClient, headers: dict[str, str], device: str, channel: str,
            start: datetime, end: datetime) -> dict[str, Any]:
    r = client.get(f"/api/devices/{device}/velocity", headers=headers,
                   params={"channel": channel, "from": start.isoformat(), "to": end.isoformat()})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_series_equals_the_engines_velocities_at_each_alert_event(
        world: World, conn: psycopg.Connection, client: TestClient) -> None:
    headers = login(client, "duty.lishui", PASSWORD)
    end = world.start + timedelta(days=2)
    body = _series(client, headers, "CRACK-R", "opening", world.start, end)
    assert body["unit"] == "mm/day" and body["channel"] == "opening"
    assert [s["scale"] for s in body["scales"]] == ["6h", "24h", "72h", "168h"]
    by_scale = {s["scale"]: {p["ts"]: p for p in s["points"]} for s in body["scales"]}
    hours = [datetime.fromisoformat(p["ts"]) for p in body["scales"][0]["points"]]
    assert hours == sorted(hours) and len(hours) >= 40  # one per closed hour of two days
    assert all(world.start <= h <= end for h in hours)
    events = conn.execute(
        "SELECT e.evidence FROM alert_events e JOIN alerts a USING (alert_id) WHERE "
        "a.target_id = %s AND a.hazard_kind = 'deformation' ORDER BY e.event_id",
        (SLOPE,)).fetchall()
    checked = 0
    for (evidence,) in events:
        for ch in evidence.get("channels", []):
            if ch.get("method") != "displacement" or "velocity_mm_per_day" not in ch:
                continue
            at = _hour(ch["data_time"]).isoformat().replace("+00:00", "Z")
            for scale, want in ch["velocity_mm_per_day"].items():
                got = by_scale[scale][at]
                assert sig(got["mm_per_day"]) == want["mm_per_day"], (at, scale, got, want)
                assert sig(got["se"]) == want["se"], (at, scale, got, want)
                checked += 1
    print(f"{checked} evidence velocities equal")
    assert checked >= 4, checked  # the red event's 6 h and 24 h scales at least
    # Two days of record: the 72 h scale lacks half its pairs, the 168 h one all of them.
    assert all(p["mm_per_day"] is None for p in body["scales"][3]["points"])
    # The slope accelerates: the daily velocity at the end is over twice the 2 mm/day creep.
    last = [p for p in body["scales"][1]["points"] if p["mm_per_day"] is not None][-1]
    assert last["mm_per_day"] > 4 and 0 < last["se"] < last["mm_per_day"] / 3


def test_a_removed_offset_is_no_velocity(conn: psycopg.Connection, db_url: str,
                                         client: TestClient) -> None:
    """A crack meter re-mounted 8 mm higher at steady 1 mm/day creep: once the engine has
    confirmed the offset it removes it, and its velocities are the creep again (a curve
    drawn from the readings would keep the jump in every window that spans it)."""
    conn.execute("INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, "
                 "geometry, min_lon, min_lat, max_lon, max_lat) VALUES ('HP-STEP', '台阶', "
                 "'landslide', 'small', '330110', "
                 "%s, 120, 30, 120.01, 30.01)", (json.dumps(SQUARE),))
    add_device(conn, DeviceSpec("CRACK-S", kind="crack_meter", reporting_interval_s=600,
                                hazard_id="HP-STEP"))
    users.add_user(conn, "duty.xihu", PASSWORD, "duty_officer", ["330110"])
    users.add_user(conn, "duty.jiao", PASSWORD, "duty_officer", ["331002"])
    (cid,) = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'CRACK-S'"
                          ).fetchone() or (0,)
    start = datetime(2026, 7, 1, tzinfo=UTC)
    rng = np.random.default_rng(5)
    n = 6 * 24 * 5
    t = np.arange(n) * 600.0
    jump_at = 3 * 86400.0
    y = 10.0 + t / 86400.0 + 8.0 * (t >= jump_at) + rng.normal(0, 0.03, n)
    write_readings(conn, [(cid, start + timedelta(seconds=float(s)), float(v), 0)
                          for s, v in zip(t, y, strict=True)])
    engine = Engine(db_url, EngineConfig(name="velocity-test", clock="data"))
    try:
        engine.step()
    finally:
        engine.close()
    headers = login(client, "duty.xihu", PASSWORD)
    body = _series(client, headers, "CRACK-S", "opening", start + timedelta(days=2),
                   start + timedelta(days=5))
    assert [s["kind"] for s in body["steps"]] == ["offset"]
    assert abs(body["steps"][0]["jump_mm"] - 8.0) < 0.3
    # Until the plateau is confirmed (6 h after the jump) the engine's 6 h scale straddles
    # the jump, as the engine saw it; from then on the offset is out and the creep is back.
    jump = start + timedelta(seconds=jump_at)
    six = [(datetime.fromisoformat(p["ts"]), p["mm_per_day"])
           for p in body["scales"][0]["points"] if p["mm_per_day"] is not None]
    settled = [v for ts, v in six if not jump < ts <= jump + timedelta(hours=6)]
    assert len(settled) >= 60 and max(abs(v - 1.0) for v in settled) < 0.5, six
    assert max(v for _, v in six) > 30  # the unconfirmed hours do show it
    # The series is replayed from before `from`: the longest scale and the detector's window.
    replayed = datetime.fromisoformat(body["replayed_from"])
    assert replayed <= start + timedelta(days=2) - timedelta(hours=168)
    # Another county's officer may not read it.
    other = login(client, "duty.jiao", PASSWORD)
    r = client.get("/api/devices/CRACK-S/velocity", headers=other,
                   params={"channel": "opening", "from": start.isoformat()})
    assert r.status_code == 403 and "counties" in r.json()["detail"]


def test_bad_parameters_are_4xx_naming_them(world: World, client: TestClient) -> None:
    headers = login(client, "duty.lishui", PASSWORD)
    t0 = world.start.isoformat()
    url = "/api/devices/CRACK-R/velocity"
    cases: list[tuple[str, dict[str, str], int, str]] = [
        (url, {"from": t0}, 422, "channel"),
        (url, {"channel": "nope", "from": t0}, 422, "channel"),
        (url, {"channel": "opening"}, 422, "from"),
        (url, {"channel": "opening", "from": "2026-07-01T00:00:00"}, 422, "from"),
        (url, {"channel": "opening", "from": "yesterday"}, 422, "from"),
        (url, {"channel": "opening", "from": t0, "to": t0}, 422, "to"),
        (url, {"channel": "opening", "from": (world.start - timedelta(days=40)).isoformat(),
               "to": t0}, 422, "from"),
        (url, {"channel": "opening", "from": "0001-01-01T00:00:00+00:00"}, 422, "from"),
        (url, {"channel": "opening", "from": t0, "to": "9999-12-31T23:59:59+00:00"}, 422,
         "to"),
        ("/api/devices/RAIN-R/velocity", {"channel": "rain", "from": t0}, 422,
         "not displacement"),
        ("/api/devices/NO-SUCH/velocity", {"channel": "opening", "from": t0}, 404, "NO-SUCH"),
    ]
    for path, params, status, word in cases:
        r = client.get(path, headers=headers, params=params)
        assert r.status_code == status, (params, r.text)
        assert word in r.json()["detail"], (params, r.text)
    assert client.get(url, params={"channel": "opening", "from": t0}).status_code == 401
    # A viewer of the county reads it as it reads the readings; the monitor's county is the
    # slope's (331122).
    for name in ("viewer.lishui", "monitor.jinyun"):
        r = client.get(url, headers=login(client, name, PASSWORD),
                       params={"channel": "opening", "from": t0})
        assert r.status_code == 200, (name, r.text)
        assert math.isfinite(len(r.json()["scales"]))
