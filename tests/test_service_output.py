"""What `geowarn ingest` and `geowarn engine` tell an operator: a short summary line now and
then (not the counters' JSON), and which signal stopped them, through real services."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from ingest.stats import IngestStats, summary_line
from simulators.publisher import Publisher
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import ServiceProcess, wait_for_count


def wait_for_log(service: ServiceProcess, text: str, timeout: float = 60.0) -> str:
    """Poll the service's log file for `text` (a file offers no event to await)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in service.log:
            return service.log
        assert service.proc is not None and service.proc.poll() is None, service.log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log:\n{service.log}")


def test_summary_line_gives_rates_lag_queue_and_dead_letters() -> None:
    stats = IngestStats(started_at=time.time() - 10.0)
    first = stats.snapshot()
    stats.add("messages_received", 420)
    stats.add("readings_stored", 400)
    stats.add("readings_duplicate", 3)
    stats.add("dead_letters", 12)
    stats.reject("schema_violation", 10)
    stats.reject("unknown_device", 2)
    stats.batch(420, 0.004, lag_seconds=0.035)
    now = {**stats.snapshot(), "uptime_s": first["uptime_s"] + 10.0}
    line = summary_line(first, now)
    assert line == ("42.0 msg/s, 40.0 readings/s stored, 3 duplicate readings; lag p99 35 ms; "
                    "queue 0; dead letters +12 (12 in all: schema_violation 10, "
                    "unknown_device 2)")
    idle = summary_line(now, {**now, "uptime_s": now["uptime_s"] + 60.0})
    assert idle.startswith("0.0 msg/s, 0.0 readings/s stored, 0 duplicate readings; lag p99 35")
    assert "dead letters +0" in idle
    assert summary_line(None, IngestStats().snapshot()).endswith("lag p99 -; queue 0; "
                                                                 "dead letters +0")


def test_ingest_logs_a_summary_line_and_says_what_sigterm_stops(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        gateway_process: Callable[..., ServiceProcess], capsys: pytest.CaptureFixture) -> None:
    add_device(conn, DeviceSpec(device_id="CM-OUT", kind="crack_meter"), actor="test")
    conn.commit()
    gateway = gateway_process(broker, db_url, name="out-gw")
    gateway.args = ("ingest", "--log-interval", "1")
    gateway.start()
    log = wait_for_log(gateway, "subscribed to")  # messages before that would not reach it
    assert "a summary line every 1 s" in log and "SIGTERM or Ctrl-C stops" in log
    publisher = Publisher("127.0.0.1", broker.port)
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(5):
        ts = (now - timedelta(minutes=10 * i)).isoformat().replace("+00:00", "Z")
        publisher.publish("gw/v1/CM-OUT/telemetry",
                          f'{{"seq":{i + 1},"readings":[{{"ts":"{ts}","channel":"opening",'
                          f'"value":{i}.5}}]}}'.encode())
    publisher.publish("gw/v1/CM-OUT/telemetry", b"{not json")
    publisher.close()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 5) == 5
    log = wait_for_log(gateway, "dead letters +1")
    assert "readings/s stored" in log and "lag p99" in log
    assert "ingest stats {" not in log  # the counters' JSON only at debug level
    assert wait_for_count(db_url, "SELECT count(*) FROM ingest_stats WHERE "
                          "(counters->>'readings_stored')::int = 5", 1) == 1
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=30) == 0
    log = gateway.log
    assert "geowarn ingest: SIGTERM received, stopping the ingest gateway out-gw" in log
    assert "gateway out-gw stopped after" in log
    assert "6 messages received, 5 readings stored, 1 dead letters" in log
    # The counters it saved (every 10 s), read as a person would.
    assert main(["ingest", "--stats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("out-gw: saved ") and "  since start: " in out
    assert "  rejections: malformed_json 1" in out and "  readings_stored: 5" in out


def test_engine_says_what_sigint_stops(db_url: str, tmp_path: Path) -> None:
    engine = ServiceProcess(
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GEOWARN_DATABASE_URL": db_url},
        log_path=tmp_path / "engine.log", args=("engine", "--name", "eng-out", "--period", "1"))
    engine.start()
    try:
        wait_for_log(engine, "is the leader")
        assert engine.proc is not None
        engine.proc.send_signal(signal.SIGINT)
        assert engine.proc.wait(timeout=30) == 0, engine.log
    finally:
        engine.stop()
    log = engine.log
    assert "geowarn engine: SIGINT received, stopping the warning engine eng-out" in log
    assert "geowarn engine: eng-out stopped" in log
