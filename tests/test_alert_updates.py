"""A failure forecast refreshed while the level holds is an alert "updated" event: through the
engine against the real database (history, outbox, audit trail for the API stream, at most one
per `update_interval_s`, the same events when the stored data are judged again in one step),
in the lifecycle (rate limit in data time, replays, the level and acknowledgement untouched),
and in notify (officers told the new forecast, residents not paged again)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.engine.rules import validate_override
from alerts.engine.service import Engine, EngineConfig
from alerts.lifecycle import writes as lifecycle
from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from devices.registry import DeviceSpec, add_device
from geowarn.errors import InvalidInput
from geowarn.readings import write_readings
from notify import deliveries
from notify.channels.file import FileChannel
from notify.forecast_news import forecast_of, news
from notify.notifier import Notifier
from notify.routing import OFFICERS
from simulators.displacement_scenarios import accelerating
from tests import notify_world as world

HOUR = 3600.0


def _events(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT e.kind, e.level, e.previous_level, e.data_time, e.evidence FROM alert_events e "
        "JOIN alerts a USING (alert_id) WHERE a.hazard_kind = 'deformation' "
        "ORDER BY e.data_time, e.event_id").fetchall()


def _live(db_url: str, conn: psycopg.Connection, rules: dict[str, Any] | None) -> list[tuple]:
    """A crack meter failing: stored readings judged hour by hour by the engine."""
    add_device(conn, DeviceSpec("CM-U", kind="crack_meter", reporting_interval_s=1800))
    if rules:
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('kind', "
                     "'crack_meter', %s)", (json.dumps(rules),))
    cid = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'CM-U'").fetchone()
    assert cid is not None
    s = accelerating(4, v0_mm_day=1.0, pre_days=8, tert_days=6, noise_mm=0.3, step_s=1800,
                     end_before_s=6 * HOUR, kind="crack_meter")
    write_readings(conn, [(cid[0], datetime.fromtimestamp(float(t), UTC), float(v), 0)
                          for t, v in zip(s.t, s.v, strict=True)])
    engine = Engine(db_url, EngineConfig(clock="data", quiet_s=1000 * HOUR))
    try:
        t = float(s.t[0]) - float(s.t[0]) % HOUR + HOUR
        while t < float(s.t[-1]) + HOUR:
            engine.step(now=t)
            t += HOUR
    finally:
        engine.close()
    return _events(conn)


def _updates(events: list[tuple]) -> list[tuple]:
    return [e for e in events if e[0] == "updated"]


@pytest.mark.parametrize("interval_h", [1.0, 4.0])
def test_a_refreshed_forecast_is_an_update_event_through_the_engine(
        db_url: str, conn: psycopg.Connection, interval_h: float) -> None:
    events = _live(db_url, conn, {"update_interval_s": interval_h * HOUR}
                   if interval_h != 1.0 else None)  # 1 h is the default
    ups = _updates(events)
    assert ups, events
    for _, level, previous, _, evidence in ups:
        assert level == previous >= Level.ORANGE
        assert evidence["update"] == "forecast refreshed"
        fc = evidence["channels"][0]["forecast"]
        assert set(fc) == {"time", "lower", "upper", "issued_at"}
    # Each update carries a new forecast, at least the interval after the alert's previous
    # event (level change or update), in data time.
    times = [e[3] for e in events]
    for i, e in enumerate(events):
        if e[0] == "updated":
            assert e[3] - times[i - 1] >= timedelta(hours=interval_h)
    issued = [e[4]["channels"][0]["forecast"]["issued_at"] for e in ups]
    assert len(set(issued)) == len(issued)
    # Outbox (notify) and audit trail (the API's live stream) have each one.
    n_out = conn.execute("SELECT count(*) FROM notification_outbox WHERE event_kind = 'updated'"
                         ).fetchone()
    n_audit = conn.execute("SELECT count(*) FROM audit_log WHERE object_type = 'alert' AND "
                           "action = 'updated'").fetchone()
    assert n_out == n_audit == (len(ups),)
    # The officers are texted the material ones only (notify/forecast_news.py): the first
    # forecast, then moves beyond max(1 h, 20 % of the time to go).
    told, texted = None, 0
    for _, _, _, at, evidence in ups:
        if news(told, forecast_of(evidence), at) is not None:
            told, texted = forecast_of(evidence), texted + 1
    assert 1 <= texted < len(ups)
    if interval_h == 4.0:
        # Every refresh was hourly; the 4 h interval kept about one in four.
        span = (ups[-1][3] - ups[0][3]).total_seconds() / HOUR
        assert len(ups) <= span / 4.0 + 1
    # The same stored data judged again in one catch-up step: the same history.
    conn.execute("DELETE FROM notification_outbox; DELETE FROM alert_events; "
                 "DELETE FROM alerts; DELETE FROM engine_state")
    engine = Engine(db_url, EngineConfig(clock="data", quiet_s=1000 * HOUR))
    try:
        engine.step()
    finally:
        engine.close()
    assert _events(conn) == events


def test_lifecycle_updates_rate_limited_idempotent_and_keep_the_acknowledgement(
        conn: psycopg.Connection) -> None:
    t0 = datetime(2026, 7, 1, tzinfo=UTC)

    def up(minutes: float, every: float = HOUR, level: Level = Level.ORANGE
           ) -> list[lifecycle.AlertEvent]:
        return apply_changes(conn, [LevelChange(
            "hazard", "HP-U", "deformation", level, t0 + timedelta(minutes=minutes),
            {"update": "forecast refreshed", "n": minutes}, every)])

    (opened,) = apply_changes(conn, [LevelChange("hazard", "HP-U", "deformation", Level.ORANGE,
                                                 t0, {})])
    lifecycle.acknowledge(conn, opened.alert_id, user="officer")
    assert up(30) == []  # within the hour after the opening
    (u1,) = up(60)
    assert (u1.kind, u1.level, u1.previous_level) == ("updated", Level.ORANGE, Level.ORANGE)
    assert up(60) == []  # a replay
    assert up(90) == [] and len(up(120)) == 1
    assert up(125, every=0) and up(125, every=0) == []  # no interval: once per data time
    detail = lifecycle.get_alert(conn, opened.alert_id)
    assert detail.alert.status == "acknowledged"  # updates never withdraw an acknowledgement
    assert detail.alert.level == Level.ORANGE and detail.alert.last_data_time == t0
    assert up(200, level=Level.NONE) != []  # a clearing is a level change, not an update
    assert up(300, every=0, level=Level.NONE) == []  # nothing to update at level none
    kinds = [e.kind for e in lifecycle.get_alert(conn, opened.alert_id).events]
    assert kinds == ["opened", "updated", "updated", "updated", "cleared"]
    with pytest.raises(InvalidInput, match="update_every_s"):
        LevelChange("hazard", "HP-U", "deformation", Level.RED, t0, {}, -1.0)


def test_update_interval_is_validated() -> None:
    validate_override("kind", "gnss", {"update_interval_s": 7200})
    with pytest.raises(InvalidInput, match="update_interval_s"):
        validate_override("kind", "gnss", {"update_interval_s": -1})
    with pytest.raises(InvalidInput, match="no effect"):
        validate_override("kind", "rain_gauge", {"update_interval_s": 7200})


def test_officers_hear_the_new_forecast_and_residents_are_not_paged_again(
        conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    world.build(conn, households=5)
    (opened,) = world.change(conn, Level.ORANGE)
    fc = {"time": "2026-07-02T14:20Z", "lower": "2026-07-02T11:00Z",
          "upper": "2026-07-02T18:40Z", "issued_at": "2026-07-01T04:00Z"}
    (upd,) = apply_changes(conn, [LevelChange(
        "hazard", "HP-1", "deformation", Level.ORANGE, world.T0 + timedelta(hours=2),
        {"update": "forecast refreshed", "channels": [{"forecast": fc}]}, HOUR)])
    ch = FileChannel(tmp_path / "o.jsonl")
    n = Notifier(db_url, {"file": ch, "sms": ch, "voice": ch})  # type: ignore[dict-item]
    while n.step():
        pass
    n.close()
    rows = deliveries.list_deliveries(conn, alert_id=opened.alert_id)
    warned = {d.recipient_id for d in rows if d.event_id == opened.event_id}
    assert any(r.startswith("household:") for r in warned)
    told = [d for d in rows if d.event_id == upd.event_id]
    assert told and all(d.purpose == "update" and d.channel == "sms" for d in told)
    assert not any(d.audience.startswith("residents") for d in told)
    # The officers and monitors the warning reached (as for a lowered level).
    officers = {d.recipient_id for d in rows if d.event_id == opened.event_id
                and (d.audience in OFFICERS or d.audience == "monitor")}
    assert officers and {d.recipient_id for d in told} == officers
    for d in told:
        assert "07-02 14:20Z (07-02 11:00 – 07-02 18:40)" in d.body, d.body
        assert ("预报更新" if d.language == "zh" else "Forecast updated") in d.body
