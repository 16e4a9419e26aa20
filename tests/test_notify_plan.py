"""Planning and sending through the file channel against the real database: who hears what,
shelter assignment under capacity, all-clear to exactly those told, people and duty."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from alerts.lifecycle import writes as lifecycle
from alerts.methods.levels import Level
from notify import deliveries, people
from notify.channels.file import FileChannel
from notify.notifier import Notifier
from tests import notify_world as world


def notifier(db_url: str, path: Path, **kw: object) -> Notifier:
    ch = FileChannel(path)
    return Notifier(db_url, {"file": ch, "sms": ch, "voice": ch}, **kw)  # type: ignore[arg-type]


def drain(n: Notifier) -> None:
    while n.step():
        pass


def sent_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_audience(conn: psycopg.Connection, alert_id: int | None = None) -> Counter[tuple]:
    return Counter((d.audience, d.channel, d.purpose, d.state)
                   for d in deliveries.list_deliveries(conn, alert_id=alert_id))


def test_red_with_120_households_and_two_small_shelters(conn: psycopg.Connection,
                                                        db_url: str, tmp_path: Path) -> None:
    # 120 households (17 of 5 people, 103 of 3): 394 people; shelters of 150 and 100 free.
    world.build(conn, households=120, shelters=((200, 50), (100, 0)))
    world.change(conn, Level.RED)
    n = notifier(db_url, tmp_path / "out.jsonl")
    drain(n)
    n.close()
    rows = deliveries.list_deliveries(conn)
    residents = [d for d in rows if d.audience == "residents_evacuate"]
    sms = [d for d in residents if d.channel == "sms"]
    calls = [d for d in residents if d.channel == "voice"]
    assert len(sms) == 120 and len(calls) == 120
    assert {d.recipient_id for d in sms} == {f"household:HP-1-HH{i:04d}" for i in range(120)}
    members = {f"household:HP-1-HH{i:04d}": 5 if i % 7 == 0 else 3 for i in range(120)}
    load: Counter[str] = Counter()
    for d in sms:
        if d.shelter_id:
            load[d.shelter_id] += members[d.recipient_id]
            number = d.shelter_id[-1]
            assert f"示例安置点{number}" in d.body and "立即撤离" in d.body
        else:
            assert "安全地带" in d.body
    assert load["HP-1-SH1"] <= 150 and load["HP-1-SH2"] <= 100
    assert load["HP-1-SH1"] >= 148 and load["HP-1-SH2"] >= 98  # filled, not left empty
    unplaced = [d for d in sms if d.shelter_id is None]
    assert unplaced
    shortfall = [d for d in rows if d.purpose == "unplaced"]
    assert {d.audience for d in shortfall} >= {"county_officer", "city_officer"}
    people_left = sum(members[d.recipient_id] for d in unplaced)
    for d in shortfall:
        assert (f"{len(unplaced)}户{people_left}人" in d.body if d.language == "zh" else
                f"{len(unplaced)} households ({people_left} people)" in d.body)
    # Every officer tier and the monitor heard; the monitor also by phone call.
    aud = {(d.audience, d.channel) for d in rows}
    assert {("monitor", "sms"), ("monitor", "voice"), ("township_officer", "sms"),
            ("county_officer", "sms"), ("city_officer", "sms")} <= aud
    # The English-speaking city officer got English.
    city = [d for d in rows if d.recipient_id == "person:city-1" and d.purpose == "warning"]
    assert city and "red warning" in city[0].body
    # Sent through the file channel, each exactly once, numbers masked there and in rows.
    lines = sent_lines(tmp_path / "out.jsonl")
    assert len(lines) == sum(1 for d in rows if d.state == "delivered")
    assert len({line["tag"] for line in lines}) == len(lines)
    assert all("****" in line["to"] for line in lines)
    assert all(d.masked_phone is None or "****" in d.masked_phone for d in rows)
    raw = conn.execute("SELECT count(*) FROM deliveries WHERE body LIKE '%%1360000%%' "
                       "OR masked_phone LIKE '%%13600000%%'").fetchone()
    assert raw == (0,)


@pytest.mark.parametrize(("level", "expected"), [
    (Level.BLUE, {"monitor"}),
    (Level.YELLOW, {"monitor", "responsible", "township_officer"}),
    (Level.ORANGE, {"monitor", "responsible", "township_officer", "county_officer",
                    "residents_prepare"}),
])
def test_levels_reach_their_audiences(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                                      level: Level, expected: set[str]) -> None:
    world.build(conn, households=5)
    world.change(conn, level)
    n = notifier(db_url, tmp_path / "o.jsonl")
    drain(n)
    n.close()
    rows = deliveries.list_deliveries(conn)
    assert {d.audience for d in rows} == expected
    assert {d.channel for d in rows} == {"sms"}  # voice only for red


def test_floor_only_and_maintenance_never_reach_residents(conn: psycopg.Connection,
                                                          db_url: str, tmp_path: Path) -> None:
    world.build(conn, households=5)
    world.change(conn, Level.RED, kind="combined",
                 evidence={"regional_floor": 4, "kind_levels": {"rainfall": 0,
                                                                "deformation": 1}})
    n = notifier(db_url, tmp_path / "o.jsonl")
    drain(n)
    n.close()
    rows = deliveries.list_deliveries(conn)
    assert rows and {d.audience for d in rows} <= {"township_officer", "county_officer",
                                                   "city_officer"}
    assert all("区域气象风险" in d.body or "regional" in d.body for d in rows)


def test_all_clear_reaches_exactly_those_told(conn: psycopg.Connection, db_url: str,
                                              tmp_path: Path) -> None:
    world.build(conn, households=6)
    # A second point's households are never told anything.
    world.build(conn, households=4, hid="HP-2", officers=False)
    (opened,) = world.change(conn, Level.ORANGE)
    world.change(conn, Level.YELLOW, 30)
    n = notifier(db_url, tmp_path / "o.jsonl")
    drain(n)
    lifecycle.resolve(conn, opened.alert_id, user="officer", reason="slope stable")
    drain(n)
    n.close()
    rows = deliveries.list_deliveries(conn, alert_id=opened.alert_id)
    told = {d.recipient_id for d in rows if d.purpose == "warning"
            and d.audience == "residents_prepare"}
    cleared = {d.recipient_id for d in rows if d.purpose == "all_clear"
               and d.audience == "residents_prepare"}
    assert told == cleared == {f"household:HP-1-HH{i:04d}" for i in range(6)}
    assert all("已解除" in d.body for d in rows if d.purpose == "all_clear"
               and d.audience.startswith("residents"))
    falls = [d for d in rows if d.purpose == "update"]
    assert falls and not any(d.audience.startswith("residents") for d in falls)


def test_people_import_list_links_hazard_monitors(conn: psycopg.Connection) -> None:
    world.build(conn, households=0, officers=False)
    text = ("id,name,phone,language,roles,county_code\n"
            "m-1,监测员1,+86 139-0000-0001,zh,monitor,331122\n"
            "bad,Someone,1380000x0005,zh,monitor,331122\n"
            "o-1,Officer,13500000009,en,county_officer;expert,331122\n")
    found, problems = people.parse_people_csv(text)
    assert [p.person_id for p in found] == ["m-1", "o-1"]
    assert len(problems) == 1 and "line 3" in str(problems[0]) and "1380000" not in str(
        problems[0])
    people.import_people(conn, found)
    listed = {c.person_id: c for c in people.everyone(conn)}
    # The hazard's monitor has the number of m-1: linked to the directory person.
    assert "hazard:HP-1:monitor:1" not in listed
    assert listed["hazard:HP-1:responsible"].phone == "+8613800000005"
    linked = people.hazard_contacts(conn, ["HP-1"], known=people.directory(conn))
    assert any(c.person_id == "m-1" and "monitor" in c.roles for c in linked)
    assert people.phone_of(conn, "person:o-1") == "+8613500000009"


def test_duty_now_follows_the_roster(conn: psycopg.Connection) -> None:
    world.build(conn, households=0)
    now = people.on_duty(conn, "331122", world.T0)
    assert {(r, c.person_id) for r, c in now} == {("township_officer", "town-1"),
                                                  ("county_officer", "county-1"),
                                                  ("city_officer", "city-1")}
    assert people.on_duty(conn, "331122", world.T0.replace(year=2030)) == []
    assert people.on_duty(conn, "330185", world.T0) == []  # another city's county


def test_duty_room_webhook_gets_what_officers_are_told(conn: psycopg.Connection, db_url: str,
                                                       tmp_path: Path) -> None:
    from notify.routing import RoutingTable

    world.build(conn, households=2)
    world.change(conn, Level.ORANGE)
    ch = FileChannel(tmp_path / "o.jsonl")
    room = FileChannel(tmp_path / "room.jsonl", name="webhook")
    n = Notifier(db_url, {"file": ch, "sms": ch, "voice": ch, "webhook": room},
                 routing=RoutingTable(duty_room_webhook=True))
    drain(n)
    n.close()
    posts = [d for d in deliveries.list_deliveries(conn) if d.channel == "webhook"]
    assert [(d.recipient_id, d.purpose, d.state) for d in posts] == [
        ("webhook:duty-room", "warning", "delivered")]
    assert "橙色预警" in posts[0].body
    assert len(sent_lines(tmp_path / "room.jsonl")) == 1


def _device_alert(conn: psycopg.Connection, db_url: str, path: Path, kind: str, level: Level,
                  evidence: dict) -> list[deliveries.Delivery]:
    """A `kind` alert on DEV-1 of a point with households, whose maintainer is "fixer" (the
    other maintainer keeps DEV-9), planned and sent; the deliveries."""
    from alerts.lifecycle.writes import LevelChange, apply_changes

    world.build(conn, households=4)
    conn.execute("INSERT INTO devices (device_id, kind, hazard_id) VALUES "
                 "('DEV-1', 'crack_meter', 'HP-1')")
    people.import_people(conn, [people.Contact("fixer", "运维员", "+8613300000001", "zh",
                                               ("maintainer",), "331122", ("DEV-1",)),
                                people.Contact("other-fixer", "运维员乙", "+8613300000002",
                                               "zh", ("maintainer",), "331122", ("DEV-9",))])
    apply_changes(conn, [LevelChange("device", "DEV-1", kind, level,  # type: ignore[arg-type]
                                     world.T0, evidence)], engine="test")
    n = notifier(db_url, path)
    drain(n)
    n.close()
    return deliveries.list_deliveries(conn)


def test_maintenance_goes_to_officers_and_the_maintainer_only(
        conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    rows = _device_alert(conn, db_url, tmp_path / "o.jsonl", "maintenance", Level.BLUE,
                         {"reason": "silent"})
    assert {(d.recipient_id, d.audience) for d in rows} == {
        ("person:county-1", "county_officer"), ("person:fixer", "maintainer")}
    assert all("DEV-1" in d.body and "无数据上报" in d.body for d in rows)


@pytest.mark.parametrize("level", [Level.BLUE, Level.ORANGE, Level.RED])
def test_data_quality_goes_to_officers_and_the_maintainer_only(
        conn: psycopg.Connection, db_url: str, tmp_path: Path, level: Level) -> None:
    """Bad data on a device of a point with households: whatever the level, no resident,
    no monitor and no call hears of it; the device's own maintainer does, the other not."""
    finding = {"channel_id": 1, "device_id": "DEV-1", "sensor": "crack_meter.opening",
               "finding": "flat", "value": 12.0}
    rows = _device_alert(conn, db_url, tmp_path / "o.jsonl", "data_quality", level,
                         {"reason": "data-quality finding", "channels": [finding]})
    audiences = {d.audience for d in rows}
    assert "maintainer" in audiences and audiences <= {"maintainer", "township_officer",
                                                       "county_officer", "city_officer"}
    assert {d.recipient_id for d in rows if d.audience == "maintainer"} == {"person:fixer"}
    assert not any(d.recipient_id.startswith(("household:", "hazard:")) for d in rows)
    assert {d.channel for d in rows} == {"sms"}
    assert all("DEV-1" in d.body and "数据异常（数值不变）" in d.body for d in rows)
