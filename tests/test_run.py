"""`geowarn run` end to end: the gateway, engine, notifier and API in one process against the
real PostgreSQL and a test Mosquitto. A rainstorm published by a device becomes an alert, a
line in the notifier's file channel and an alert the API shows; SIGTERM stops everything
with exit 0; a service that dies fails the process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import paho.mqtt.client as mqtt
import psycopg

from api.users import add_user
from devices.registry import DeviceSpec, add_device
from geowarn.settings import PROJECT_ROOT
from tests import notify_world
from tests.fixtures.broker import Broker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


def _wait(what: str, check: object, proc: subprocess.Popen[bytes], log: IO[bytes],
          timeout: float = 90.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()  # type: ignore[operator]
        if got:
            return got
        assert proc.poll() is None, f"geowarn run ended (rc {proc.returncode}):\n{_log(log)}"
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s:\n{_log(log)}")


def test_run_turns_a_published_storm_into_an_alert_a_message_and_an_api_alert(
        db_url: str, broker: Broker, conn: psycopg.Connection, tmp_path: Path) -> None:
    notify_world.build(conn, households=3)
    add_device(conn, DeviceSpec("RUN-RAIN", kind="rain_gauge", hazard_id="HP-1",
                                reporting_interval_s=300))
    add_user(conn, "duty", "a long enough password", "duty_officer", [notify_world.COUNTY])
    port = _free_port()
    sent_file = tmp_path / "sent.jsonl"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url,
           "GEOWARN_MQTT_URL": broker.url, "GEOWARN_GATEWAY_NAME": "run-e2e",
           "GEOWARN_NOTIFY_FILE": str(sent_file), "GEOWARN_DATA_DIR": str(tmp_path),
           "HOME": os.environ.get("HOME", "/")}
    log = (tmp_path / "run.log").open("w+b")
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "run", "--api-port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    try:
        _wait("start", lambda: "SIGTERM stops" in _log(log), proc, log)
        # 5-minute rain of 18, 22 and 20 mm: 60 mm in the last hour, orange in the county
        # table (1 h: 35/45/60/80 mm), under the 10-minute and hourly plausibility limits.
        # (Three identical 20 mm reports would be a repeating gauge, held at yellow.)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        rain = (18.0, 22.0, 20.0)
        totals = (18.0, 40.0, 60.0)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            for seq, ago in enumerate((15, 10, 5), start=1):
                ts = (now - timedelta(minutes=ago)).isoformat()
                payload = json.dumps({"seq": seq, "readings": [
                    {"ts": ts, "channel": "rain", "value": rain[seq - 1]},
                    {"ts": ts, "channel": "rain_total", "value": totals[seq - 1]}]})
                pub.publish("gw/v1/RUN-RAIN/telemetry", payload, qos=1).wait_for_publish(10)
            # The shared subscription may be set up after the first publish: resend until
            # stored (the store keeps each reading once).
            def stored() -> bool:
                n = conn.execute("SELECT count(*) FROM readings").fetchone()
                if n and n[0] >= 6:
                    return True
                for seq, ago in enumerate((15, 10, 5), start=1):
                    ts = (now - timedelta(minutes=ago)).isoformat()
                    pub.publish("gw/v1/RUN-RAIN/telemetry", json.dumps({"seq": seq, "readings": [
                        {"ts": ts, "channel": "rain", "value": rain[seq - 1]},
                        {"ts": ts, "channel": "rain_total", "value": totals[seq - 1]}]}),
                        qos=1)
                time.sleep(1.0)
                return False
            _wait("storing the readings", stored, proc, log)
        finally:
            pub.loop_stop()
            pub.disconnect()

        level = _wait("an alert", lambda: (conn.execute(
            "SELECT max(level) FROM alerts WHERE target_id = 'HP-1' AND "
            "hazard_kind = 'rainfall'").fetchone() or (None,))[0], proc, log)
        assert level == 3  # orange

        def lines() -> list[dict[str, str]]:
            if not sent_file.exists():
                return []
            return [json.loads(x) for x in sent_file.read_text(encoding="utf-8").splitlines()]

        _wait("a notification", lambda: any("橙色预警" in m["text"] for m in lines()), proc, log)
        assert all("****" in m["to"] or m["to"] == "-" for m in lines())

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            r = api.post("/api/auth/login", json={"username": "duty",
                                                  "password": "a long enough password"})
            assert r.status_code == 200, r.text
            alerts = api.get("/api/alerts", headers={
                "Authorization": f"Bearer {r.json()['token']}"}).json()
        assert [(a["target"]["id"], a["hazard_kind"], a["level"]) for a in alerts] == [
            ("HP-1", "rainfall", "orange")]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, _log(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = _log(log)
    for name in ("ingest gateway", "warning engine", "notifier", f"API on http://127.0.0.1:"
                 f"{port}/"):
        assert name in text, text


def test_run_fails_when_the_api_cannot_start(db_url: str, broker: Broker,
                                             tmp_path: Path) -> None:
    """A port already taken: the API dies at start, and the whole process fails (rc 2)
    after stopping what it had started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url,
               "GEOWARN_MQTT_URL": broker.url, "GEOWARN_GATEWAY_NAME": "run-fail",
               "GEOWARN_DATA_DIR": str(tmp_path), "HOME": os.environ.get("HOME", "/")}
        done = subprocess.run([sys.executable, "-m", "geowarn", "run", "--api-port",
                               str(port)], env=env, cwd=PROJECT_ROOT, capture_output=True,
                              timeout=120)
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "API on http://127.0.0.1:" in err and "failed" in err
    assert "SIGTERM stops" not in err  # it never claimed to be running


def test_notifier_health_is_work_waiting_past_the_limit(
        db_url: str, conn: psycopg.Connection, capsys: object) -> None:
    from alerts.methods.levels import Level
    from geowarn.cli import main

    assert main(["health", "notifier"]) == 0  # nothing due: an idle notifier is healthy
    notify_world.build(conn)
    notify_world.change(conn, Level.YELLOW)  # an event queued for the notifier
    conn.execute("UPDATE notification_outbox SET next_attempt_at = now() - interval '5 min'")
    assert main(["health", "notifier", "--max-age", "60"]) == 1
    assert main(["health", "notifier", "--max-age", "600"]) == 0
    conn.execute("UPDATE notification_outbox SET state = 'sent', sent_at = now()")
    assert main(["health", "notifier", "--max-age", "60"]) == 0
