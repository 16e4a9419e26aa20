"""Twilio SMS and voice through the real twilio client against the local fake: success, every
error class, timeouts, 429 Retry-After, callbacks in any order and repeated, forged
signatures, inbound replies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from alerts.methods.levels import Level
from notify import deliveries, messages
from notify.channels.twilio_client import translate
from notify.notifier import Notifier
from tests import notify_world as world
from tests.fixtures.fake_twilio import FakeTwilio
from tests.notify_twilio_env import callbacks_server, notifier

MONITOR = "+8613900000001"


def drain(n: Notifier) -> None:
    while n.step():
        pass


def monitor_rows(conn: psycopg.Connection) -> list[deliveries.Delivery]:
    return [d for d in deliveries.list_deliveries(conn)
            if d.recipient_id == "hazard:HP-1:monitor:1" and d.channel == "sms"]


def test_blue_reaches_the_monitor_and_callbacks_mark_it_delivered(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    world.build(conn, households=0)
    world.change(conn, Level.BLUE)
    with callbacks_server(db_url) as base:
        n = notifier(fake_twilio, db_url, base, tmp_path)
        drain(n)
        n.close()
        fake_twilio.wait_callbacks()
    (msg,) = fake_twilio.messages()
    (row,) = monitor_rows(conn)
    assert msg.to == MONITOR and msg.body.endswith("#" + messages.tag_of(row.delivery_id))
    assert row.provider_id == msg.sid and row.state == "delivered"
    assert row.masked_phone == "+86139****0001"
    assert set(fake_twilio.callback_responses) == {204}


@pytest.mark.parametrize("code", [21211, 21614, 21610, 21408])
def test_permanent_errors_are_never_retried_and_shown(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio, tmp_path: Path,
        code: int) -> None:
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("error", 400, code))
    world.change(conn, Level.BLUE)
    n = notifier(fake_twilio, db_url, None, tmp_path)
    drain(n)
    n.close()
    (row,) = monitor_rows(conn)
    assert (row.state, row.error_code) == ("rejected", str(code))
    assert fake_twilio.requests.count(("POST", "Messages")) == 1
    assert translate(code=code).tell_officers


def test_provider_error_text_never_keeps_the_number() -> None:
    from twilio.base.exceptions import TwilioRestException

    error = TwilioRestException(400, "/Messages.json",
                                "The 'To' number +8613900000001 is not a valid phone number.",
                                21211)
    outcome = translate(error=error)
    assert outcome.kind == "rejected" and "13900000001" not in outcome.message
    other = translate(error=TwilioRestException(
        400, "/Messages.json", "Number +8613900000001 cannot receive this", 21999))
    assert other.kind == "failed" and other.tell_officers
    assert "13900000001" not in other.message and "+86139****0001" in other.message


def test_429_waits_for_retry_after_then_succeeds(conn: psycopg.Connection, db_url: str,
                                                fake_twilio: FakeTwilio,
                                                tmp_path: Path) -> None:
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("error", 429, 20429, 7))
    world.change(conn, Level.BLUE)
    now = [datetime.now(UTC)]
    n = notifier(fake_twilio, db_url, None, tmp_path, clock=lambda: now[0])
    drain(n)
    (row,) = monitor_rows(conn)
    assert row.state == "pending" and row.error_code == "20429"
    assert row.next_attempt_at - now[0] == timedelta(seconds=7)
    now[0] += timedelta(seconds=6)
    assert n.send_once() == 0  # not before Retry-After
    now[0] += timedelta(seconds=1)
    drain(n)
    n.close()
    (row,) = monitor_rows(conn)
    assert row.state == "queued" and len(fake_twilio.messages()) == 1


def test_5xx_retries_with_backoff(conn: psycopg.Connection, db_url: str,
                                  fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("error", 503, 20500), ("error", 500, 20500))
    world.change(conn, Level.BLUE)
    now = [datetime.now(UTC)]
    n = notifier(fake_twilio, db_url, None, tmp_path, clock=lambda: now[0])
    for wait in (30, 60):
        drain(n)
        (row,) = monitor_rows(conn)
        assert row.state == "pending"
        assert row.next_attempt_at - now[0] == timedelta(seconds=wait)
        now[0] = row.next_attempt_at
    drain(n)
    n.close()
    assert monitor_rows(conn)[0].state == "queued"
    assert len(fake_twilio.messages()) == 1


def test_the_validity_period_goes_to_twilio(conn: psycopg.Connection, db_url: str,
                                           fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    """Twilio drops a message still queued after ValidityPeriod: a blue warning's is 6 h."""
    world.build(conn, households=0)
    world.change(conn, Level.BLUE)
    now = datetime.now(UTC)
    n = notifier(fake_twilio, db_url, None, tmp_path, clock=lambda: now)
    drain(n)
    n.close()
    (msg,) = fake_twilio.messages()
    assert msg.validity == str(6 * 3600)


def test_a_stale_warning_expires_rather_than_arriving_late(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("error", 503, 20500))
    world.change(conn, Level.BLUE)
    now = [datetime.now(UTC)]
    n = notifier(fake_twilio, db_url, None, tmp_path, clock=lambda: now[0])
    drain(n)
    (row,) = monitor_rows(conn)
    assert row.state == "pending"  # the provider failed: a retry is due in 30 s
    now[0] += timedelta(hours=6)  # ... but nothing sends until the warning is 6 h old
    n.send_once()
    n.close()
    (row,) = monitor_rows(conn)
    assert row.state == "expired" and fake_twilio.messages() == []
    assert fake_twilio.requests.count(("POST", "Messages")) == 1


def test_timeout_is_reconciled_with_the_provider_not_resent(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("slow", 1.5))
    world.change(conn, Level.BLUE)
    now = [datetime.now(UTC)]
    n = notifier(fake_twilio, db_url, None, tmp_path, timeout=0.3, clock=lambda: now[0])
    drain(n)
    (row,) = monitor_rows(conn)
    assert row.state == "sending" and row.error_code == "timeout"
    now[0] += timedelta(minutes=1)
    drain(n)
    n.close()
    (row,) = monitor_rows(conn)
    (msg,) = fake_twilio.messages()  # the timed-out request had been taken: no second SMS
    assert row.state == "queued" and row.provider_id == msg.sid
    assert n.stats.reconciled_found == 1
    # Create and the Messages list (filtered by To) were logged without the number.
    assert "twilio GET" in caplog.text and "twilio POST" in caplog.text
    assert "13900000001" not in caplog.text


@pytest.mark.parametrize(("code", "tell"), [(30001, False), (30003, False), (30005, True),
                                            (30006, True)])
def test_delivery_errors_arrive_by_callback(conn: psycopg.Connection, db_url: str,
                                            fake_twilio: FakeTwilio, tmp_path: Path,
                                            code: int, tell: bool) -> None:
    world.build(conn, households=0)
    fake_twilio.script(MONITOR, ("deliver_error", code))
    world.change(conn, Level.BLUE)
    with callbacks_server(db_url) as base:
        n = notifier(fake_twilio, db_url, base, tmp_path)
        drain(n)
        n.close()
        fake_twilio.wait_callbacks()
    (row,) = monitor_rows(conn)
    assert (row.state, row.error_code) == ("undelivered", str(code))
    assert row.error_text == translate(code=code).message
    assert translate(code=code).tell_officers is tell
    assert translate(code=30001).kind == "retry"


def test_callbacks_out_of_order_and_repeated_only_move_forward(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    world.build(conn, households=30)
    fake_twilio.shuffle_callbacks = True
    fake_twilio.duplicate_callbacks = True
    world.change(conn, Level.ORANGE)
    with callbacks_server(db_url) as base:
        n = notifier(fake_twilio, db_url, base, tmp_path)
        drain(n)
        n.close()
        fake_twilio.wait_callbacks()
    rows = [d for d in deliveries.list_deliveries(conn) if d.channel == "sms"]
    assert len(rows) >= 30 and {d.state for d in rows} == {"delivered"}
    # A late "sent" after "delivered" changes nothing.
    assert deliveries.advance(conn, "sms", rows[0].provider_id or "", "sent") == (
        rows[0].delivery_id, "delivered")


def test_forged_signatures_are_refused(conn: psycopg.Connection, db_url: str,
                                       fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    world.build(conn, households=0)
    world.change(conn, Level.BLUE)
    fake_twilio.callbacks_on = False
    with callbacks_server(db_url) as base:
        n = notifier(fake_twilio, db_url, base, tmp_path)
        drain(n)
        n.close()
        (row,) = monitor_rows(conn)
        url = f"{base}/twilio/status?d={row.delivery_id}"
        params = {"MessageSid": row.provider_id or "", "MessageStatus": "delivered"}
        good = fake_twilio.sign(url, params)
        forged = {"X-Twilio-Signature": good[:-2] + ("A=" if good[-2:] != "A=" else "B=")}
        assert httpx.post(url, data=params, headers=forged).status_code == 403
        assert httpx.post(url, data=params).status_code == 403
        tampered = dict(params, MessageStatus="failed")
        assert httpx.post(url, data=tampered, headers={"X-Twilio-Signature": good}
                          ).status_code == 403
        assert deliveries.get(conn, row.delivery_id).state == "queued"  # type: ignore[union-attr]
        assert httpx.post(url, data=params, headers={"X-Twilio-Signature": good}
                          ).status_code == 204
        assert deliveries.get(conn, row.delivery_id).state == "delivered"  # type: ignore[union-attr]
        inbound = f"{base}/twilio/inbound"
        reply = {"MessageSid": "SMin1", "From": MONITOR, "Body": "1"}
        assert httpx.post(inbound, data=reply, headers={"X-Twilio-Signature": "bad"}
                          ).status_code == 403
        assert conn.execute("SELECT status FROM alerts").fetchone() == ("open",)
        ok = httpx.post(inbound, data=reply,
                        headers={"X-Twilio-Signature": fake_twilio.sign(inbound, reply)})
        assert ok.status_code == 200
    assert conn.execute("SELECT status, acknowledged_by FROM alerts").fetchone() == (
        "acknowledged", "sms:hazard:HP-1:monitor:1")
    assert conn.execute("SELECT masked_from FROM inbound_messages").fetchone() == (
        "+86139****0001",)


def test_red_calls_read_the_message_in_mandarin(conn: psycopg.Connection, db_url: str,
                                                fake_twilio: FakeTwilio,
                                                tmp_path: Path) -> None:
    world.build(conn, households=3)
    world.change(conn, Level.RED)
    n = notifier(fake_twilio, db_url, None, tmp_path)
    drain(n)
    n.close()
    calls = fake_twilio.calls()
    assert len(calls) == 4  # 3 households + the monitor
    for c in calls:
        assert c.body.count('<Say language="zh-CN"') == 3 and "撤离" in c.body
        assert "#GW" not in c.body
    rows = [d for d in deliveries.list_deliveries(conn) if d.channel == "voice"]
    assert {d.state for d in rows} == {"queued"}
