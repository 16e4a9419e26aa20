"""What `geowarn engine` says: one readable log line per alert event (no people, no phone
numbers), its clock as an ISO time, and a --help whose rule commands read as optional."""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine.service import Engine, EngineConfig, clock_text
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.readings import write_readings

START = datetime(2025, 8, 1, tzinfo=UTC)


def test_each_alert_event_is_one_log_line(db_url: str, conn: psycopg.Connection,
                                          caplog: pytest.LogCaptureFixture) -> None:
    add_device(conn, DeviceSpec("RG-LOG", kind="rain_gauge", site_id="S-LOG",
                                reporting_interval_s=600))
    (cid,) = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'RG-LOG' AND "
                          "channel = 'rain'").fetchone() or (None,)
    rain = [0.0] * 6 + [12.2, 11.8] * 6 + [0.0] * 200  # 72 mm an hour for 2 h, then dry
    write_readings(conn, [(cid, START + timedelta(minutes=10 * i), v, 0)
                          for i, v in enumerate(rain)])
    caplog.set_level(logging.INFO, logger="alerts.engine.service")
    engine = Engine(db_url, EngineConfig(name="log", clock="data", quiet_s=3600.0))
    try:
        events = engine.step(now=(START + timedelta(hours=40)).timestamp(), periodic=True)
    finally:
        engine.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert ")]
    assert len(lines) == len(events) > 3
    kinds = [e.kind for e in events]
    assert {"opened", "raised", "lowered", "cleared", "resolved"} <= set(kinds)
    for line, e in zip(lines, events, strict=True):
        assert re.fullmatch(rf"alert {e.alert_id} {e.kind}: {e.hazard_kind} "
                            rf"{e.target_type} {e.target_id} -> "
                            r"(none|blue|yellow|orange|red) at \d{4}-\d\d-\d\dT\S+", line), line
    assert not any(re.search(r"\d{11}", line) for line in lines)  # nothing like a phone


def test_the_clock_reads_as_a_time() -> None:
    assert clock_text(-math.inf) == "not started (no data judged yet)"
    assert clock_text(START.timestamp()) == "2025-08-01T00:00:00+00:00"


def test_engine_help_shows_the_rule_commands_as_optional(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(SystemExit):
        main(["engine", "--help"])
    out = capsys.readouterr().out
    assert "ACTION" not in out
    assert "[rules-set|rules-list|rules-delete]" in out and "optional" in out
