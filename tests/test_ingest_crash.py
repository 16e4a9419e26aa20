"""Crash tests over the real Mosquitto and PostgreSQL, 100,000 readings each: the gateway is
killed with SIGKILL, the database is taken away, the broker is restarted, each in the middle of
the stream. Every time every reading is stored exactly once: count and per-reading check."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.streams import SimMessage, device_ids, generate, make_devices
from tests.fixtures.broker import Broker
from tests.fixtures.database import with_dbname
from tests.fixtures.gateway import GatewayProcess, wait_for_count
from tests.fixtures.proxy import Proxy

pytestmark = pytest.mark.slow

READINGS = 100_000
DEVICES = 50
PER_MESSAGE = 10


def _stream(conn: psycopg.Connection) -> tuple[list[SimMessage], dict[tuple, float]]:
    pairs = device_ids(["gnss", "crack_meter", "rain_gauge", "water_level"], DEVICES, "CRASH")
    devices = make_devices(pairs, "mixed", seed=11)
    with conn.cursor() as cur:
        for d in devices:
            add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind,
                                        profile=d.profile))
        cur.execute("SELECT 1")
    per_device = READINGS // DEVICES // PER_MESSAGE
    messages = list(generate(devices, start=datetime.now(UTC) - timedelta(days=60),
                             messages_per_device=per_device, readings_per_message=PER_MESSAGE,
                             step=timedelta(seconds=30)))
    expected = {(d, c, ts): v for m in messages for d, c, ts, v in m.expected}
    assert len(expected) == READINGS
    return messages, expected


class Feeder(threading.Thread):
    """Publishes the stream in the background with QoS 1 and its own persistent session, so
    a broker restart loses nothing the broker has acknowledged."""

    def __init__(self, broker: Broker, messages: list[SimMessage]) -> None:
        super().__init__(daemon=True)
        self.broker, self.messages = broker, messages
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            pub = Publisher("127.0.0.1", self.broker.port, client_id="crash-feeder",
                            clean_session=False)
            pub.publish_all((m.topic, m.payload) for m in self.messages)
            pub.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _check_exactly_once(db_url: str, expected: dict[tuple, float]) -> None:
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", READINGS,
                          timeout=240) == READINGS
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.device_id, c.channel, r.ts, r.value FROM readings r "
            "JOIN channels c USING (channel_id)").fetchall()
        letters = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall()
    assert letters == []
    stored = {(d, c, ts): v for d, c, ts, v in rows}
    assert len(rows) == READINGS  # nothing doubled (the key also forbids it)
    assert stored.keys() == expected.keys()  # nothing lost, nothing invented
    assert all(stored[k] == pytest.approx(v) for k, v in expected.items())


def test_gateway_killed_with_sigkill_mid_stream(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        gateway_process: Callable[..., GatewayProcess]) -> None:
    messages, expected = _stream(conn)
    gw = gateway_process(broker, db_url)
    gw.start()
    assert _wait_log(gw, "subscribed to"), gw.log
    feeder = Feeder(broker, messages)
    feeder.start()
    wait_for_count(db_url, "SELECT count(*) FROM readings", READINGS // 3, timeout=120)
    gw.kill9()
    restarted = wait_for_count(db_url, "SELECT count(*) FROM readings", 0)
    assert restarted < READINGS, "the kill came too late to test anything"
    gw.start()
    feeder.join(timeout=240)
    assert feeder.error is None, feeder.error
    _check_exactly_once(db_url, expected)


def test_database_taken_away_mid_stream(
        conn: psycopg.Connection, db_url: str, broker: Broker, pg_proxy: Proxy,
        start_gateway: Callable[..., Gateway]) -> None:
    messages, expected = _stream(conn)
    proxied = with_dbname(f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/x",
                          db_url.rsplit("/", 1)[1])
    gw = start_gateway(broker, db=proxied)
    feeder = Feeder(broker, messages)
    feeder.start()
    wait_for_count(db_url, "SELECT count(*) FROM readings", READINGS // 3, timeout=120)
    pg_proxy.cut()
    retries_before = gw.stats.count("database_retries")
    assert gw.stats.wait_until("database_retries", retries_before + 3, timeout=60)
    during = wait_for_count(db_url, "SELECT count(*) FROM readings", 0)
    assert during < READINGS
    # Backpressure: with nothing committed the gateway holds a bounded number of messages
    # (inbox + the decoded batches waiting) and the rest waits in the broker.
    held = gw.stats.count("messages_received") - gw.stats.count("batches_committed_messages")
    assert gw.stats.wait_until("database_retries", retries_before + 6, timeout=60)
    held_later = gw.stats.count("messages_received") - gw.stats.count("batches_committed_messages")
    bound = gw.config.inflight + 3 * gw.config.batch_messages
    assert gw.inbox.qsize() <= gw.config.inflight
    assert held <= bound and held_later <= bound, (held, held_later, bound)
    pg_proxy.restore()
    feeder.join(timeout=240)
    assert feeder.error is None, feeder.error
    _check_exactly_once(db_url, expected)


def test_broker_restarted_mid_stream(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    messages, expected = _stream(conn)
    gw = start_gateway(broker)
    feeder = Feeder(broker, messages)
    feeder.start()
    wait_for_count(db_url, "SELECT count(*) FROM readings", READINGS // 3, timeout=120)
    broker.restart()
    at_restart = wait_for_count(db_url, "SELECT count(*) FROM readings", 0)
    assert at_restart < READINGS, "the restart came too late to test anything"
    assert gw.mqtt.wait_for_connections(2, timeout=60), "gateway did not reconnect"
    feeder.join(timeout=240)
    assert feeder.error is None, feeder.error
    _check_exactly_once(db_url, expected)


def _wait_log(gw: GatewayProcess, text: str, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in gw.log:
            return True
        time.sleep(0.1)
    return False
