"""Group commit in the gateway (ingest/gateway.py): a batch gathers messages for up to the
batch window only while the previous batch is still being committed; with the committer
idle a lone message is committed at once, not after the window."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from ingest.inbox import Inbox
from ingest.pipeline import ReceivedMessage
from simulators.publisher import Publisher
from tests.fixtures.broker import Broker


def test_a_lone_message_is_committed_without_waiting_for_the_batch_window(
        conn: psycopg.Connection, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-0001", kind="rain_gauge"))
    gw = start_gateway(broker, batch_seconds=600.0)  # a window no test would wait for
    ts = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    pub = Publisher("127.0.0.1", broker.port, client_id="group-commit-test")
    try:
        for seq in (1, 2):  # the second after the first's commit: the committer idle again
            pub.publish("gw/v1/RG-0001/telemetry", json.dumps({"seq": seq, "readings": [
                {"ts": (ts + timedelta(minutes=seq)).isoformat(), "channel": "rain",
                 "value": 1.0}]}).encode())
            assert gw.stats.wait_until("batches_committed_messages", seq, timeout=60)
    finally:
        pub.close()


def _message(i: int) -> ReceivedMessage:
    return ReceivedMessage(topic="t", payload=b"x", received_at=datetime.now(UTC), token=i)


def test_inbox_get_returns_once_unless_holds_and_an_empty_queue() -> None:
    inbox = Inbox(10, 1000)
    idle = threading.Event()
    got: list[object] = []
    inbox.offer(_message(1))
    waiter = threading.Thread(target=lambda: got.extend(
        [inbox.get(600.0, unless=idle.is_set), inbox.get(600.0, unless=idle.is_set)]))
    waiter.start()
    waiter.join(2.0)
    assert waiter.is_alive() and len(got) == 0  # the queued one taken, waiting for more
    idle.set()
    inbox.wake()
    waiter.join(30.0)
    assert not waiter.is_alive()
    assert got[1] is None
