"""Peers do not live for ever: a peer that never connected (a mistyped --name) is dropped at
its first adoption, one silent past its expiry is drained and its broker session deleted,
and `geowarn ingest --peers` / `--forget-peer` show and forget them (ingest/takeover.py)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.settings import override_settings
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count

FAST = {"takeover_after": timedelta(seconds=1)}


def _session_present(broker: Broker, client_id: str) -> bool:
    """Whether the broker holds a session for `client_id` (connects and leaves it as it was
    found: a session that did not exist is not kept)."""
    flags: queue.Queue[bool] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: flags.put(f.session_present)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0  # do not create one
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    c.loop_start()
    present = flags.get(timeout=10)
    c.disconnect()
    c.loop_stop()
    return present


def _heartbeats(db_url: str) -> set[str]:
    with psycopg.connect(db_url) as conn:
        return {r[0] for r in conn.execute("SELECT gateway FROM gateway_heartbeats")}


def _telemetry(seq: int) -> bytes:
    ts = datetime.now(UTC) - timedelta(minutes=20) + timedelta(seconds=seq)
    return json.dumps({"seq": seq, "readings": [
        {"ts": ts.isoformat(), "channel": "opening", "value": seq / 10}]}).encode()


def test_a_peer_that_never_connected_is_dropped_not_served(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    # A gateway started once with a mistyped name: it announced itself, never reached the
    # broker, and was stopped.
    conn.execute("INSERT INTO gateway_heartbeats (gateway, group_name, seen_at) "
                 "VALUES ('gatway-1', 'geowarn', now() - interval '1 hour')")
    a = start_gateway(broker, name="gw-a", **FAST)
    assert a.takeover is not None
    assert wait_for_count(db_url, "SELECT count(*) = 0 FROM gateway_heartbeats "
                          "WHERE gateway = 'gatway-1'", 1, timeout=30) == 1
    assert "gatway-1" not in a.takeover.adopted
    # Its adoption left no session behind to take a share of the stream.
    assert not _session_present(broker, "gatway-1")
    a.stop()
    # Nor does a restart adopt it again.
    a = start_gateway(broker, name="gw-a", **FAST)
    assert _heartbeats(db_url) == {"gw-a"}


def test_an_expired_peer_is_drained_and_its_session_deleted(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    add_device(conn, DeviceSpec("CM-P", kind="crack_meter"))
    a = start_gateway(broker, name="gw-a", **FAST)
    b = start_gateway(broker, name="gw-b", **FAST)
    b.stop()  # and never returns
    assert a.takeover is not None
    pub = Publisher("127.0.0.1", broker.port)
    for seq in range(40):
        pub.publish("gw/v1/CM-P/telemetry", _telemetry(seq))
    pub.wait_acked()
    # B's session got its share while nobody served it; A adopts it and drains it.
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 40) == 40
    assert "gw-b" in a.takeover.adopted
    # B's silence passes its expiry: A retires the session (unsubscribe, drain, delete).
    conn.execute("UPDATE gateway_heartbeats SET seen_at = now() - interval '8 days' "
                 "WHERE gateway = 'gw-b'")
    assert wait_for_count(db_url, "SELECT count(*) = 0 FROM gateway_heartbeats "
                          "WHERE gateway = 'gw-b'", 1, timeout=60) == 1
    assert "gw-b" not in a.takeover.adopted
    assert not _session_present(broker, "gw-b")
    # From now on the whole stream goes to A; nothing waits in a dead session.
    for seq in range(40, 60):
        pub.publish("gw/v1/CM-P/telemetry", _telemetry(seq))
    pub.wait_acked()
    pub.close()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 60) == 60


def test_cli_lists_and_forgets_peers(
        conn: psycopg.Connection, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=db_url)
    conn.execute("INSERT INTO gateway_heartbeats (gateway, group_name, seen_at) VALUES "
                 "('gw-live', 'geowarn', now()), "
                 "('gatway-1', 'geowarn', now() - interval '2 hours'), "
                 "('gw-old', 'geowarn', now() - interval '9 days')")
    assert main(["ingest", "--peers"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["gw-live"].endswith("alive")
    assert lines["gatway-1"].endswith("gone, not served")
    assert lines["gw-old"].endswith("gone, not served, expired")
    assert main(["ingest", "--forget-peer", "gw-live"]) == 2
    assert "is alive" in capsys.readouterr().err
    assert main(["ingest", "--forget-peer", "gatway-1"]) == 0
    assert "forgot gateway gatway-1" in capsys.readouterr().out
    assert main(["ingest", "--forget-peer", "nobody"]) == 2
    assert main(["ingest", "--peers", "--json"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == ["gw-live", "gw-old"]
