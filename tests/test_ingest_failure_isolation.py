"""A message is the unit of failure: a GeoWarn bug while decoding one message, or a database
refusal while storing one, dead-letters that message alone; its neighbours are stored and the
broker is acknowledged. A pipeline thread that dies takes the process down (exit non-zero), and
`geowarn health gateway` says unhealthy while the pipeline does not advance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices.messages import Decoded, Reason, Telemetry
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import gateway_config, wait_for_count


def _telemetry(value: float, at: datetime, seq: int) -> bytes:
    return json.dumps({"seq": seq, "readings": [
        {"ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "opening", "value": value}]}
    ).encode()


@pytest.fixture
def patched_gateway(db_url: str, broker: Broker) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def _make(decode_hook: Callable[[Gateway, str, bytes, datetime], Decoded],
              stats_interval_s: float = 10.0) -> Gateway:
        gw = Gateway(gateway_config(broker, name=f"iso-{len(made)}",
                                    stats_interval_s=stats_interval_s), db_url=db_url)
        original = gw._decode

        def hooked(topic: str, payload: bytes, now: datetime) -> Decoded:
            if payload.startswith(b"!"):  # marked: the test decides what happens
                return decode_hook(gw, topic, payload, now)
            return original(topic, payload, now)

        gw._decode = hooked  # type: ignore[method-assign]
        gw.start()
        assert gw.mqtt.subscribed.wait(10)
        made.append(gw)
        return gw

    yield _make
    for gw in made:
        gw.stop()


def test_a_bug_or_a_database_refusal_costs_only_its_own_message(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        patched_gateway: Callable[..., Gateway]) -> None:
    add_device(conn, DeviceSpec(device_id="CM-ISO", kind="crack_meter"))
    add_device(conn, DeviceSpec(device_id="NAT-ISO", profile="national"))
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)

    def hook(gw: Gateway, topic: str, payload: bytes, now: datetime) -> Decoded:
        good = json.loads(payload[1:])
        base = Gateway._decode(gw, topic, json.dumps(good["doc"]).encode(), now)
        assert isinstance(base, Telemetry)
        if good["fault"] == "bug":
            raise KeyError("a GeoWarn bug apikey=NEVERSHOWN")
        # Readings a decoder must never produce, to reach the writer's own failures.
        bad = base.readings[0]
        if good["fault"] == "nul":  # PostgreSQL refuses NUL in text
            bad = replace(bad, channel="opening\x00")
        else:  # a kind the catalogue lacks: learning the channel fails in Python
            bad = replace(bad, device_id="NAT-ISO", channel="L1_LF_7.opening", kind="bogus")
        return replace(base, readings=(bad,))

    gw = patched_gateway(hook)
    pub = Publisher("127.0.0.1", broker.port)
    good = []
    for i in range(30):
        ts = at + timedelta(seconds=i)
        pub.publish("gw/v1/CM-ISO/telemetry", _telemetry(1.0 + i, ts, i))
        good.append(ts)
        if i % 10 == 5:
            fault = ("bug", "nul", "learn")[i // 10]
            doc = json.loads(_telemetry(99.0, ts + timedelta(milliseconds=500), 1000 + i))
            pub.publish("gw/v1/CM-ISO/telemetry",
                        b"!" + json.dumps({"fault": fault, "doc": doc}).encode())
    pub.wait_acked()
    pub.close()
    assert gw.stats.wait_until("batches_committed_messages", 33, timeout=60), \
        gw.stats.snapshot()
    assert wait_for_count(db_url, "SELECT count(*) FROM dead_letters", 3) == 3
    with psycopg.connect(db_url) as c:
        values = sorted(v for (v,) in c.execute("SELECT value FROM readings"))
        letters = sorted(c.execute("SELECT reason, detail FROM dead_letters").fetchall())
    assert values == [1.0 + i for i in range(30)]
    reasons = [r for r, _ in letters]
    assert reasons == sorted([Reason.INTERNAL_ERROR, Reason.INTERNAL_ERROR,
                              Reason.STORAGE_ERROR])
    details = " ".join(d for _, d in letters)
    assert "KeyError" in details and "NEVERSHOWN" not in details
    assert gw.failed is None and gw.progress.in_hand == 0


def test_a_dead_pipeline_thread_stops_the_process_with_an_error(
        db_url: str, broker: Broker, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "import ingest.gateway as g\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('decoder thread bug')\n"
        "g.plan_batch = broken\n"
        "from geowarn.cli import main\n"
        "sys.exit(main(['ingest']))\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url,
           "GEOWARN_MQTT_URL": broker.url, "GEOWARN_GATEWAY_NAME": "dying-gw"}
    log = tmp_path / "gw.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        pub = Publisher("127.0.0.1", broker.port)
        now = datetime.now(UTC)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            pub.publish("gw/v1/ANY/telemetry", _telemetry(1.0, now, 1))
            time.sleep(0.2)
        pub.close()
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert code != 0, text
    assert "ingest-decoder died" in text and "gateway thread died" in text


def test_a_dead_network_thread_fails_the_gateway(
        conn: psycopg.Connection, db_url: str, broker: Broker) -> None:
    gw = Gateway(gateway_config(broker, name="net-dies"), db_url=db_url)

    def broken(*args: object) -> None:
        raise RuntimeError("bug in a paho callback")

    gw.mqtt.client.on_message = broken
    gw.start()
    try:
        assert gw.mqtt.subscribed.wait(10)
        pub = Publisher("127.0.0.1", broker.port)
        pub.publish("gw/v1/ANY/telemetry", b"{}")
        pub.wait_acked()
        pub.close()
        assert gw.mqtt.finished.wait(30)
        assert gw._stop.wait(30), "the gateway must stop when its network thread is gone"
        assert isinstance(gw.failed, Exception) and "network thread" in str(gw.failed)
    finally:
        gw.stop()


def test_health_is_unhealthy_while_the_pipeline_is_stalled(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        patched_gateway: Callable[..., Gateway], capsys: pytest.CaptureFixture[str]) -> None:
    from geowarn.settings import override_settings

    override_settings(database_url=db_url)
    add_device(conn, DeviceSpec(device_id="CM-STALL", kind="crack_meter"))
    release = threading.Event()

    def stuck(gw: Gateway, topic: str, payload: bytes, now: datetime) -> Decoded:
        release.wait(60)  # a decoder wedged on one message
        return Gateway._decode(gw, topic, payload[1:], now)

    gw = patched_gateway(stuck, stats_interval_s=0.2)
    name = gw.config.name
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    pub = Publisher("127.0.0.1", broker.port)
    pub.publish("gw/v1/CM-STALL/telemetry", b"!" + _telemetry(2.0, at, 1))
    pub.wait_acked()

    def health() -> tuple[int, str]:
        code = main(["health", "gateway", "--name", name, "--max-age", "1"])
        return code, capsys.readouterr().out

    try:
        deadline = time.monotonic() + 30
        code, out = health()
        while "stalled" not in out and time.monotonic() < deadline:
            time.sleep(0.2)
            code, out = health()
        assert code == 1 and "stalled: 1 message(s) waiting" in out, out
    finally:
        release.set()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 1) == 1
    deadline = time.monotonic() + 30
    code, out = health()
    while code != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        code, out = health()
    assert code == 0, out
    pub.close()
