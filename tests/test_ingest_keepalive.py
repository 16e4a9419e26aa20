"""The gateway's MQTT connection survives a backlog that fills its inbox for longer than the
keepalive (real Mosquitto and PostgreSQL).

In the 24-hour soak the gateway's connection dropped twelve times in 43 minutes, each time
with its inbox full: paho's network thread waited inside the message callback, so it neither
wrote the writer's acknowledgements nor answered the keepalive, and every reconnect made the
broker send its whole in-flight window again. Here the database is taken away while a backlog
waits, for three keepalive periods (the broker drops a client silent for 1.5): the
connection must stay up, and afterwards every reading is stored exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.streams import device_ids, generate, make_devices
from tests.fixtures.broker import Broker
from tests.fixtures.database import with_dbname
from tests.fixtures.gateway import wait_for_count
from tests.fixtures.proxy import Proxy

pytestmark = pytest.mark.slow

KEEPALIVE_S = 5  # the smallest the settings allow
MESSAGES = 3000


def test_a_full_inbox_during_a_database_cut_keeps_the_connection(
        conn: psycopg.Connection, db_url: str, broker: Broker, pg_proxy: Proxy,
        start_gateway: Callable[..., Gateway]) -> None:
    pairs = device_ids(["crack_meter", "rain_gauge"], 30, "KA")
    devices = make_devices(pairs, "mixed", seed=5)
    for d in devices:
        add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind, profile=d.profile))
    messages = list(generate(devices, start=datetime.now(UTC) - timedelta(days=10),
                             messages_per_device=MESSAGES // len(devices),
                             readings_per_message=1, step=timedelta(minutes=1)))
    expected = {(d, c, ts) for m in messages for d, c, ts, _v in m.expected}
    proxied = with_dbname(f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/x",
                          db_url.rsplit("/", 1)[1])
    # A byte budget of a few dozen messages: the inbox is full within a second of the cut.
    gw = start_gateway(broker, db=proxied, keepalive=KEEPALIVE_S, max_payload=1024,
                       memory_bytes=16 * 1024, inflight=200, batch_messages=20)
    pg_proxy.cut()
    pub = Publisher("127.0.0.1", broker.port, client_id="ka-feeder", clean_session=False)
    pub.publish_all((m.topic, m.payload) for m in messages)
    pub.close()
    assert gw.stats.wait_until("read_pauses", 1, timeout=30), "the inbox never filled"
    time.sleep(3 * KEEPALIVE_S)
    assert not gw.inbox.accepting()  # still full: nothing committed during the cut
    pg_proxy.restore()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", len(expected),
                          timeout=240) == len(expected)
    with psycopg.connect(db_url) as check:
        rows = check.execute("SELECT c.device_id, c.channel, r.ts FROM readings r "
                             "JOIN channels c USING (channel_id)").fetchall()
        letters = check.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert letters == (0,)
    assert len(rows) == len(expected) and set(rows) == expected
    # One connection from start to end: no keepalive drop, no redelivered window.
    assert not gw.mqtt.wait_for_connections(2, timeout=0.1), "the connection dropped"
