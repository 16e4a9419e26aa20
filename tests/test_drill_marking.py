"""A drill's alert (an exercise's, 演练) is marked as one wherever a person sees it: the API
queue and detail (`exercise`), the queue filter, the SSE stream, `geowarn alerts list/show`.
A live alert carries no marker. Real database, real uvicorn for the stream."""

from __future__ import annotations

import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from geowarn.cli import main
from notify import exercises
from tests.fixtures.api import T0, login, seed
from tests.test_api_stream import _read_events, _token

DRILL = "flood-drill-1"


@pytest.fixture
def world(conn: psycopg.Connection) -> dict[str, int]:
    """A drill alert (raised while the exercise was active), then the live seeded ones."""
    exercises.start(conn, DRILL, "汛前演练")
    apply_changes(conn, [LevelChange("site", "GAUGE-D", "water_level", Level.ORANGE, T0)],
                  engine="drill")
    exercises.end(conn, DRILL)
    return seed(conn)


def test_api_queue_detail_and_filter_mark_the_drill(world: dict[str, int],
                                                    client: TestClient) -> None:
    headers = login(client, "admin")
    queue = {a["target"]["id"]: a for a in client.get("/api/alerts", headers=headers).json()}
    assert queue["GAUGE-D"]["exercise"] == DRILL
    assert all(a["exercise"] is None for t, a in queue.items() if t != "GAUGE-D")
    detail = client.get(f"/api/alerts/{world['GAUGE-D']}", headers=headers).json()
    assert detail["exercise"] == DRILL
    live = client.get(f"/api/alerts/{world['HP-XIHU']}", headers=headers).json()
    assert live["exercise"] is None
    only = client.get("/api/alerts", headers=headers, params={"exercise": DRILL}).json()
    assert [a["id"] for a in only] == [world["GAUGE-D"]]
    assert client.get("/api/alerts", headers=headers,
                      params={"exercise": "no-such"}).json() == []
    bad = client.get("/api/alerts", headers=headers, params={"exercise": "a b"})
    assert bad.status_code == 422 and "exercise" in bad.text
    # Acting on a drill answers with the marker too.
    acked = client.post(f"/api/alerts/{world['GAUGE-D']}/ack", headers=headers, json={})
    assert acked.status_code == 200 and acked.json()["exercise"] == DRILL


def test_openapi_documents_the_exercise_field(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for name in ("AlertOut", "AlertDetailOut"):
        prop = spec["components"]["schemas"][name]["properties"]["exercise"]
        assert "drill" in prop["description"] and prop["examples"] == ["flood-drill-2026"]
    params = {p["name"] for p in spec["paths"]["/api/alerts"]["get"]["parameters"]}
    assert "exercise" in params


def test_cli_marks_the_drill_only(world: dict[str, int],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert f"[DRILL 演练 {DRILL}]" in lines[str(world["GAUGE-D"])]
    live = [line for i, line in lines.items() if i != str(world["GAUGE-D"])]
    assert live and not any("DRILL" in line or "演练" in line for line in live)

    assert main(["alerts", "show", str(world["GAUGE-D"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[DRILL 演练 {DRILL}] Alert {world['GAUGE-D']}:")
    assert f"exercise:    {DRILL}" in out
    assert main(["alerts", "show", str(world["HP-XIHU"])]) == 0
    out = capsys.readouterr().out
    assert "DRILL" not in out and "演练" not in out and "exercise" not in out

    assert main(["alerts", "list", "--json", "--exercise", DRILL]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(a["id"], a["exercise"]) for a in data] == [(world["GAUGE-D"], DRILL)]


def test_stream_events_carry_the_exercise(world: dict[str, int], api_server: str
                                          ) -> None:
    events = _read_events(api_server, _token(api_server, "admin"), len(world), after=0)
    by_target = {e["target"]["id"]: e for _, e in events}  # type: ignore[index]
    assert by_target["GAUGE-D"]["exercise"] == DRILL
    assert all(e["exercise"] is None for t, e in by_target.items() if t != "GAUGE-D")
