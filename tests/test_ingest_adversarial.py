"""The adversarial corpus (tests/adversarial_corpus.py, 300 distinct messages over both
profiles) published through the real broker, with GeoWarn's broker configuration (passwords,
ACL, national plugin), under each device's own credentials and interleaved with good traffic:
every good reading is stored exactly once, every bad message is dead-lettered with its specific
reason, no secret is in any dead letter or log line, and the gateway still ingests afterwards."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices import commands as device_commands
from devices import credentials
from devices.redaction import redact_bytes
from devices.registry import DeviceSpec, add_device
from devices.text import printable
from geowarn.cli import main
from ingest.broker_config import plugin_buildable
from ingest.deadletters import MAX_DETAIL, MAX_STORED_PAYLOAD, MAX_TOPIC
from ingest.gateway import Gateway
from simulators.publisher import Publisher
from tests.adversarial_corpus import DEVICES, MAX_PAYLOAD, Case, adversarial_cases
from tests.fixtures.broker import Broker, for_test_broker
from tests.fixtures.gateway import wait_for_count
from tests.fixtures.services import skip_or_fail

GATEWAY_PASSWORD = "gateway-secret-for-adversarial-tests"


def stored_topic(case: Case) -> str:
    """The topic the gateway sees: GeoWarn's plugin binds national topics to the publisher
    (less the broker's receive time it appends to $dp topics; see `unstamped`)."""
    if case.topic in ("$dp", "$dr") or case.topic.startswith(("$dp/", "$dr/")):
        return f"gw/nat/{case.device}/{case.topic[1:3]}"
    if case.topic.startswith("$crsp/"):
        return f"gw/nat/{case.device}/crsp/{case.topic[6:]}"
    return case.topic


def unstamped(topic: str) -> str:
    """A bound $dp topic without the broker's receive time (gw/nat/X/dp/{us} -> gw/nat/X/dp)."""
    parts = topic.split("/")
    if topic.startswith("gw/nat/") and len(parts) == 5 and parts[3] == "dp":
        return "/".join(parts[:4])
    return topic


def _good_message(device: str, ts: datetime, value: float) -> tuple[str, bytes, tuple]:
    iso = ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    profile, kind = DEVICES[device]
    if profile == "native":
        channel = "opening" if kind == "crack_meter" else "rain"
        seq = int(ts.timestamp()) % 4_000_000_000
        doc = {"seq": seq, "readings": [{"ts": iso, "channel": channel, "value": value}]}
        return f"gw/v1/{device}/telemetry", json.dumps(doc).encode(), (device, channel, ts, value)
    sensor = "L3_YL_5" if kind == "rain_gauge" else "L1_LF_5"
    channel = f"{sensor}.{'rain' if kind == 'rain_gauge' else 'opening'}"
    body = json.dumps({device: {sensor: {iso: value}}}).encode()
    return "$dp", bytes([2]) + len(body).to_bytes(2, "big") + body, (device, channel, ts, value)


@pytest.fixture
def secured_broker(conn: psycopg.Connection, db_url: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, start_broker: Callable[..., Broker],
                   capsys: pytest.CaptureFixture[str]) -> tuple[Broker, dict[str, str]]:
    missing = plugin_buildable()
    if missing:
        skip_or_fail(f"the Mosquitto plugin cannot be built here: install {missing}")
    if not shutil.which("mosquitto"):
        skip_or_fail("mosquitto is not installed")
    for device_id, (profile, kind) in DEVICES.items():
        add_device(conn, DeviceSpec(device_id=device_id, profile=profile, kind=kind))  # type: ignore[arg-type]
    secrets = {d: credentials.issue_secret(conn, d) for d in DEVICES}
    conf_dir = tmp_path / "broker"
    conf_dir.mkdir()
    monkeypatch.setenv("GEOWARN_MQTT_PASSWORD", GATEWAY_PASSWORD)
    from geowarn.settings import override_settings

    override_settings(database_url=db_url)
    assert main(["devices", "broker-config", str(conf_dir), "--gateway-user", "gw",
                 "--listen", "127.0.0.1:1883"]) == 0
    capsys.readouterr()
    conf = (conf_dir / "mosquitto.conf").read_text()
    broker = start_broker(for_test_broker(conf))
    return broker, secrets


def test_adversarial_corpus_through_broker_and_gateway(
        conn: psycopg.Connection, db_url: str, secured_broker: tuple[Broker, dict[str, str]],
        start_gateway: Callable[..., Gateway], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker, secrets = secured_broker
    commands = {d: device_commands.queue_command(conn, d, "reboot", {}, "test", 3600)
                for d in ("CM-1", "NAT-1")}
    now = datetime.now(UTC)
    corpus = adversarial_cases(now, secrets, commands)
    assert len(corpus) >= 200
    keys = [(printable(stored_topic(c), MAX_TOPIC), redact_bytes(c.payload)[:MAX_STORED_PAYLOAD])
            for c in corpus]
    assert len(set(keys)) == len(corpus), "corpus messages must be distinct as stored"

    gw = start_gateway(broker, username="gw", password=GATEWAY_PASSWORD,
                       max_payload=MAX_PAYLOAD)
    pubs = {d: Publisher("127.0.0.1", broker.port, client_id=d, username=d, password=s)
            for d, s in secrets.items()}
    expected: set[tuple[str, str, datetime, float]] = set()
    good_start = (now - timedelta(hours=6)).replace(microsecond=0)
    for i, case in enumerate(corpus):
        # Good traffic from the same device, before each bad message.
        topic, payload, reading = _good_message(case.device, good_start + timedelta(seconds=i),
                                                1.0 + i / 1000)
        pubs[case.device].publish(topic, payload)
        expected.add(reading)
        pubs[case.device].publish(case.topic, case.payload)
        expected.update(case.good)
    for pub in pubs.values():
        pub.wait_acked()
    total = 2 * len(corpus)
    assert gw.stats.wait_until("batches_committed_messages", total, timeout=180), \
        gw.stats.snapshot()

    # Still ingesting after the corpus, for every device.
    after = now.replace(microsecond=0) - timedelta(minutes=1)
    for j, device in enumerate(DEVICES):
        topic, payload, reading = _good_message(device, after + timedelta(seconds=j), 2.5)
        pubs[device].publish(topic, payload)
        expected.add(reading)
    for pub in pubs.values():
        pub.wait_acked()
        pub.close()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", len(expected)) \
        >= len(expected)

    with psycopg.connect(db_url) as c:
        letters = c.execute("SELECT topic, payload, reason, detail, channel, device_id "
                            "FROM dead_letters").fetchall()
        rows = c.execute("SELECT c.device_id, c.channel, r.ts, r.value FROM readings r "
                         "JOIN channels c USING (channel_id)").fetchall()
        open_state = device_commands.get_command(c, commands["CM-1"]).state
    # Every good reading stored, exactly once, and nothing else.
    stored = Counter((d, ch, ts, round(v, 9)) for d, ch, ts, v in rows)
    want = Counter((d, ch, ts, round(v, 9)) for d, ch, ts, v in expected)
    assert stored == want, (sorted(want - stored)[:5], sorted(stored - want)[:5])

    # Every bad message dead-lettered with exactly its reasons.
    by_key: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    for topic, payload, reason, detail, channel, _device in letters:
        by_key[(unstamped(topic), bytes(payload))].append(reason)
        assert detail and len(detail) > 10 and len(detail) <= MAX_DETAIL + 40, (reason, detail)
        for text in (topic, detail, channel or ""):
            assert "\x00" not in text and len(text) <= MAX_TOPIC + 40
    wrong = [(c.topic[:60], c.payload[:80], sorted(c.reasons), sorted(by_key.get(k, [])))
             for c, k in zip(corpus, keys, strict=True) if sorted(by_key.get(k, [])) !=
             sorted(c.reasons)]
    assert not wrong, "\n".join(map(repr, wrong))
    assert len(letters) == sum(len(c.reasons) for c in corpus)

    # No secret anywhere: dead letters (payload, detail) and every log line.
    logs = caplog.text
    for secret in [*secrets.values(), GATEWAY_PASSWORD]:
        assert secret not in logs
        for _topic, payload, _reason, detail, _channel, _device in letters:
            assert secret not in detail and secret.encode() not in bytes(payload)
    # A spoofed reply closed nothing.
    assert open_state in ("queued", "sent")
    assert gw.failed is None


def test_deadletters_cli_never_prints_a_secret(
        conn: psycopg.Connection, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Letters stored before redaction existed are masked when shown, text and JSON."""
    from geowarn.settings import override_settings

    override_settings(database_url=db_url)
    conn.execute(
        "INSERT INTO dead_letters (topic, reason, detail, payload, payload_size) "
        "VALUES ('$dr', 'malformed_frame', %s, %s, 10)",
        ("reply '$cmd=reboot&apikey=TOPSECRET1&msgid=1' broken",
         b'$cmd=reboot&apikey=TOPSECRET1&password=TOPSECRET2&msgid=1'))
    for args in (["deadletters"], ["deadletters", "--json"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "TOPSECRET" not in out and "apikey=***" in out
