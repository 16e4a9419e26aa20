"""`geowarn demo`, `geowarn run` and the compose file.

The demo runs through `geowarn.cli.main` against the test's own database and a real
Mosquitto with the shipped configuration, and once more through the in-process amqtt broker
(MQTT 3.1.1, the fallback for machines without Mosquitto). `geowarn run` runs as a
subprocess so SIGTERM can be sent to it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml

from demo.broker import EmbeddedBroker, embedded_broker
from geowarn.cli import main
from geowarn.settings import PROJECT_ROOT, override_settings
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count


def _count(conn: psycopg.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _number(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the demo's output:\n{text}"
    return int(m.group(1))


def test_demo_through_mosquitto_reports_what_it_stored_and_is_idempotent(
        db_url: str, broker: Broker, conn: psycopg.Connection,
        capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=db_url, mqtt_url=broker.url)
    assert main(["demo", "--hours", "3"]) == 0
    out = capsys.readouterr().out
    stored = _number(r"readings stored: (\d+) new", out)
    assert stored > 0
    assert stored == _count(conn, "SELECT count(*) FROM readings")
    # Three messages from a device nobody registered, plus the injected garbage.
    assert re.search(r"unknown_device\s+3\b", out)
    letters = _number(r"dead letters: (\d+) rejected", out)
    assert letters == _count(conn, "SELECT count(*) FROM dead_letters") >= 4
    assert _count(conn, "SELECT count(*) FROM devices WHERE device_id LIKE 'DEMO-%'") == 16
    # National loggers went through Mosquitto on $dp and were stored under their sensor ids.
    assert _count(conn, "SELECT count(*) FROM readings JOIN channels USING (channel_id) "
                        "WHERE channel LIKE 'L%\\_%.%'") > 0
    # Geohazard devices were placed on hazard points by the GIS matching.
    assert _count(conn, "SELECT count(*) FROM devices WHERE hazard_id IS NOT NULL") == 10
    assert "DEMO-CRACKMETER-SPARE: silent (never reported)" in out
    assert "[6/6] Explore further" in out and "geowarn deadletters" in out
    # A first run has no earlier readings to collide with, and does not pretend it had.
    assert "earlier demo run" not in out
    assert re.search(r"duplicates absorbed: \d+ readings were already stored and kept once "
                     r"\((re-sent by the \d+ duplicated messages|nothing was sent twice)\)",
                     out)
    _explore_commands_run_as_printed(out, db_url)
    # The scripted rainstorm on SYN-LS-001 went through the engine into an alert.
    assert "hazard SYN-LS-001 rainfall: none -> " in out
    assert _number(r"unresolved alerts: (\d+)", out) >= 1
    assert _count(conn, "SELECT count(*) FROM alerts WHERE target_id = 'SYN-LS-001'") == 1
    # The demo gateway's persistent session was ended: on a shared broker it would otherwise
    # collect every device message for a week.
    assert _session_present(broker.port, "geowarn-demo") is False

    # Again over the same data: nothing is registered or imported twice, and every reading
    # the first run stored is recognised as already stored.
    assert main(["demo", "--hours", "3"]) == 0
    again = capsys.readouterr().out
    assert "0 registered now, 16 already there" in again
    assert "hazards.geojson   hazards    0 new, 0 updated, 4 unchanged" in again
    assert _number(r"duplicates absorbed: (\d+)", again) >= stored - 50
    assert "stored by an earlier demo run, which left" in again
    assert _count(conn, "SELECT count(*) FROM devices WHERE device_id LIKE 'DEMO-%'") == 16
    assert _count(conn, "SELECT count(*) FROM alerts WHERE target_id = 'SYN-LS-001'") == 1


def _explore_commands_run_as_printed(out: str, db_url: str) -> None:
    """Every command of "Explore further", pasted into a shell whose PATH lacks the virtual
    environment (a newcomer's after `bash dev.sh demo`), runs and exits 0."""
    section = out.split("[6/6] Explore further", 1)[1].split("\ndemo finished", 1)[0]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert len(commands) >= 8, section
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p != venv_bin)
    env = {"PATH": path, "GEOWARN_DATABASE_URL": db_url, "HOME": os.environ.get("HOME", "/")}
    procs = [(c, subprocess.Popen(["bash", "-c", c], env=env, cwd=os.getcwd(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
             for c in commands]
    for command, proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{command!r} failed as printed: {err.decode()}"


def _session_present(port: int, client_id: str) -> bool:
    flags: list[bool] = []
    connected = threading.Event()

    def on_connect(client: mqtt.Client, userdata: object, f: mqtt.ConnectFlags,
                   rc: object, props: object) -> None:
        flags.append(f.session_present)
        connected.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.on_connect = on_connect
    c.connect("127.0.0.1", port, clean_start=False)
    c.loop_start()
    try:
        assert connected.wait(10)
    finally:
        c.disconnect()
        c.loop_stop()
    return flags[0]


def test_demo_through_the_in_process_amqtt_broker(
        db_url: str, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=db_url, mqtt_url=None)
    assert main(["demo", "--in-process-broker", "--hours", "2"]) == 0
    out = capsys.readouterr().out
    assert "in-process amqtt broker (MQTT 3.1.1)" in out
    assert "5 national loggers stay silent" in out
    stored = _number(r"readings stored: (\d+) new", out)
    assert stored > 0 and stored == _count(conn, "SELECT count(*) FROM readings")
    assert _count(conn, "SELECT count(*) FROM dead_letters "
                        "WHERE reason = 'unknown_device'") == 3


def test_embedded_amqtt_broker_carries_qos1_between_mqtt311_clients() -> None:
    with embedded_broker(prefer_mosquitto=False) as broker:
        _carries_qos1(broker)


def _carries_qos1(broker: EmbeddedBroker) -> None:
    assert broker.name == "amqtt" and not broker.mqtt5
    port = int(broker.url.rsplit(":", 1)[1])
    got: list[tuple[str, bytes, int]] = []
    received, subscribed = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub",
                      protocol=mqtt.MQTTv311, clean_session=False)
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        got.append((m.topic, bytes(m.payload), m.qos))
        received.set()

    sub.on_message = on_message
    sub.on_connect = lambda c, *a: c.subscribe("gw/v1/+/telemetry", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        assert subscribed.wait(10)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        info = pub.publish("gw/v1/D1/telemetry", b'{"seq":1}', qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
        assert received.wait(10)
        assert got == [("gw/v1/D1/telemetry", b'{"seq":1}', 1)]
    finally:
        pub.loop_stop()
        sub.loop_stop()


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--hours", "0"]) == 2
    assert "--hours must be in (0, 72]" in capsys.readouterr().err
    assert main(["demo", "--devices-per-kind", "51"]) == 2
    assert "--devices-per-kind must be 1..50" in capsys.readouterr().err


def test_run_refuses_without_configured_services(db_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=db_url, mqtt_url=None)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "geowarn run needs GEOWARN_MQTT_URL" in err and "embedded" in err


def test_run_refuses_an_unmigrated_database(empty_db_url: str, broker: Broker,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=empty_db_url, mqtt_url=broker.url)
    assert main(["run"]) == 2
    assert "run `geowarn db upgrade` first" in capsys.readouterr().err


def test_run_ingests_until_sigterm(db_url: str, broker: Broker, conn: psycopg.Connection,
                                   tmp_path: Path) -> None:
    conn.execute("INSERT INTO devices (device_id, kind, profile, reporting_interval_s) "
                 "VALUES ('RUN-1', 'crack_meter', 'native', 600)")
    conn.execute("INSERT INTO channels (device_id, channel, kind, spec, unit) "
                 "VALUES ('RUN-1', 'opening', 'crack_meter', 'opening', 'mm')")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url,
           "GEOWARN_MQTT_URL": broker.url, "GEOWARN_GATEWAY_NAME": "run-test"}
    log = (tmp_path / "run.log").open("w+b")
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "run"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    try:
        # The gateway's shared subscription exists once the broker has a session for it;
        # a message published before that would not reach it, so publish until one lands.
        payload = json.dumps({"seq": 1, "readings": [
            {"ts": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
             "channel": "opening", "value": 1.5}]})
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        stored = 0
        for _ in range(60):
            pub.publish("gw/v1/RUN-1/telemetry", payload, qos=1).wait_for_publish(5)
            stored = wait_for_count(db_url, "SELECT count(*) FROM readings", 1, timeout=0.5)
            if stored or proc.poll() is not None:
                break
        pub.loop_stop()
        assert stored == 1, _log(log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, _log(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = _log(log)
    assert "ingest gateway" in text and "SIGTERM stops" in text


def _log(f: object) -> str:
    assert hasattr(f, "seek") and hasattr(f, "read")
    f.seek(0)
    return str(f.read().decode(errors="replace"))


def test_compose_file_is_valid_and_wires_the_services() -> None:
    doc = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"timescaledb", "mosquitto", "geowarn-migrate", "geowarn-ingest",
                             "geowarn-engine"}
    assert services["timescaledb"]["image"] == "timescale/timescaledb:latest-pg16"
    assert "pg_isready" in " ".join(services["timescaledb"]["healthcheck"]["test"])
    for name in ("mosquitto", "geowarn-ingest", "geowarn-engine"):
        assert services[name]["healthcheck"]["test"], name
    migrate = services["geowarn-migrate"]
    assert migrate["command"] == ["geowarn", "db", "upgrade"]
    assert migrate["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name in ("geowarn-ingest", "geowarn-engine"):
        deps = services[name]["depends_on"]
        assert deps["geowarn-migrate"]["condition"] == "service_completed_successfully"
        env = services[name]["environment"]
        assert env["GEOWARN_DATABASE_URL"].startswith("postgresql://")
    assert services["geowarn-ingest"]["depends_on"]["mosquitto"]["condition"] == \
        "service_healthy"
    assert services["geowarn-ingest"]["environment"]["GEOWARN_MQTT_URL"] == \
        "mqtt://mosquitto:1883"
    # Every file a build or mount names exists in the repository.
    for svc in services.values():
        build = svc.get("build")
        if build:
            assert (PROJECT_ROOT / build["context"] / build["dockerfile"]).is_file()
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), source


def test_health_reports_fresh_stale_and_missing_services(
        db_url: str, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    conn.execute("INSERT INTO ingest_stats (gateway, updated_at, started_at, counters) VALUES "
                 "('gw-fresh', now(), now(), '{}'), "
                 "('gw-stale', now() - interval '5 minutes', now(), '{}')")
    conn.execute("INSERT INTO engine_state (engine, clock, saved_at, layout) "
                 "VALUES ('engine', 0, now(), '{}')")
    assert main(["health", "gateway", "--name", "gw-fresh"]) == 0
    assert re.fullmatch(r"gateway gw-fresh: last report \d+ s ago\n", capsys.readouterr().out)
    assert main(["health", "gateway", "--name", "gw-stale", "--max-age", "60"]) == 1
    assert "(limit 60 s)" in capsys.readouterr().out
    assert main(["health", "gateway", "--name", "gw-none"]) == 1
    assert "gateway gw-none: has never reported" in capsys.readouterr().out
    assert main(["health", "engine"]) == 0
    assert main(["health", "engine", "--max-age", "-1"]) == 2
    assert "--max-age must be positive" in capsys.readouterr().err


def test_embedded_mosquitto_leaves_no_folder_behind(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with embedded_broker() as broker:
        assert broker.name == "mosquitto" and broker.mqtt5
        assert [p.name.startswith("geowarn-mosquitto-") for p in tmp_path.iterdir()] == [True]
        port = int(broker.url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert list(tmp_path.iterdir()) == []
    # Also when the demo fails half-way.
    with pytest.raises(RuntimeError), embedded_broker():
        raise RuntimeError("the demo failed")
    assert list(tmp_path.iterdir()) == []


def test_run_fails_loudly_when_the_engine_cannot_be_loaded(
        db_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment asked for warnings must not ingest on without an engine (exit 0)."""
    override_settings(database_url=db_url, mqtt_url=broker.url)
    monkeypatch.setitem(sys.modules, "alerts.engine.service", None)  # import fails
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "the warning engine cannot be loaded (ModuleNotFoundError" in err
    assert "geowarn run --no-engine" in err


def test_run_stops_everything_when_the_engine_fails(
        db_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The engine thread dying wakes `geowarn run` at once; it stops the gateway and fails."""
    import services.cli

    class Broken:
        def __init__(self, *args: object) -> None:
            pass

        def run(self, stop: threading.Event) -> None:
            raise RuntimeError("engine broke")

    override_settings(database_url=db_url, mqtt_url=broker.url)
    monkeypatch.setattr(services.cli, "_engine_service_class", lambda: Broken)
    assert main(["run"]) == 2
    assert "warning engine failed (RuntimeError: engine broke)" in capsys.readouterr().err
