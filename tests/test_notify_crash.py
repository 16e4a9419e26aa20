"""Exactly once under SIGKILL and with concurrent notifiers: `geowarn notify` subprocesses
against the real database and the fake Twilio, killed at random points by the notifier's
crash hook (GEOWARN_NOTIFY_CRASH_AT), then restarted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from alerts.methods.levels import Level
from notify import deliveries, messages
from notify.notifier import Notifier
from tests import notify_world as world
from tests.fixtures.fake_twilio import ACCOUNT, TOKEN, FakeTwilio
from tests.notify_twilio_env import SENDER

ROOT = Path(__file__).resolve().parent.parent
POINTS = ("before_send", "after_accept", "after_record")


def run_notifier(db_url: str, fake: FakeTwilio, name: str, crash: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
    env.update(GEOWARN_DATABASE_URL=db_url, GEOWARN_TWILIO_ACCOUNT_SID=ACCOUNT,
               GEOWARN_TWILIO_AUTH_TOKEN=TOKEN, GEOWARN_TWILIO_FROM=SENDER,
               GEOWARN_TWILIO_API_BASE=fake.base_url, GEOWARN_TWILIO_RATE_PER_S="100000")
    if crash:
        env["GEOWARN_NOTIFY_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "notify", "notify", "--once", "--name", name],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_each_sent_once(conn: psycopg.Connection, fake: FakeTwilio) -> int:
    rows = deliveries.list_deliveries(conn, limit=100_000)
    assert not [d for d in rows if d.state in ("pending", "sending", "uncertain")]
    sms = [d for d in rows if d.channel == "sms" and d.masked_phone]
    tags = Counter(m.body.rsplit("#", 1)[-1] for m in fake.messages())
    assert set(tags.values()) == {1}, "a recipient got a second SMS"
    assert set(tags) == {messages.tag_of(d.delivery_id) for d in sms}
    assert {d.provider_id for d in sms} == {m.sid for m in fake.messages()}
    calls = [d for d in rows if d.channel == "voice"]
    assert len(fake.calls()) == len(calls)
    assert {d.provider_id for d in calls} == {c.sid for c in fake.calls()}
    return len(sms) + len(calls)


@pytest.mark.slow
def test_sigkill_at_50_random_points_never_sends_twice(
        conn: psycopg.Connection, db_url: str, fake_twilio: FakeTwilio) -> None:
    rng = random.Random(20261201)
    fake_twilio.callbacks_on = False  # no callback URL: reconciliation by asking the provider
    points = 0
    hazards = 0
    kills: Counter[str] = Counter()
    while kills.total() < 50:
        hid = f"HP-{hazards}"
        world.build(conn, households=12, hid=hid, officers=hazards == 0)
        world.change(conn, Level.RED, hid=hid)  # 12 SMS + 12 calls to residents and more
        hazards += 1
        while kills.total() < 50:
            point = rng.choice(POINTS)
            result = run_notifier(db_url, fake_twilio, "notifier-1",
                                  f"{point}:{rng.randint(1, 6)}")
            points += 1
            if result.returncode == -signal.SIGKILL:
                kills[point] += 1
                continue
            assert result.returncode == 0, result.stderr[-2000:]
            break  # this point's work is done: add another
    final = run_notifier(db_url, fake_twilio, "notifier-1")
    assert final.returncode == 0, final.stderr[-2000:]
    sent = assert_each_sent_once(conn, fake_twilio)
    assert sent >= 24 * hazards - 24 and set(kills) == set(POINTS)


@pytest.mark.slow
def test_two_notifiers_deliver_1000_messages_once(conn: psycopg.Connection, db_url: str,
                                                  fake_twilio: FakeTwilio) -> None:
    fake_twilio.callbacks_on = False
    world.build(conn, households=1000, shelters=((5000, 0),))
    world.change(conn, Level.ORANGE)  # residents told to prepare: SMS only
    planner = Notifier(db_url, {})
    assert planner.plan_once() == 1  # planned first, so both find the 1000 deliveries
    planner.close()
    env_procs = []
    for name in ("notifier-a", "notifier-b"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
        env.update(GEOWARN_DATABASE_URL=db_url, GEOWARN_TWILIO_ACCOUNT_SID=ACCOUNT,
                   GEOWARN_TWILIO_AUTH_TOKEN=TOKEN, GEOWARN_TWILIO_FROM=SENDER,
                   GEOWARN_TWILIO_API_BASE=fake_twilio.base_url,
                   GEOWARN_TWILIO_RATE_PER_S="100000")
        env_procs.append(subprocess.Popen(
            [sys.executable, "-m", "notify", "notify", "--once", "--name", name],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in env_procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    sent = assert_each_sent_once(conn, fake_twilio)
    assert sent >= 1000
    by = Counter(r[0] for r in conn.execute(
        "SELECT claimed_by FROM deliveries WHERE audience = 'residents_prepare'"))
    assert set(by) == {"notifier-a", "notifier-b"}  # both took a share
