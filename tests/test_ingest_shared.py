"""Two gateways with an MQTT shared subscription split one stream with nothing lost or
doubled; when one is killed, the other takes over its share (ingest/takeover.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.streams import SimMessage, device_ids, generate, make_devices
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import GatewayProcess, wait_for_count
from tests.test_ingest_crash import Feeder


def _stream(conn: psycopg.Connection, readings: int, devices: int = 20
            ) -> tuple[list[SimMessage], dict[tuple, float]]:
    # Native devices only: national frames arrive on the unshared raw $dp topic unless the
    # broker runs GeoWarn's plugin, and this test is about sharing.
    sims = make_devices(device_ids(["gnss", "crack_meter", "water_level"], devices, "SHR"),
                        "native", seed=5)
    for d in sims:
        add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind))
    messages = list(generate(sims, start=datetime.now(UTC) - timedelta(days=30),
                             messages_per_device=readings // devices // 10,
                             readings_per_message=10, step=timedelta(seconds=60)))
    expected = {(d, c, ts): v for m in messages for d, c, ts, v in m.expected}
    assert len(expected) == readings
    return messages, expected


def _stored(db_url: str) -> dict[tuple, float]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT c.device_id, c.channel, r.ts, r.value FROM readings r "
                            "JOIN channels c USING (channel_id)").fetchall()
    assert len(rows) == len({(d, c, ts) for d, c, ts, _ in rows})
    return {(d, c, ts): v for d, c, ts, v in rows}


def test_two_gateways_split_a_stream(conn: psycopg.Connection, db_url: str, broker: Broker,
                                     start_gateway: Callable[..., Gateway]) -> None:
    messages, expected = _stream(conn, 20_000)
    a = start_gateway(broker, name="gw-a")
    b = start_gateway(broker, name="gw-b")
    pub = Publisher("127.0.0.1", broker.port)
    pub.publish_all((m.topic, m.payload) for m in messages)
    pub.close()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 20_000) == 20_000
    share_a, share_b = a.stats.count("readings_stored"), b.stats.count("readings_stored")
    assert share_a + share_b == 20_000
    # Both took a real share (Mosquitto round-robins a shared subscription).
    assert min(share_a, share_b) > 5_000, (share_a, share_b)
    stored = _stored(db_url)
    assert stored.keys() == expected.keys()


@pytest.mark.slow
def test_killed_gateway_hands_its_share_to_the_other(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        gateway_process: Callable[..., GatewayProcess]) -> None:
    total = 40_000
    messages, expected = _stream(conn, total)
    env = {"GEOWARN_GATEWAY_TAKEOVER_S": "3"}
    a = gateway_process(broker, db_url, name="gw-a", **env)
    b = gateway_process(broker, db_url, name="gw-b", **env)
    a.start()
    b.start()
    from tests.test_ingest_crash import _wait_log

    assert _wait_log(a, "subscribed to") and _wait_log(b, "subscribed to"), a.log + b.log
    feeder = Feeder(broker, messages)
    feeder.start()
    wait_for_count(db_url, "SELECT count(*) FROM readings", total // 4, timeout=120)
    b.kill9()  # and it never comes back
    at_kill = wait_for_count(db_url, "SELECT count(*) FROM readings", 0)
    assert at_kill < total
    feeder.join(timeout=240)
    assert feeder.error is None, feeder.error
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", total,
                          timeout=180) == total, a.log[-3000:]
    assert _stored(db_url).keys() == expected.keys()
    assert "serving its session until it returns" in a.log
    # The killed gateway returns: the broker hands its session back and the adopter lets go.
    b.start()
    assert _wait_log(a, "handing back", timeout=60), a.log[-3000:]
    assert _wait_log(b, "subscribed to"), b.log
