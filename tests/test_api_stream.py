"""Live alert changes as server-sent events through a real uvicorn server: new changes arrive
at once (NOTIFY), Last-Event-ID resumes exactly after what was seen, scope is respected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import psycopg

from alerts.lifecycle.writes import LevelChange, acknowledge, apply_changes
from alerts.methods.levels import Level
from tests.fixtures.api import PASSWORD, seed


def _token(base: str, username: str) -> dict[str, str]:
    r = httpx.post(f"{base}/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _read_events(base: str, headers: dict[str, str], want: int, *, after: int | None = None,
                 during: object = None) -> list[tuple[int, dict[str, object]]]:
    """Read `want` events from the stream; `during()` runs once the stream is open."""
    events: list[tuple[int, dict[str, object]]] = []
    params = {"after": after} if after is not None else {}
    with httpx.stream("GET", f"{base}/api/alerts/stream", headers=headers, params=params,
                      timeout=httpx.Timeout(20.0)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        started = False
        for line in r.iter_lines():
            if line.startswith("retry:") and not started:
                started = True
                if callable(during):
                    during()
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = line[6:]
            elif line == "" and "data" in current:
                events.append((int(current["id"]), json.loads(current["data"])))
                current = {}
                if len(events) >= want:
                    break
    return events


def test_stream_sends_new_changes_and_resumes(conn: psycopg.Connection, db_url: str,
                                              api_server: str) -> None:
    ids = seed(conn)
    conn.commit()
    city = _token(api_server, "duty.city")  # 330100: Xihu and Shangcheng, not Jiaojiang
    history = _read_events(api_server, city, 2, after=0)
    assert {e["target"]["id"] for _, e in history} <= {"HP-XIHU", "HP-SHANG"}  # type: ignore[index]
    assert all(e["action"] == "opened" for _, e in history)

    def act() -> None:
        with psycopg.connect(db_url) as c:
            acknowledge(c, ids["HP-XIHU"], user="duty.xihu", note="on my way")
            # Outside the city's scope: must not reach this stream.
            apply_changes(c, [LevelChange("hazard", "HP-JIAO", "deformation", Level.RED,
                                          datetime(2026, 7, 1, 3, tzinfo=UTC))], engine="t")
            apply_changes(c, [LevelChange("hazard", "HP-SHANG", "deformation", Level.RED,
                                          datetime(2026, 7, 1, 3, tzinfo=UTC))], engine="t")
            c.commit()

    live = _read_events(api_server, city, 2, during=act)  # only changes after connecting
    assert [(e["target"]["id"], e["action"]) for _, e in live] == [  # type: ignore[index]
        ("HP-XIHU", "acknowledged"), ("HP-SHANG", "raised")]
    assert live[1][1]["level"] == "red"
    # Reconnecting with the id of the first live event gives exactly the one after it.
    resumed = _read_events(api_server, {**city, "Last-Event-ID": str(live[0][0])}, 1)
    assert resumed == [live[1]]


def test_stream_needs_alogin(db_url: str, api_server: str) -> None:
    r = httpx.get(f"{api_server}/api/alerts/stream", timeout=5)
    assert r.status_code == 401
