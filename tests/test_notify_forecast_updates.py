"""A refreshed failure forecast is texted only when it changed materially (notify/
forecast_news.py): the rule itself (pure), the routing file's settings, and a two-day red on
a driven clock through the real database and notifier: every hourly refresh is in the alert
history, a stable forecast texts the officers once (the first forecast), a forecast moving a
day earlier texts them once more."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.lifecycle import writes as lifecycle
from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from geowarn.errors import ConfigurationError
from notify import deliveries
from notify.channels.file import FileChannel
from notify.forecast_news import Forecast, ForecastPolicy, News, forecast_of, news, words
from notify.notifier import Notifier
from notify.routing import load_routing
from tests import notify_world as world

AT = datetime(2026, 7, 1, tzinfo=UTC)
H = timedelta(hours=1)


def fc(time: timedelta, half_band: timedelta | None = None) -> Forecast:
    if half_band is None:
        return Forecast(AT + time)
    return Forecast(AT + time, AT + time - half_band, AT + time + half_band)


def test_a_move_counts_against_the_time_still_to_go_with_a_floor() -> None:
    far = fc(10 * 24 * H)
    # Ten days to go: 20 % is two days. A day and a half is wandering; 2.1 days is news.
    assert news(far, fc(8.5 * 24 * H), AT) is None
    assert news(far, fc(7.9 * 24 * H), AT) == News("earlier", 2.1 * 24 * H)
    assert news(far, fc(12.5 * 24 * H), AT) == News("later", 2.5 * 24 * H)
    # Two hours to go: 20 % is 24 minutes, but the 1 h floor holds; 65 minutes is news.
    near = fc(2 * H)
    assert news(near, fc(2 * H + timedelta(minutes=40)), AT) is None
    assert news(near, fc(2 * H + timedelta(minutes=65)), AT) == News(
        "later", timedelta(minutes=65))
    # The time to go is from the event's data time to the earlier forecast.
    assert news(far, fc(7.9 * 24 * H), AT - 5 * 24 * H) is None  # 13 days to go then
    # A forecast already due: only the floor.
    assert news(fc(-H), fc(-H + timedelta(minutes=61)), AT) is not None


def test_the_band_appearance_and_withdrawal() -> None:
    told = fc(3 * 24 * H, 6 * H)  # a 12 h band
    assert news(told, fc(3 * 24 * H, 7 * H), AT) is None  # 14 h: +2 h < 6 h
    assert news(told, fc(3 * 24 * H, 10 * H), AT) == News("wider", 8 * H)
    assert news(told, fc(3 * 24 * H, 2 * H), AT) == News("narrower", 8 * H)
    assert news(told, fc(3 * 24 * H), AT) is None  # a band no longer given: not news alone
    assert news(None, told, AT) == News("issued")
    assert news(told, None, AT) == News("withdrawn")
    assert news(None, None, AT) is None
    strict = ForecastPolicy(shift_fraction=0.0, min_shift_s=0.0, band_fraction=0.0)
    assert news(told, fc(3 * 24 * H + timedelta(minutes=1), 6 * H), AT, strict) is not None
    assert news(told, told, AT, strict) is None  # the same forecast is never news


def test_forecasts_are_read_defensively_and_the_earliest_channel_wins() -> None:
    good = {"time": "2026-07-03T14:20Z", "lower": "2026-07-03T11:00Z",
            "upper": "2026-07-03T18:40Z", "issued_at": "2026-07-01T04:00Z"}
    later = {**good, "time": "2026-07-05T00:00Z"}
    ev = {"channels": [{"forecast": later}, {"forecast": {"time": "soon"}}, {"x": 1},
                       "junk", {"forecast": good}, {"forecast": {"time": "2026-07-02T00:00"}}]}
    found = forecast_of(ev)
    assert found is not None and found.time == datetime(2026, 7, 3, 14, 20, tzinfo=UTC)
    assert found.band == timedelta(hours=7, minutes=40)
    assert forecast_of({"channels": "nope"}) is None and forecast_of({}) is None
    swapped = forecast_of({"channels": [{"forecast": {**good, "lower": good["upper"],
                                                      "upper": good["lower"]}}]})
    assert swapped is not None and swapped.band is None  # a band upside down is no band
    assert words(News("earlier", timedelta(days=1, hours=3)), "zh") == "较上次通知提前1天3小时"
    assert words(News("later", timedelta(minutes=40)), "en") == "40 min later than last told"
    assert words(News("issued"), "zh") == "首次预报"


def test_the_routing_file_sets_what_is_material(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps({"forecast_updates": {"shift_fraction": 0.1,
                                                     "min_shift_min": 30}}))
    policy = load_routing(path).forecast_updates
    assert policy == ForecastPolicy(shift_fraction=0.1, min_shift_s=1800.0, band_fraction=0.5)
    assert load_routing(None).forecast_updates == ForecastPolicy()
    for bad, says in (({"shift_fraction": -1}, "shift_fraction"),
                      ({"min_shift_min": "1h"}, "min_shift_min"),
                      ({"band_fraction": float("nan")}, "band_fraction"),
                      ({"min_shift": 5}, "unknown setting"), ([], "expected an object")):
        path.write_text(json.dumps({"forecast_updates": bad}))
        with pytest.raises(ConfigurationError, match=says):
            load_routing(path)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _evidence(time: datetime, half_band: timedelta) -> dict[str, Any]:
    def iso(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%MZ")
    return {"update": "forecast refreshed", "channels": [{"forecast": {
        "time": iso(time), "lower": iso(time - half_band), "upper": iso(time + half_band),
        "issued_at": iso(time)}}]}


def test_a_two_day_red_texts_a_stable_forecast_once_and_a_day_earlier_once_more(
        conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    world.build(conn, households=4)
    failure = world.T0 + timedelta(days=5)
    (opened,) = world.change(conn, Level.RED, evidence=_evidence(failure, 12 * H))
    clock = Clock()
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock)

    def run() -> None:
        while n.step():
            pass

    run()
    lifecycle.acknowledge(conn, opened.alert_id, user="duty")  # officers are on it
    rng = random.Random(7)
    rounds: list[set[str]] = []

    def refresh(hour: int, time: datetime) -> None:
        # The engine's hourly refresh: the forecast wanders by minutes, the band too.
        jitter = timedelta(minutes=rng.uniform(-25, 25))
        apply_changes(conn, [LevelChange(
            "hazard", "HP-1", "deformation", Level.RED, world.T0 + hour * H,
            _evidence(time + jitter, 12 * H + timedelta(minutes=rng.uniform(-30, 30))),
            3600.0)])
        clock.now += H
        run()
        latest = _latest_event(conn)
        told = {d.recipient_id for d in deliveries.list_deliveries(conn, alert_id=opened.alert_id)
                if d.purpose == "update" and d.event_id == latest}
        rounds.append(told)

    for hour in range(1, 49):  # two days of red, the forecast stable
        refresh(hour, failure)
    texted = [i for i, r in enumerate(rounds) if r]
    assert texted == [0], rounds  # the first forecast once, then silence for two days
    officers = rounds[0]
    assert officers and not any(r.startswith("household:") for r in officers)
    refresh(49, failure - timedelta(days=1))  # the slope speeds up: a day earlier
    refresh(50, failure - timedelta(days=1))  # and stays there
    assert rounds[48] == officers and rounds[49] == set()
    n.close()
    # Every refresh is in the history and went through the outbox (API, stream, CAP).
    assert conn.execute("SELECT count(*) FROM alert_events WHERE alert_id = %s AND kind = "
                        "'updated'", (opened.alert_id,)).fetchone() == (50,)
    assert conn.execute("SELECT count(*) FROM notification_outbox WHERE event_kind = "
                        "'updated' AND state = 'sent'").fetchone() == (50,)
    bodies = [d.body for d in deliveries.list_deliveries(conn, alert_id=opened.alert_id)
              if d.purpose == "update" and d.language == "zh"]
    assert bodies and all("预报更新" in b for b in bodies)
    assert any("首次预报" in b for b in bodies) and any("较上次通知提前1天" in b for b in bodies)


def _latest_event(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT max(event_id) FROM alert_events").fetchone()
    assert row is not None
    return int(row[0])
