"""Field reports in the fusion rule of a hazard point, through the engine and the real
database: a severe observation raises the point to at least orange, a minor one does not,
and the floor ends `field_report_hold_h` after the observation (a hazard-scope rule)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from fastapi.testclient import TestClient

from alerts.engine.field_reports import ReportRule, floor_levels
from alerts.engine.service import Engine, EngineConfig
from alerts.lifecycle.writes import AlertEvent
from alerts.methods.levels import Level
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from tests.fixtures.api import login

T0 = datetime(2026, 7, 1, 2, tzinfo=UTC)
SQUARE = {"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.01, 30.0], [120.01, 30.01],
                                              [120.0, 30.01], [120.0, 30.0]]]}


def _hazard(conn: psycopg.Connection, hid: str) -> None:
    conn.execute(
        "INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, "
        "geometry, min_lon, min_lat, max_lon, max_lat, households, people) VALUES "
        "(%s, %s, 'landslide', 'small', '330110', %s, 120.0, 30.0, 120.01, 30.01, 0, 0)",
        (hid, f"{hid} 滑坡", json.dumps(SQUARE)))
    add_device(conn, DeviceSpec(f"CM-{hid}", kind="crack_meter", hazard_id=hid,
                                reporting_interval_s=3600))


def _report(conn: psycopg.Connection, hid: str, severity: str, at: datetime) -> None:
    conn.execute("INSERT INTO field_reports (hazard_id, reporter, kind, severity, observed_at, "
                 "received_at) VALUES (%s, 'monitor.x', 'new_cracks', %s, %s, %s)",
                 (hid, severity, at, at + timedelta(minutes=3)))


def _combined(events: list[AlertEvent], hid: str) -> list[tuple[str, int]]:
    return [(e.kind, int(e.level)) for e in events
            if e.target_id == hid and e.hazard_kind == "combined"]


def test_severe_report_raises_orange_minor_does_not_and_it_expires(
        db_url: str, conn: psycopg.Connection) -> None:
    _hazard(conn, "HP-SEVERE")
    _hazard(conn, "HP-MINOR")
    assert main(["engine", "rules-set", "hazard", "HP-SEVERE",
                 '{"field_report_hold_h": 6}']) == 0
    engine = Engine(db_url, EngineConfig(name="reports", clock="data"))
    try:
        engine.step(now=T0.timestamp())
        _report(conn, "HP-MINOR", "minor", T0 + timedelta(minutes=10))
        _report(conn, "HP-SEVERE", "severe", T0 + timedelta(minutes=20))
        events = engine.step(now=(T0 + timedelta(minutes=30)).timestamp(), periodic=True)
        assert _combined(events, "HP-SEVERE") == [("opened", int(Level.ORANGE))]
        assert _combined(events, "HP-MINOR") == []
        (opened,) = [e for e in events if e.target_id == "HP-SEVERE"]
        assert opened.evidence["field_report_floor"] == int(Level.ORANGE)
        assert opened.evidence["regional_floor"] == 0
        (named,) = opened.evidence["field_reports"]
        assert (named["kind"], named["severity"]) == ("new_cracks", "severe")
        # Held for the rule's 6 hours from the observation (engine clock = data time)...
        still = engine.step(now=(T0 + timedelta(hours=6, minutes=19)).timestamp(),
                            periodic=True)
        assert _combined(still, "HP-SEVERE") == []
        # ...then it lets go.
        after = engine.step(now=(T0 + timedelta(hours=6, minutes=21)).timestamp(),
                            periodic=True)
        assert [lv for _, lv in _combined(after, "HP-SEVERE")] == [int(Level.NONE)]
    finally:
        engine.close()


def test_the_strictest_severity_floor_holds() -> None:
    rule = ReportRule(np.array([[0, 1, 3], [0, 2, 4]]), np.array([3600.0, 7200.0]))
    target, severity = np.array([0, 0, 1, 1]), np.array([1, 2, 0, 1])
    observed = np.array([0.0, 100.0, 0.0, 5000.0])
    assert floor_levels(rule, target, severity, observed, 50.0).tolist() == [1, 0]
    assert floor_levels(rule, target, severity, observed, 3650.0).tolist() == [3, 0]
    assert floor_levels(rule, target, severity, observed, 5000.0).tolist() == [0, 2]


def test_a_monitors_report_through_the_api_raises_the_point(
        seeded: dict[str, int], db_url: str, conn: psycopg.Connection,
        client: TestClient) -> None:
    """The whole path: a monitor's phone report (API) -> the engine's next step -> orange."""
    add_device(conn, DeviceSpec("CM-XIHU", kind="crack_meter", hazard_id="HP-XIHU",
                                reporting_interval_s=3600))
    r = client.post("/api/hazards/HP-XIHU/reports", headers=login(client, "monitor.xihu"),
                    data={"kind": "bulging", "severity": "severe", "note": "坡脚鼓胀"})
    assert r.status_code == 201, r.text
    engine = Engine(db_url, EngineConfig(name="api-report", clock="data"))
    try:
        events = engine.step(now=time.time() + 60, periodic=True)
    finally:
        engine.close()
    (opened,) = [e for e in events if e.target_id == "HP-XIHU" and e.hazard_kind == "combined"]
    assert opened.level >= Level.ORANGE
    assert [x["id"] for x in opened.evidence["field_reports"]] == [r.json()["id"]]
