"""A corpus of 100+ distinct malformed messages across both profiles, interleaved with good
traffic: the gateway never stops, every bad message is dead-lettered with its specific reason,
and every good reading is stored."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from devices.messages import Reason
from devices.registry import DeviceSpec, add_device, retire_device
from ingest.deadletters import MAX_STORED_PAYLOAD
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from simulators.streams import device_ids, generate, make_devices
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count
from tests.ingest_corpus import bad_messages


def _register(conn: psycopg.Connection) -> None:
    add_device(conn, DeviceSpec(device_id="CM-GOOD", kind="crack_meter"))
    add_device(conn, DeviceSpec(device_id="RG-OLD", kind="rain_gauge"))
    retire_device(conn, "RG-OLD")
    add_device(conn, DeviceSpec(device_id="NAT-GOOD", profile="national"))
    add_device(conn, DeviceSpec(device_id="NAT-OLD", profile="national"))
    retire_device(conn, "NAT-OLD")


def test_bad_input_corpus_interleaved_with_good_traffic(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    _register(conn)
    now = datetime.now(UTC)
    corpus = bad_messages(now)
    assert len(corpus) >= 100
    assert len({(t, p) for t, p, _ in corpus}) == len(corpus), "corpus items must be distinct"

    sim = make_devices(device_ids(["rain_gauge", "gnss", "crack_meter", "water_quality"], 8),
                       "mixed", seed=7)
    for d in sim:
        add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind, profile=d.profile))
    good = list(generate(sim, start=now - timedelta(days=2), messages_per_device=40,
                         readings_per_message=3))
    expected = {(dev, ch, ts): value for m in good for dev, ch, ts, value in m.expected}

    # A reused sequence number with another payload (after a good message with it).
    t = (now - timedelta(minutes=5)).replace(microsecond=0)
    first = json.dumps({"seq": 900, "readings": [
        {"ts": t.isoformat(), "channel": "opening", "value": 3.0}]}).encode()
    reuse = json.dumps({"seq": 900, "readings": [
        {"ts": (t + timedelta(minutes=1)).isoformat(), "channel": "opening", "value": 4.0}]}
    ).encode()
    expected[("CM-GOOD", "opening", t)] = 3.0

    gw = start_gateway(broker)
    pub = Publisher("127.0.0.1", broker.port)
    step = max(1, len(good) // len(corpus))
    bad_iter = iter(corpus)
    for i, m in enumerate(good):
        pub.publish(m.topic, m.payload)
        if i % step == 0:
            topic, payload, _ = next(bad_iter, (None, b"", ""))
            if topic:
                pub.publish(topic, payload)
    for topic, payload, _ in bad_iter:
        pub.publish(topic, payload)
    pub.publish("gw/v1/CM-GOOD/telemetry", first)
    pub.wait_acked()
    pub.publish("gw/v1/CM-GOOD/telemetry", reuse)
    pub.close()

    total = len(good) + len(corpus) + 2
    assert gw.stats.wait_until("batches_committed_messages", total, timeout=120), \
        gw.stats.snapshot()

    with psycopg.connect(db_url) as c:
        letters = c.execute("SELECT topic, payload, reason, detail FROM dead_letters").fetchall()
        rows = c.execute("SELECT c.device_id, c.channel, r.ts, r.value FROM readings r "
                         "JOIN channels c USING (channel_id)").fetchall()
    by_message: dict[tuple[str, bytes], set[str]] = defaultdict(set)
    for topic, payload, reason, detail in letters:
        assert detail and len(detail) > 10, (reason, detail)
        by_message[(topic, bytes(payload))].add(reason)
    wrong = []
    for topic, payload, reason in corpus:
        got = by_message.get((topic, payload[:MAX_STORED_PAYLOAD]), set())
        if got != {reason}:
            wrong.append((topic, payload[:80], reason, got))
    assert not wrong, "\n".join(map(repr, wrong))
    assert by_message[("gw/v1/CM-GOOD/telemetry", reuse)] == {Reason.DUPLICATE_SEQUENCE}
    assert len(letters) == len(corpus) + 1

    stored = {(d, ch, ts): v for d, ch, ts, v in rows}
    missing = [k for k in expected if k not in stored]
    assert not missing, missing[:5]
    assert all(abs(stored[k] - v) < 1e-9 for k, v in expected.items())
    assert len(stored) == len(expected)
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", len(expected)) == len(expected)
