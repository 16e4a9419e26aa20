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
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

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


STORY_HAZARDS = {"DEMO-LS-01", "DEMO-DF-02"}
MASKED = re.compile(r"^\+86\d{3}\*{4}\d{4}$")


def _events(conn: psycopg.Connection) -> list[tuple[str, str, int, datetime, dict[str, Any]]]:
    return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(
        "SELECT a.target_id, a.hazard_kind, e.level, e.data_time, e.evidence "
        "FROM alert_events e JOIN alerts a USING (alert_id) ORDER BY e.data_time, e.event_id")]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_demo_tells_the_story_and_starts_afresh_on_every_run(
        empty_db_url: str, broker: Broker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=empty_db_url, mqtt_url=broker.url, data_dir=tmp_path)
    before = datetime.now(UTC)
    assert main(["demo", "--no-serve"]) == 0
    out = capsys.readouterr().out
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        events = _events(conn)
        households: dict[str, int] = dict(conn.execute(
            "SELECT hazard_id, count(*) FILTER (WHERE phone IS NOT NULL) FROM households "
            "GROUP BY hazard_id").fetchall())
        assert _count(conn, "SELECT count(*) FROM hazard_points") == 4
        assert _count(conn, "SELECT count(*) FROM shelters") == 2
    # Only the two hazard points of the story have alerts; nothing on the quiet devices.
    assert {e[0] for e in events} == STORY_HAZARDS
    rain = [(lv, t) for hid, kind, lv, t, _ in events if hid == "DEMO-DF-02"]
    slope = [(lv, t, ev) for hid, kind, lv, t, ev in events if hid == "DEMO-LS-01"]
    # The typhoon raises yellow, then orange, in data-time order, and never red.
    levels = [lv for lv, _ in rain]
    assert 2 in levels and 3 in levels and levels.index(2) < levels.index(3)
    assert max(levels) == 3
    # The slope reaches red with a failure forecast after the red and after the story's end
    # (the slope fails five hours after it); every time lies in the eight days before now.
    red_time, red_evidence = next((t, ev) for lv, t, ev in slope if lv == 4)
    forecast = next(ch["forecast"] for ch in red_evidence["channels"] if "forecast" in ch)
    at = datetime.fromisoformat(forecast["time"].replace("Z", "+00:00"))
    assert red_time < before - timedelta(hours=1) < at
    assert before - timedelta(days=8) < min(t for *_, t, _ in events)
    assert "failure forecast" in out and "orange -> red (raised)" in out
    assert "yellow -> orange (raised)" in out

    # The file channel: Chinese SMS, masked numbers only, each sent at or after the data
    # time of what it tells (the notifier lived through the story on the data clock).
    path = tmp_path / "demo-notifications.jsonl"
    sent = _lines(path)
    assert sent and all(MASKED.match(m["to"]) for m in sent)
    assert not re.search(r"1[3-9]\d{9}(?!\d)", "".join(m["to"] + m["recipient"] for m in sent))
    evacuate = [m for m in sent if m["text"].startswith("【紧急撤离】岭头村滑坡发布红色预警")]
    assert len({m["recipient"] for m in evacuate}) == households["DEMO-LS-01"]
    red_sent = min(datetime.fromisoformat(m["at"]) for m in evacuate)
    assert red_sent == red_time
    prepare = [m for m in sent if m["text"].startswith("【地灾预警】后坑泥石流沟发布橙色预警")]
    assert len({m["recipient"] for m in prepare}) == households["DEMO-DF-02"]
    yellow_time = next(t for lv, t in rain if lv == 2)
    assert any(m["at"] == yellow_time.isoformat() and "黄色预警" in m["text"] for m in sent)
    assert "SMS x" in out and "+86136****0001" in out
    # The county duty officer acknowledges the typhoon's orange (the API's call): its
    # escalation stops before the city is paged; the slope's, unacknowledged, climbs on.
    assert "orange acknowledged by county-duty 8 min after it was raised" in out
    assert "escalation stopped at" in out and "by county-duty" in out
    orange_time = next(t for lv, t in rain if lv == 3)
    escalated = [m for m in sent if m["text"].startswith("【未确认升级】")]
    assert not [m for m in escalated if "后坑泥石流沟橙色" in m["text"]]
    assert any("岭头村滑坡橙色" in m["text"] for m in escalated)
    assert re.search(r"DEMO-DF-02 后坑泥石流沟 rainfall: \w+ \(\S+\), acknowledged", out)
    with psycopg.connect(empty_db_url) as conn:
        stopped = conn.execute("SELECT e.stopped_by, e.stopped_at FROM escalations e JOIN "
                               "alerts a USING (alert_id) WHERE a.target_id = 'DEMO-DF-02'"
                               ).fetchone()
    assert stopped == ("county-duty", orange_time + timedelta(minutes=8))
    assert _number(r"(\d+) messages \(", out) == len(sent)
    _explore_commands_run_as_printed(out, empty_db_url, tmp_path)
    # The demo gateway's persistent session was ended: on a shared broker it would otherwise
    # collect every device message for a week.
    assert _session_present(broker.port, "geowarn-demo") is False

    # Again: the database starts afresh, so the story is told once, not twice.
    assert main(["demo", "--no-serve"]) == 0
    capsys.readouterr()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert len(_events(conn)) == len(events)
        assert _count(conn, "SELECT count(*) FROM alerts") == len({(e[0], e[1]) for e in events})
    assert len(_lines(path)) == len(sent)


def test_demo_refuses_a_database_with_other_data_unless_reset(
        db_url: str, broker: Broker, conn: psycopg.Connection, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    conn.execute("INSERT INTO devices (device_id, kind, profile) VALUES ('REAL-1', "
                 "'crack_meter', 'native')")
    override_settings(database_url=db_url, mqtt_url=broker.url, data_dir=tmp_path)
    assert main(["demo", "--no-serve"]) == 2
    err = capsys.readouterr().err
    assert "holds data that is not the demo's (1 devices)" in err and "--reset" in err
    assert _count(conn, "SELECT count(*) FROM devices WHERE device_id = 'REAL-1'") == 1


def _explore_commands_run_as_printed(out: str, db_url: str, data_dir: Path) -> None:
    """Every command of "Explore", pasted into a shell whose PATH lacks the virtual
    environment (a newcomer's after `bash dev.sh demo`), runs and exits 0."""
    section = out.split("[6/6] Explore", 1)[1]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert len(commands) >= 8, section
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p != venv_bin)
    env = {"PATH": path, "GEOWARN_DATABASE_URL": db_url, "HOME": os.environ.get("HOME", "/"),
           "GEOWARN_DATA_DIR": str(data_dir)}
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
        empty_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=empty_db_url, mqtt_url=None, data_dir=tmp_path)
    assert main(["demo", "--in-process-broker", "--no-serve"]) == 0
    out = capsys.readouterr().out
    assert "in-process amqtt broker (MQTT 3.1.1)" in out
    stored = _number(r"and (\d+) readings stored", out)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert stored == _count(conn, "SELECT count(*) FROM readings") > 3000
        assert _count(conn, "SELECT count(*) FROM alerts WHERE level = 4") == 1


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
    assert main(["demo", "--port", "0"]) == 2
    assert "--port must be 1..65535" in capsys.readouterr().err


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
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "run", "--no-api"], env=env,
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
    assert main(["run", "--no-api", "--no-notifier"]) == 2
    assert "warning engine failed (RuntimeError: engine broke)" in capsys.readouterr().err


def start_demo(db_url: str, broker: Broker, tmp_path: Path) -> tuple[subprocess.Popen[str],
                                                                     dict[str, str]]:
    """`geowarn demo` serving, as a newcomer starts it; returns the process and what it
    printed about the URL and the login."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url,
           "GEOWARN_MQTT_URL": broker.url, "GEOWARN_DATA_DIR": str(tmp_path),
           "HOME": os.environ.get("HOME", "/")}
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "demo", "--port", str(port)],
                            env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    printed: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.match(r"\s+(console|API|login):\s+(\S+)(?: / (\S+))?", line):
            printed[m.group(1)] = m.group(2)
            if m.group(3):
                printed["password"] = m.group(3)
        if "Ctrl-C stops the demo" in line:
            break
    else:
        pytest.fail(f"the demo ended before serving (rc {proc.wait()})")
    return proc, printed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_the_api_with_the_printed_login_until_sigterm(
        empty_db_url: str, broker: Broker, tmp_path: Path) -> None:
    import httpx

    proc, printed = start_demo(empty_db_url, broker, tmp_path)
    try:
        api = printed["API"]
        base = api.rsplit("/api/", 1)[0]
        assert printed["login"] == "demo" and len(printed["password"]) >= 12
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post("/api/auth/login", json={"username": "demo",
                                                     "password": printed["password"]})
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            alerts = client.get("/api/alerts", headers={"Authorization": f"Bearer {token}"})
            assert alerts.status_code == 200, alerts.text
            red = [a for a in alerts.json() if a["target"]["id"] == "DEMO-LS-01"]
            assert [(a["hazard_kind"], a["level"]) for a in red] == [("deformation", "red")]
            assert red[0]["target"]["name"] == "岭头村滑坡"
            assert client.post("/api/auth/login", json={
                "username": "demo", "password": "not the printed one"}).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
