"""Exercises (演练): a drill never reaches a real recipient. Through the real database, the
real notifier and the real Twilio client (only Twilio's HTTP is faked): a resident in both the
live set and the exercise set gets the drill only as a drill; a resident only in the live set
is never reached by it (only the file channel records them); live alerts before and after
reach everyone as before."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from lxml import etree

from alerts.engine import service as engine_service
from alerts.lifecycle import writes as lifecycle
from alerts.methods.levels import Level
from api import users
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.errors import InvalidInput
from gis import cap as gis_cap
from gis.model import FieldError
from ingest.gateway import Gateway
from notify import deliveries, exercises, messages, segments
from notify.channels.file import FileChannel
from notify.drill import PREFIX, DrillTemplates, is_drill_text
from notify.notifier import Notifier
from tests import notify_world as world
from tests.fixtures.api import PASSWORD, login
from tests.fixtures.broker import Broker
from tests.fixtures.fake_twilio import FakeTwilio
from tests.notify_twilio_env import notifier
from tests.test_notify_escalation_cap import validate

BOTH = "household:HP-1-HH0000"  # a resident who is also an exercise participant
LIVE_ONLY = ("household:HP-1-HH0001", "household:HP-1-HH0002")
PHONE = {f"household:HP-1-HH{i:04d}": f"+861360{i:07d}" for i in range(3)}


def drain(n: Notifier) -> None:
    while n.step():
        pass


def _alert_ids(conn: psycopg.Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT alert_id FROM alerts ORDER BY alert_id")]


def _run(fake: FakeTwilio, db_url: str, tmp: Path) -> None:
    n = notifier(fake, db_url, None, tmp)
    drain(n)
    n.close()


def _seen(fake: FakeTwilio) -> set[str]:
    return {rec.sid for rec in [*fake.messages(), *fake.calls()]}


def _reached(fake: FakeTwilio, seen: set[str]) -> dict[str, list[str]]:
    """Phone number -> bodies of the SMS and calls the provider was asked for (not `seen`)."""
    out: dict[str, list[str]] = {}
    for rec in [*fake.messages(), *fake.calls()]:
        if rec.sid not in seen:
            out.setdefault(rec.to, []).append(rec.body)
    return out


def test_a_drill_reaches_participants_only_and_only_as_a_drill(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio,
        tmp_path: Path) -> None:
    world.build(conn, households=3)
    # 1. A live red warning reaches all three households (SMS and a call each).
    world.change(conn, Level.RED)
    _run(fake_twilio, db_url, tmp_path)
    live = _reached(fake_twilio, set())
    assert {PHONE[h] for h in (BOTH, *LIVE_ONLY)} <= set(live)
    assert not any(is_drill_text(b) for bodies in live.values() for b in bodies)
    (first,) = _alert_ids(conn)
    # While it is open, no exercise may start: a drill's data would change a live alert.
    with pytest.raises(InvalidInput, match="live alert"):
        exercises.start(conn, "drill-1")
    lifecycle.resolve(conn, first, user="duty", reason="passed")
    _run(fake_twilio, db_url, tmp_path)

    # 2. The exercise: one household and the township officer take part.
    assert main(["exercise", "start", "drill-1", "--title", "汛前演练"]) == 0
    assert main(["exercise", "participants", "drill-1", "--add", BOTH, "person:town-1"]) == 0
    before = _seen(fake_twilio)
    world.change(conn, Level.RED, minutes=60)
    world.change(conn, Level.NONE, minutes=90)
    drill_alert = _alert_ids(conn)[-1]
    assert conn.execute("SELECT exercise FROM alerts WHERE alert_id = %s",
                        (drill_alert,)).fetchone() == ("drill-1",)
    lifecycle.resolve(conn, drill_alert, user="duty", reason="drill over")
    _run(fake_twilio, db_url, tmp_path)
    reached = _reached(fake_twilio, before)
    # Only the participants' numbers were given to the provider, and every text says drill.
    assert set(reached) == {PHONE[BOTH], "+8613500000001"}
    for bodies in reached.values():
        # SMS bodies begin with it; a call's TwiML reads it first.
        assert all(b.startswith(PREFIX["zh"]) or f">{PREFIX['zh']}" in b for b in bodies)
    assert any("立即撤离" in b for b in reached[PHONE[BOTH]])  # the drill's evacuation text
    rows = deliveries.list_deliveries(conn, alert_id=drill_alert)
    assert all(is_drill_text(d.body) for d in rows)
    for d in rows:
        if d.channel == "sms":
            assert segments.count(messages.with_tag(d.body, d.delivery_id)).parts <= 3
    # Everyone else is only recorded on the file channel: who a real warning would reach.
    for rid in LIVE_ONLY:
        mine = [d for d in rows if d.recipient_id == rid]
        assert mine and {d.channel for d in mine} == {"file"}
    officers = {d.recipient_id for d in rows if d.channel == "file"}
    assert {"person:county-1", "person:city-1", "hazard:HP-1:monitor:1"} <= officers
    written = [json.loads(line) for line in (tmp_path / "file.jsonl").read_text().splitlines()]
    assert written and all(is_drill_text(w["text"]) for w in written)
    assert {w["recipient"] for w in written} >= set(LIVE_ONLY)
    assert all("*" in w["to"] or w["to"] == "-" for w in written)  # masked numbers only
    # A drill starts no escalation. Its CAP messages are CAP 1.2 (the OASIS XSD) with status
    # Exercise and the exercise in <note>, and no CAP reader takes them for a warning.
    assert conn.execute("SELECT count(*) FROM escalations WHERE alert_id = %s",
                        (drill_alert,)).fetchone() == (0,)
    caps = conn.execute("SELECT msg_type, xml FROM cap_feed WHERE alert_id = %s ORDER BY "
                        "event_id", (drill_alert,)).fetchall()
    assert [m for m, _ in caps] == ["Alert", "Update", "Cancel"]
    for _, xml in caps:
        validate(xml)
        assert "<status>Exercise</status>" in xml and "<headline>【演练】" in xml
        assert "<note>演练drill-1（汛前演练）：非真实预警" in xml
        with pytest.raises(FieldError, match="only 'Actual'"):
            gis_cap.parse(xml)

    # 3. After the exercise, a live warning reaches everyone again, not as a drill.
    assert main(["exercise", "end", "drill-1"]) == 0
    before = _seen(fake_twilio)
    world.change(conn, Level.RED, minutes=180)
    _run(fake_twilio, db_url, tmp_path)
    after = _reached(fake_twilio, before)
    assert {PHONE[h] for h in (BOTH, *LIVE_ONLY)} <= set(after)
    assert not any(is_drill_text(b) for bodies in after.values() for b in bodies)
    assert conn.execute("SELECT exercise FROM alerts ORDER BY alert_id DESC LIMIT 1"
                        ).fetchone() == (None,)


def test_exercise_refused_while_an_engine_leads(conn: psycopg.Connection, db_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.ENGINE_LEADER_KEY == engine_service._LEADER_KEY
    with psycopg.connect(db_url, autocommit=True) as leader:
        leader.execute("SELECT pg_advisory_lock(%s)", (engine_service._LEADER_KEY,))
        with pytest.raises(InvalidInput, match="geowarn engine"):
            exercises.start(conn, "drill-x")
        # Released here: a closed session's locks go only when the server has noticed.
        leader.execute("SELECT pg_advisory_unlock(%s)", (engine_service._LEADER_KEY,))
    exercises.start(conn, "drill-x")
    assert main(["exercise", "start", "other"]) == 2
    assert "drill-x" in capsys.readouterr().err
    # simulate and replay start theirs before publishing anything, so they are refused too.
    assert main(["simulate", "--devices", "1", "--messages", "1", "--exercise", "other",
                 "--url", "mqtt://127.0.0.1:1"]) == 2
    assert "exercise 'drill-x' is active" in capsys.readouterr().err
    assert main(["exercise", "participants", "drill-x", "--add", "555-1234"]) == 2
    assert "person:ID" in capsys.readouterr().err
    assert main(["exercise", "list", "--json"]) == 0
    (ex,) = json.loads(capsys.readouterr().out)
    assert ex["name"] == "drill-x" and ex["ended_at"] is None


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_template_says_drill_and_fits_the_sms_budget(language: str) -> None:
    tpl = DrillTemplates()
    long_name = "某某县某某镇某某村后山特大型滑坡隐患点" * 3
    values = {"hazard": long_name, "place": "某某省某某市某某县" * 2, "level": "红色预警",
              "previous_level": "橙色预警", "kind": "变形", "hotline": "12336",
              "device": "GNSS-0001", "reason": "无数据上报", "minutes": 30,
              "shelter": "某某村小学操场临时避灾安置点" * 2, "distance": "1.2公里",
              "shelter_phone": "+8613700000001", "households": 12, "people": 40,
              "change": "较上次通知提前1天23小时"}
    names = sorted(p.stem for p in (messages.SHIPPED / language).glob("*.txt"))
    assert len(names) >= 10
    for name in names:
        body = tpl.render_sms(name, language, values)
        assert body.startswith(PREFIX[language]), name
        assert segments.count(body + " " * messages.TAG_RESERVE).parts <= 3, name


def test_replay_into_an_exercise_raises_drills_only(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world.build(conn, households=2, officers=False)
    add_device(conn, DeviceSpec(device_id="RG-DRILL", kind="rain_gauge", hazard_id="HP-1",
                                reporting_interval_s=3600))
    start_gateway(broker)
    # A day of a hard rainband (30 mm an hour for 8 hours), ending now.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    lines = ["time,rain_mm"] + [f"{start + timedelta(hours=h):%Y-%m-%dT%H:%MZ},"
                                f"{30.0 if 8 <= h < 16 else 0.0}" for h in range(24)]
    path = tmp_path / "band.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path), "--device", "RG-DRILL", "--channel", "rain_mm=rain",
                 "--url", broker.url, "--exercise", "flood-drill", "--engine",
                 "--wait", "30"]) == 0
    assert "exercise flood-drill is active" in capsys.readouterr().err
    rows = conn.execute("SELECT hazard_kind, peak_level, exercise FROM alerts").fetchall()
    assert rows and all(ex == "flood-drill" for _, _, ex in rows)
    assert max(level for _, level, _ in rows) >= 3  # residents would be told to prepare


def test_the_live_cap_feed_never_shows_a_drill(conn: psycopg.Connection, db_url: str,
                                                client: TestClient, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    world.build(conn, households=1)
    (live,) = world.change(conn, Level.RED)
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch})
    drain(n)
    lifecycle.resolve(conn, live.alert_id, user="duty", reason="passed")
    exercises.start(conn, "drill-2", "汛前演练")
    (drill,) = world.change(conn, Level.RED, minutes=60)
    drain(n)
    n.close()
    users.add_user(conn, "duty.x", PASSWORD, "duty_officer", [world.COUNTY])
    users.add_user(conn, "platform", PASSWORD, "viewer", [world.COUNTY])
    atom = "{http://www.w3.org/2005/Atom}"

    def entries(user: str, **params: str) -> list[tuple[str, str]]:
        r = client.get("/api/cap/feed", headers=login(client, user), params=params)
        assert r.status_code == 200, r.text
        root = etree.fromstring(r.content)
        return [(e.findtext(f"{atom}title") or "", e.find(f"{atom}link").get("href"))
                for e in root.findall(f"{atom}entry")]

    ids = {a: {f"/api/cap/{i}" for (i,) in conn.execute(
        "SELECT identifier FROM cap_feed WHERE alert_id = %s", (a,))}
        for a in (live.alert_id, drill.alert_id)}
    assert len(ids[live.alert_id]) == 2 and len(ids[drill.alert_id]) == 1
    for user in ("duty.x", "platform"):  # the live feed: live messages only, for everyone
        shown = entries(user)
        assert {href for _, href in shown} == ids[live.alert_id], user
        assert not any(title.startswith("【演练】") for title, _ in shown)
        assert {href for _, href in entries(user, status="Actual")} == ids[live.alert_id]
    asked = entries("duty.x", status="Exercise")  # an officer asks for the drills
    assert {href for _, href in asked} == ids[drill.alert_id]
    assert all(title.startswith("【演练】") for title, _ in asked)
    doc = client.get(asked[0][1], headers=login(client, "duty.x"))
    assert doc.status_code == 200 and b"<status>Exercise</status>" in doc.content
    # A viewer (a republishing platform's key) may not ask for drills, nor fetch one.
    viewer = login(client, "platform")
    r = client.get("/api/cap/feed", headers=viewer, params={"status": "Exercise"})
    assert r.status_code == 403 and "status" in r.text
    r = client.get(asked[0][1], headers=viewer)
    assert r.status_code == 403 and "identifier" in r.text
    r = client.get("/api/cap/feed", headers=viewer, params={"status": "Test"})
    assert r.status_code == 422 and "status" in r.text
    # The same split in `geowarn notifications cap` (live) and `--exercise` (drills).
    assert main(["notifications", "cap"]) == 0
    out = capsys.readouterr().out
    assert out.count("<status>Actual</status>") == 2 and "Exercise" not in out
    assert main(["notifications", "cap", "--exercise"]) == 0
    out = capsys.readouterr().out
    assert out.count("<status>Exercise</status>") == 1 and "Actual" not in out
