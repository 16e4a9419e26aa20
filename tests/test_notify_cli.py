"""The notification commands as an operator types them (file channel, real database)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from alerts.methods.levels import Level
from geowarn import cli
from geowarn.settings import override_settings
from tests import notify_world as world


@pytest.fixture
def outfile(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "notifications.jsonl"
    override_settings(database_url=db_url, notify_file=path)
    return path


def test_people_and_duty_commands(conn: psycopg.Connection, outfile: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    world.build(conn, households=0, officers=False)
    people_csv = tmp_path / "people.csv"
    people_csv.write_text("id,name,phone,language,roles,county_code\n"
                          "o-1,值班员甲,13500000009,zh,county_officer,331122\n"
                          "o-2,Bad,notaphone,zh,county_officer,331122\n")
    assert cli.main(["people", "import", str(people_csv)]) == 1
    out = capsys.readouterr().out
    assert "1 added" in out and "line 3" in out
    assert cli.main(["people", "list"]) == 0
    out = capsys.readouterr().out
    assert "+86135****0009" in out and "13500000009" not in out
    assert "hazard:HP-1:monitor:1" in out and "13900000001" not in out
    duty_csv = tmp_path / "duty.csv"
    duty_csv.write_text("role,county_code,person_id,from,to\n"
                        "county_officer,331122,o-1,2026-07-01T00:00:00+08:00,"
                        "2026-07-02T00:00:00+08:00\n"
                        "county_officer,331122,nobody,2026-07-01T00:00:00+08:00,"
                        "2026-07-02T00:00:00+08:00\n")
    assert cli.main(["duty", "import", str(duty_csv)]) == 1
    assert "not in the directory" in capsys.readouterr().out
    assert cli.main(["duty", "now", "331122", "--at", "2026-07-01T12:00:00+08:00"]) == 0
    assert "o-1" in capsys.readouterr().out
    assert cli.main(["duty", "now", "331122", "--at", "2026-08-01T12:00:00+08:00"]) == 1


def test_notify_once_then_list_stats_and_cap(conn: psycopg.Connection, outfile: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    world.build(conn, households=2)
    (opened,) = world.change(conn, Level.ORANGE)
    assert cli.main(["notify", "--once"]) == 0
    capsys.readouterr()
    lines = [json.loads(x) for x in outfile.read_text().splitlines()]
    assert len(lines) == 6  # monitor, responsible, township and county officers, 2 homes
    assert cli.main(["notifications", "list", "--alert", str(opened.alert_id), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["state"] for r in rows} == {"delivered"}
    assert all(r["phone"] is None or "****" in r["phone"] for r in rows)
    assert cli.main(["notify", "--stats"]) == 0
    assert "delivered 6" in capsys.readouterr().out
    assert cli.main(["notifications", "cap"]) == 0
    assert "<msgType>Alert</msgType>" in capsys.readouterr().out
    assert cli.main(["notify", "test", "13800000001"]) == 0
    out = capsys.readouterr().out
    assert "+86138****0001" in out and "accepted" in out and "13800000001" not in out
    assert cli.main(["notify", "ack", str(opened.alert_id), "--user", "officer-x"]) == 0
    assert "escalation stopped" in capsys.readouterr().out
    assert cli.main(["notify", "test", "not-a-number"]) == 2
