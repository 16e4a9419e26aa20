"""The engine service against a real database: replay-clock steps produce alerts through the
lifecycle, a crash mid-tick and a restart give the same alerts with no duplicates, and only
one engine leads at a time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from alerts.engine import service as service_module
from alerts.engine import state as engine_state
from alerts.engine.listener import NOTIFY_CHANNEL, parse_payload
from alerts.engine.service import Engine, EngineConfig, Service
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

START = datetime(2024, 7, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def _setup(conn: psycopg.Connection) -> dict[str, int]:
    add_device(conn, DeviceSpec("RAIN-1", kind="rain_gauge", hazard_id="HP1",
                                reporting_interval_s=300))
    add_device(conn, DeviceSpec("WL-1", kind="water_level", site_id="RIVER-1",
                                reporting_interval_s=300))
    conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('site', "
                 "'RIVER-1', '{\"warning_m\": 15, \"guaranteed_m\": 16, "
                 "\"historical_max_m\": 18}')")
    ids: dict[str, int] = dict(conn.execute(
        "SELECT device_id || '.' || channel, channel_id FROM channels").fetchall())
    n = 240
    rain = np.zeros(n)
    # A real gauge's increments vary (one value repeated for an hour is a suspicious
    # pattern, held at yellow: tests/test_engine_quality.py); the sums are unchanged.
    wiggle = 0.4 * (-1.0) ** np.arange(12)
    rain[60:72] = 4.0 + wiggle  # 48 mm in the hour from 05:00: yellow (45 mm / 1 h)
    rain[72:78] = 6.0 + wiggle[:6]  # the 1 h total reaches 60 mm (orange) at sample 77
    stage = 12.0 + np.clip(np.arange(n) - 80, 0, None) * 0.03  # rises from 06:40
    rows = []
    for i in range(n):
        ts = START + i * STEP
        rows.append((ids["RAIN-1.rain"], ts, float(rain[i]), 0))
        rows.append((ids["RAIN-1.rain_total"], ts, float(rain[: i + 1].sum()), 0))
        rows.append((ids["WL-1.level"], ts, float(stage[i]), 0))
    write_readings(conn, rows)
    return ids


def _events(conn: psycopg.Connection) -> list[tuple[str, str, str, int, datetime]]:
    return conn.execute(
        "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time FROM alert_events e "
        "JOIN alerts a USING (alert_id) ORDER BY e.data_time, a.target_id, a.hazard_kind"
    ).fetchall()


def _replay(engine: Engine, upto: int, start: int = 0) -> None:
    for i in range(start, upto):
        engine.step(now=(START + i * STEP).timestamp())


def test_replay_raises_rain_and_flood_levels_on_time(db_url: str, conn: psycopg.Connection
                                                     ) -> None:
    _setup(conn)
    engine = Engine(db_url)
    try:
        _replay(engine, 240)
    finally:
        engine.close()
    ev = [(t, k, lv, when) for t, k, _, lv, when in _events(conn)]
    rain = [(lv, when) for t, k, lv, when in ev if k == "rainfall"]
    assert rain[:3] == [(1, START + 68 * STEP), (2, START + 71 * STEP),
                        (3, START + 77 * STEP)]
    flood = [(lv, when) for t, k, lv, when in ev if t == "RIVER-1"]
    # warning − 0.5 m at 14.5 m (sample 164), warning 15 m (180), guaranteed 16 m (214)
    assert [lv for lv, _ in flood][:3] == [1, 2, 3]
    assert flood[1][1] == START + 180 * STEP and flood[2][1] == START + 214 * STEP
    # The evidence names the channel, its windows and the table.
    detail = conn.execute("SELECT e.evidence FROM alert_events e JOIN alerts a USING "
                          "(alert_id) WHERE a.hazard_kind = 'rainfall' AND e.level = 2"
                          ).fetchone()
    assert detail is not None
    ch = detail[0]["channels"][0]
    assert ch["device_id"] == "RAIN-1" and ch["accumulations_mm"]["1h"] == pytest.approx(48.0)


def test_crash_mid_tick_and_restart_give_the_same_alerts(db_url: str,
                                                         conn: psycopg.Connection,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    _setup(conn)
    engine = Engine(db_url)
    _replay(engine, 73)
    real_save = engine_state.save

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between the tick and the commit")

    monkeypatch.setattr(engine_state, "save", crash)
    with pytest.raises(RuntimeError):
        engine.step(now=(START + 73 * STEP).timestamp())
    monkeypatch.setattr(engine_state, "save", real_save)
    engine.conn.close()  # torn down without cleanup; a new process starts
    engine = Engine(db_url)
    _replay(engine, 240, start=73)
    engine.close()
    got = _events(conn)
    assert len(got) == len(set(got))

    # A second database run straight through must agree event for event.
    conn.execute("DELETE FROM alert_events; DELETE FROM notification_outbox; "
                 "DELETE FROM alerts; DELETE FROM engine_state")
    engine = Engine(db_url)
    _replay(engine, 240)
    engine.close()
    assert _events(conn) == got


def _leader_locks(conn: psycopg.Connection) -> int:
    """Sessions holding the engine's leader lock (a bigint advisory key is stored as its
    high and low 32 bits in classid and objid)."""
    key = service_module._LEADER_KEY
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
        "classid::bigint = %s AND objid::bigint = %s AND objsubid = 1 AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        (key >> 32, key & 0xFFFF_FFFF)).fetchone()
    assert row is not None
    return int(row[0])


def test_one_leader_and_a_standby_takes_over(db_url: str, conn: psycopg.Connection) -> None:
    _setup(conn)
    cfg = EngineConfig(clock="data", period_s=0.5, standby_poll_s=0.2)
    first, second = Service(db_url, cfg), Service(db_url, cfg)
    stop1, stop2 = threading.Event(), threading.Event()
    t1 = threading.Thread(target=first.run, args=(stop1,))
    t1.start()
    assert first.leading.wait(10) and first.caught_up.wait(30)
    judged = _events(conn)
    assert [k for _, k, kind, _, _ in judged if kind == "opened"].count("rainfall") == 1
    t2 = threading.Thread(target=second.run, args=(stop2,))
    t2.start()
    try:
        # The standby asked for the leadership and was refused while the first holds it:
        # one session holds the engine's lock, and the second is not leading.
        assert second.refused.wait(10)
        assert first.leading.is_set() and not second.leading.is_set()
        assert _leader_locks(conn) == 1
        stop1.set()
        t1.join(10)
        assert second.leading.wait(10) and second.caught_up.wait(30)
        assert _leader_locks(conn) == 1
        # The new leader goes on from the saved state: nothing judged twice, no alert
        # opened again.
        assert _events(conn) == judged
        assert conn.execute("SELECT count(*) FROM alerts WHERE hazard_kind = 'rainfall'"
                            ).fetchone() == (1,)
    finally:
        stop1.set()
        stop2.set()
        t1.join(10)
        t2.join(10)


def test_a_fresh_wall_clock_engine_judges_only_the_backfill_window(
        db_url: str, conn: psycopg.Connection) -> None:
    add_device(conn, DeviceSpec("RAIN-OLD", kind="rain_gauge", hazard_id="HP9",
                                reporting_interval_s=300))
    ids: dict[str, int] = dict(conn.execute("SELECT channel, channel_id FROM channels").fetchall())
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    # A storm ten days ago (60 mm in an hour: orange), then light rain yesterday. The storm
    # varies from bucket to bucket as real rain does (twelve identical 5.0 mm would be a
    # repeating gauge, held at yellow until corroborated).
    storm = [4.6, 5.2, 4.8, 5.6, 5.0, 4.4, 5.4, 5.0, 4.8, 5.2, 4.6, 5.4]
    rows = [(ids["rain"], old + i * STEP, v, 0) for i, v in enumerate(storm)]
    rows += [(ids["rain"], old + timedelta(days=9) + i * STEP, 0.2, 0) for i in range(12)]
    write_readings(conn, rows)
    for days, expected in ((7.0, 0), (30.0, 3)):
        conn.execute("DELETE FROM alert_events; DELETE FROM notification_outbox; "
                     "DELETE FROM alerts; DELETE FROM engine_state")
        engine = Engine(db_url, EngineConfig(name=f"bf{days:g}", backfill_s=days * 86400))
        try:
            engine.step()
            assert np.nanmax(engine.state.watermark) == rows[-1][1].timestamp()
        finally:
            engine.close()
        peak = conn.execute("SELECT coalesce(max(peak_level), 0) FROM alerts WHERE "
                            "hazard_kind NOT IN ('maintenance', 'data_quality')").fetchone()
        assert peak == (expected,)
        # The gauge has been silent since yesterday: a maintenance alert from its last
        # reading + 15 min, whatever the backfill (30 days also see the 9-day gap).
        silent = conn.execute(
            "SELECT e.data_time FROM alert_events e JOIN alerts a USING (alert_id) WHERE "
            "a.hazard_kind = 'maintenance' AND e.level = 1 ORDER BY e.data_time").fetchall()
        assert silent[-1] == (rows[-1][1] + timedelta(minutes=15),)
        assert len(silent) == (1 if days < 9 else 2)


def test_a_commit_naming_many_channels_notifies_them_all_by_id(db_url: str) -> None:
    # No "*": the engine would then search the whole registry instead of loading these.
    from ingest.writer import _notify

    ids = frozenset(range(1_999_990_000, 1_999_993_000))  # 10-digit ids: 33,000 bytes
    with psycopg.connect(db_url, autocommit=True) as listen, psycopg.connect(db_url) as conn:
        listen.execute(f"LISTEN {NOTIFY_CHANNEL}")
        _notify(conn, ids)
        _notify(conn, frozenset())
        conn.commit()
        payloads = [n.payload for n in listen.notifies(timeout=2.0, stop_after=5)]
    assert len(payloads) == 5 and all(len(p.encode()) <= 8000 for p in payloads)
    got: set[int] = set()
    for p in payloads:
        named = parse_payload(p)
        assert named is not None
        got |= named
    assert got == ids
