"""`geowarn alerts list/show/ack/resolve` through geowarn.cli.main, against real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from geowarn.cli import main

T0 = datetime(2026, 6, 1, tzinfo=UTC)
FORECAST = {"failure_time": "2026-06-01T09:00:00+00:00",
            "band": ["2026-06-01T07:30:00+00:00", "2026-06-01T11:00:00+00:00"]}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["alerts", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def alerts(conn: psycopg.Connection) -> dict[str, int]:
    conn.execute(
        "INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, geometry,"
        " min_lon, min_lat, max_lon, max_lat) VALUES ('HP001', '西山村滑坡', 'landslide', "
        "'medium', '330106', '{\"type\": \"Polygon\", \"coordinates\": []}', 120, 30, 120.01,"
        " 30.01)")
    events = apply_changes(conn, [
        LevelChange("hazard", "HP001", "deformation", Level.YELLOW, T0,
                    {"channels": ["GNSS_1.disp"], "velocity_mm_per_day": 12.5}),
        LevelChange("hazard", "HP001", "deformation", Level.RED, T0 + timedelta(hours=1),
                    {"velocity_mm_per_day": 48.0, "forecast": FORECAST,
                     "channels": [{"channel_id": 7, "failure_time": FORECAST["band"]}]}),
        LevelChange("site", "RG-7", "rainfall", Level.BLUE, T0 + timedelta(minutes=30),
                    {"window_h": 1, "rain_mm": 31.0, "threshold_mm": 30.0}),
    ], engine="eng-1")
    return {e.target_id: e.alert_id for e in events}


def test_list_text(alerts: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "LEVEL", "PEAK", "KIND", "TARGET", "OPENED",
                                "LAST", "CHANGE"]
    assert lines[1].startswith(f"{alerts['HP001']}  ")
    assert "I red 红色" in lines[1] and "hazard HP001 西山村滑坡 (330106)" in lines[1]
    assert "IV blue 蓝色" in lines[2] and "site RG-7" in lines[2]
    assert len(lines) == 3


def test_list_json_shape_and_filters(alerts: dict[str, int],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert [a["id"] for a in data] == [alerts["HP001"], alerts["RG-7"]]
    hp = data[0]
    # A hazard point's alert says who is threatened (hazard_points households / people).
    assert hp["target"] == {"type": "hazard", "id": "HP001", "name": "西山村滑坡",
                            "county_code": "330106",
                            "threatened": {"households": 0, "people": 0}}
    assert (hp["hazard_kind"], hp["status"], hp["level"], hp["peak_level"]) == (
        "deformation", "open", "red", "red")
    assert hp["opened_at"] == "2026-06-01T00:00:00+00:00"
    assert hp["last_data_time"] == "2026-06-01T01:00:00+00:00"
    for key in ("acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at",
                "resolve_reason"):
        assert hp[key] is None
    assert [(e["kind"], e["level"], e["previous_level"], e["data_time"]) for e in hp["events"]
            ] == [("opened", "yellow", "none", "2026-06-01T00:00:00+00:00"),
                  ("raised", "red", "yellow", "2026-06-01T01:00:00+00:00")]
    assert hp["events"][1]["evidence"]["forecast"] == FORECAST
    assert all(e["recorded_at"] for e in hp["events"])
    assert [(a["actor"], a["action"]) for a in hp["audit"]] == [("eng-1", "opened"),
                                                                ("eng-1", "raised")]
    assert data[1]["target"] == {"type": "site", "id": "RG-7", "name": None,
                                 "county_code": None}

    def ids(*argv: str) -> list[int]:
        code, out, _ = run(capsys, "list", "--json", *argv)
        assert code == 0
        return [a["id"] for a in json.loads(out)]

    assert ids("--min-level", "orange") == [alerts["HP001"]]
    assert ids("--min-level", "II") == [alerts["HP001"]]
    assert ids("--kind", "rainfall") == [alerts["RG-7"]]
    assert ids("--target", "RG-7") == [alerts["RG-7"]]
    assert ids("--since", "2026-06-01T08:45:00+08:00") == [alerts["HP001"]]
    assert ids("--status", "resolved") == []
    assert ids("--status", "all", "--limit", "1") == [alerts["HP001"]]


def test_show_text_has_history_evidence_and_audit(
        alerts: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", str(alerts["HP001"]))
    assert code == 0
    assert out.startswith(f"Alert {alerts['HP001']}: deformation at hazard HP001 西山村滑坡 "
                          "(330106)")
    assert "level:       none" not in out
    assert "I red 红色 (peak I red 红色)" in out
    assert "2026-06-01T00:00:00+00:00  opened   none -> III yellow 黄色" in out
    assert "2026-06-01T01:00:00+00:00  raised   III yellow 黄色 -> I red 红色" in out
    # Evidence one fact per line, each channel its own block, nothing flattened into paths.
    line = next(x for x in out.splitlines() if x.strip().startswith("forecast:"))
    assert "failure_time 2026-06-01T09:00:00+00:00" in line
    assert 'band ["2026-06-01T07:30:00+00:00", "2026-06-01T11:00:00+00:00"]' in line
    assert "velocity_mm_per_day: 48" in out
    assert "channel_id: 7" in out and "channels[0]" not in out and "null" not in out
    assert "Audit trail:" in out and "eng-1  raised" in out


def test_ack_then_resolve_then_show_json(alerts: dict[str, int],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    aid = str(alerts["HP001"])
    code, out, _ = run(capsys, "ack", aid, "--user", "li", "--note", "去现场核查")
    assert (code, out) == (0, f"alert {aid} acknowledged by li (I red 红色, deformation at "
                              "hazard HP001 西山村滑坡 (330106))\n")
    code, _, err = run(capsys, "ack", aid, "--user", "wang")
    assert code == 2 and f"alert {aid} is already acknowledged by li" in err
    code, out, _ = run(capsys, "resolve", aid, "--user", "li", "--reason", "evacuated; stable")
    assert (code, out) == (0, f"alert {aid} resolved by li: evacuated; stable\n")
    code, _, err = run(capsys, "resolve", aid, "--user", "li", "--reason", "again")
    assert code == 2 and "already resolved" in err

    code, out, _ = run(capsys, "show", aid, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["status"], data["acknowledged_by"], data["ack_note"], data["resolved_by"],
            data["resolve_reason"]) == ("resolved", "li", "去现场核查", "li",
                                        "evacuated; stable")
    assert data["acknowledged_at"] and data["resolved_at"]
    assert [e["kind"] for e in data["events"]] == ["opened", "raised", "resolved"]
    assert [(a["actor"], a["action"]) for a in data["audit"]] == [
        ("eng-1", "opened"), ("eng-1", "raised"), ("li", "acknowledged"), ("li", "resolved")]
    assert data["audit"][2]["detail"]["note"] == "去现场核查"
    _, out, _ = run(capsys, "list", "--json")
    assert [a["id"] for a in json.loads(out)] == [alerts["RG-7"]]


def test_cli_errors(alerts: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "999999")
    assert code == 2 and "alert 999999 does not exist" in err
    code, _, err = run(capsys, "resolve", str(alerts["RG-7"]), "--user", "li", "--reason", " ")
    assert code == 2 and "reason must not be empty" in err
    code, _, err = run(capsys, "list", "--limit", "0")
    assert code == 2 and "limit 0 is out of range" in err
    for argv in (["list", "--min-level", "purple"], ["list", "--since", "2026-06-01T00:00"],
                 ["list", "--kind", "flood"], ["ack", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["alerts", *argv])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown level 'purple'" in err and "needs a UTC offset" in err
    assert "invalid choice: 'flood'" in err and "--user" in err


def test_empty_list(conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "list") == (0, "no alerts\n", "")
    assert run(capsys, "list", "--json") == (0, "[]\n", "")
