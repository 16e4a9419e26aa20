"""Alert lifecycle and outbox against real PostgreSQL: transitions, idempotent replays,
racing engines, people's actions, auto-resolution on data time, and outbox claiming."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from alerts.lifecycle import outbox
from alerts.lifecycle.writes import (
    LevelChange,
    acknowledge,
    apply_changes,
    auto_resolve,
    get_alert,
    list_alerts,
    resolve,
)
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput, NotFound

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(level: Level, minutes: float, target: str = "HP001", kind: str = "deformation",
           target_type: str = "hazard", **evidence: object) -> LevelChange:
    return LevelChange(target_type, target, kind, level, at(minutes),  # type: ignore[arg-type]
                       evidence or {"channel": "GNSS_1.disp", "value": float(level)})


def counts(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute("SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM "
                       "alert_events), (SELECT count(*) FROM notification_outbox), "
                       "(SELECT count(*) FROM audit_log WHERE object_type = 'alert')").fetchone()
    assert row is not None
    return tuple(row)


def add_hazard_point(conn: psycopg.Connection, hazard_id: str, name: str,
                     county: str = "330106") -> None:
    conn.execute(
        "INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, geometry,"
        " min_lon, min_lat, max_lon, max_lat) VALUES (%s, %s, 'landslide', 'small', %s, "
        "'{\"type\": \"Polygon\", \"coordinates\": []}', 120, 30, 120.01, 30.01)",
        (hazard_id, name, county))


def test_open_raise_lower_clear_auto_resolve_sequence(conn: psycopg.Connection) -> None:
    steps = [change(Level.BLUE, 0), change(Level.ORANGE, 10), change(Level.YELLOW, 20),
             change(Level.NONE, 30)]
    events = [e for s in steps for e in apply_changes(conn, [s], engine="eng-1")]
    assert [(e.kind, e.level, e.previous_level, e.data_time) for e in events] == [
        ("opened", Level.BLUE, Level.NONE, at(0)),
        ("raised", Level.ORANGE, Level.BLUE, at(10)),
        ("lowered", Level.YELLOW, Level.ORANGE, at(20)),
        ("cleared", Level.NONE, Level.YELLOW, at(30)),
    ]
    assert len({e.alert_id for e in events}) == 1
    alert_id = events[0].alert_id
    alert = get_alert(conn, alert_id).alert
    assert (alert.status, alert.level, alert.peak_level) == ("open", Level.NONE, Level.ORANGE)
    assert (alert.opened_at, alert.last_data_time) == (at(0), at(30))

    # Not quiet long enough yet (59 minutes), then exactly the quiet period.
    assert auto_resolve(conn, data_time=at(89), quiet=timedelta(hours=1)) == []
    resolved = auto_resolve(conn, data_time=at(90), quiet=timedelta(hours=1))
    assert [(e.alert_id, e.kind, e.level, e.previous_level, e.data_time, e.actor)
            for e in resolved] == [(alert_id, "resolved", Level.NONE, Level.NONE, at(90),
                                    "system")]
    detail = get_alert(conn, alert_id)
    assert detail.alert.status == "resolved"
    assert detail.alert.resolved_by == "system"
    assert detail.alert.resolved_at == at(90)
    assert detail.alert.resolve_reason == ("quiet for 1 h since the clearing at "
                                           "2026-06-01T00:30:00+00:00")
    assert [e.kind for e in detail.events] == ["opened", "raised", "lowered", "cleared",
                                               "resolved"]
    assert detail.events[1].evidence == {"channel": "GNSS_1.disp", "value": 3.0}
    assert [(a.actor, a.action) for a in detail.audit] == [
        ("eng-1", "opened"), ("eng-1", "raised"), ("eng-1", "lowered"), ("eng-1", "cleared"),
        ("system", "resolved")]
    rows = conn.execute("SELECT event_kind, level, previous_level, data_time, state "
                        "FROM notification_outbox ORDER BY id").fetchall()
    assert rows == [("opened", 1, 0, at(0), "pending"), ("raised", 3, 1, at(10), "pending"),
                    ("lowered", 2, 3, at(20), "pending"), ("cleared", 0, 2, at(30), "pending"),
                    ("resolved", 0, 0, at(90), "pending")]
    # Auto-resolution runs on data time: running it again changes nothing.
    assert auto_resolve(conn, data_time=at(200), quiet=timedelta(hours=1)) == []


def test_only_alerts_still_cleared_are_auto_resolved(conn: psycopg.Connection) -> None:
    apply_changes(conn, [change(Level.RED, 0), change(Level.NONE, 10),
                         change(Level.YELLOW, 0, "HP002"), change(Level.NONE, 10, "HP002"),
                         change(Level.BLUE, 40, "HP002"),  # rose again: not quiet
                         change(Level.ORANGE, 0, "HP003")])  # never cleared
    [done] = auto_resolve(conn, data_time=at(200), quiet=timedelta(minutes=30))
    assert done.target_id == "HP001"
    assert sorted(a.target_id for a in list_alerts(conn, status="open")) == ["HP002", "HP003"]


def test_same_level_and_none_without_alert_are_no_ops(conn: psycopg.Connection) -> None:
    assert apply_changes(conn, [change(Level.NONE, 0)]) == []
    assert counts(conn) == (0, 0, 0, 0)
    apply_changes(conn, [change(Level.YELLOW, 1)])
    assert apply_changes(conn, [change(Level.YELLOW, 2)]) == []
    apply_changes(conn, [change(Level.NONE, 3)])
    assert apply_changes(conn, [change(Level.NONE, 4)]) == []
    assert counts(conn) == (1, 2, 2, 2)


def test_replayed_changes_write_nothing(conn: psycopg.Connection) -> None:
    batch = [change(Level.YELLOW, 0), change(Level.RED, 5), change(Level.YELLOW, 5, "HP002")]
    first = apply_changes(conn, batch)
    assert len(first) == 3
    before = counts(conn)
    assert apply_changes(conn, batch) == []
    # Replaying only the first change, now older than the alert's state, writes nothing either:
    # it must not "lower" the red alert back to yellow.
    assert apply_changes(conn, [batch[0]]) == []
    assert counts(conn) == before
    [hp1] = list_alerts(conn, target_id="HP001")
    assert hp1.level == Level.RED


def test_replay_after_resolution_opens_nothing(conn: psycopg.Connection) -> None:
    [opened] = apply_changes(conn, [change(Level.ORANGE, 0)])
    resolve(conn, opened.alert_id, user="zhang", reason="field check: no movement")
    before = counts(conn)
    assert apply_changes(conn, [change(Level.ORANGE, 0)]) == []
    assert counts(conn) == before


def test_stale_change_is_ignored(conn: psycopg.Connection,
                                 caplog: pytest.LogCaptureFixture) -> None:
    apply_changes(conn, [change(Level.RED, 10)])
    assert apply_changes(conn, [change(Level.BLUE, 5)]) == []
    assert "stale level change ignored" in caplog.text
    [alert] = list_alerts(conn)
    assert alert.level == Level.RED


def test_batch_is_sorted_by_key_and_data_time(conn: psycopg.Connection) -> None:
    events = apply_changes(conn, [change(Level.RED, 10), change(Level.BLUE, 0),
                                  change(Level.YELLOW, 3, "HP000")])
    assert [(e.target_id, e.kind, e.data_time) for e in events] == [
        ("HP000", "opened", at(3)), ("HP001", "opened", at(0)), ("HP001", "raised", at(10))]


def test_batch_is_one_transaction(conn: psycopg.Connection,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom(Exception):
        pass

    calls = []

    def enqueue_then_fail(c: psycopg.Connection, event: object) -> None:
        calls.append(event)
        if len(calls) == 2:
            raise Boom()

    monkeypatch.setattr(outbox, "enqueue", enqueue_then_fail)
    with pytest.raises(Boom):
        apply_changes(conn, [change(Level.BLUE, 0, "HP000"), change(Level.RED, 0)])
    assert counts(conn) == (0, 0, 0, 0)


def _wait_until_blocked(watcher: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                              (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.01)
    pytest.fail(f"backend {pid} never waited on a lock")


@pytest.mark.parametrize("second_level", [Level.YELLOW, Level.RED])
def test_racing_engines_open_one_alert(conn: psycopg.Connection, db_url: str,
                                       second_level: Level) -> None:
    """Engine A opens the alert and holds its transaction; engine B, applying at the same
    moment, blocks on the unique index, then continues on A's alert once A commits."""
    results: dict[str, object] = {}
    with psycopg.connect(db_url) as a, psycopg.connect(db_url, autocommit=True) as b:
        a.execute("SELECT 1")  # A's own transaction: apply_changes nests in it, uncommitted
        apply_changes(a, [change(Level.YELLOW, 0)], engine="A")

        def engine_b() -> None:
            try:
                results["b"] = apply_changes(b, [change(second_level, 0)], engine="B")
            except Exception as exc:  # reported to the test thread below
                results["b"] = exc

        thread = threading.Thread(target=engine_b)
        thread.start()
        _wait_until_blocked(conn, b.info.backend_pid)
        a.commit()
        thread.join(timeout=10)
        assert not thread.is_alive()
    events = results["b"]
    assert isinstance(events, list), events
    alerts = list_alerts(conn)
    assert len(alerts) == 1
    if second_level == Level.YELLOW:
        assert events == []  # a replay of A's change
        assert counts(conn) == (1, 1, 1, 1)
    else:
        assert [(e.kind, e.actor, e.alert_id) for e in events] == [
            ("raised", "B", alerts[0].alert_id)]
        assert alerts[0].level == Level.RED


def test_threads_racing_on_their_own_connections(db_url: str, conn: psycopg.Connection) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def engine() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait(timeout=10)
                apply_changes(c, [change(Level.ORANGE, 0)])
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=engine) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert counts(conn) == (1, 1, 1, 1)


def test_acknowledge_and_resolve_transitions(conn: psycopg.Connection) -> None:
    [opened] = apply_changes(conn, [change(Level.YELLOW, 0)])
    aid = opened.alert_id
    acked = acknowledge(conn, aid, user="li", note="  team on the way ")
    assert (acked.status, acked.acknowledged_by, acked.ack_note) == ("acknowledged", "li",
                                                                      "team on the way")
    assert acked.acknowledged_at is not None
    with pytest.raises(InvalidInput, match=f"alert {aid} is already acknowledged by li"):
        acknowledge(conn, aid, user="wang")
    done = resolve(conn, aid, user="li", reason="slope drained")
    assert (done.status, done.resolved_by, done.resolve_reason) == ("resolved", "li",
                                                                    "slope drained")
    with pytest.raises(InvalidInput, match="already resolved"):
        resolve(conn, aid, user="li", reason="again")
    with pytest.raises(InvalidInput, match="cannot be acknowledged"):
        acknowledge(conn, aid, user="li")
    with pytest.raises(NotFound, match="alert 999999 does not exist"):
        acknowledge(conn, 999999, user="li")
    with pytest.raises(NotFound, match="alert 999999 does not exist"):
        resolve(conn, 999999, user="li", reason="x")
    with pytest.raises(NotFound):
        get_alert(conn, 999999)
    detail = get_alert(conn, aid)
    assert [(a.actor, a.action) for a in detail.audit] == [
        ("engine", "opened"), ("li", "acknowledged"), ("li", "resolved")]
    assert detail.audit[1].detail == {"note": "team on the way", "level": "yellow"}
    assert [e.kind for e in detail.events] == ["opened", "resolved"]
    assert detail.events[-1].previous_level == Level.YELLOW


def test_people_must_say_who_and_why(conn: psycopg.Connection) -> None:
    [opened] = apply_changes(conn, [change(Level.YELLOW, 0)])
    with pytest.raises(InvalidInput, match="user must not be empty"):
        acknowledge(conn, opened.alert_id, user="  ")
    with pytest.raises(InvalidInput, match="reason must not be empty"):
        resolve(conn, opened.alert_id, user="li", reason="")
    assert get_alert(conn, opened.alert_id).alert.status == "open"


def test_rise_after_acknowledgement_reopens(conn: psycopg.Connection) -> None:
    [opened] = apply_changes(conn, [change(Level.ORANGE, 0)])
    acknowledge(conn, opened.alert_id, user="li")
    apply_changes(conn, [change(Level.YELLOW, 5)])  # lowering keeps the acknowledgement
    assert get_alert(conn, opened.alert_id).alert.status == "acknowledged"
    apply_changes(conn, [change(Level.NONE, 6)])
    assert get_alert(conn, opened.alert_id).alert.status == "acknowledged"
    [raised] = apply_changes(conn, [change(Level.BLUE, 7)])  # from cleared: a rise
    assert (raised.kind, raised.previous_level) == ("raised", Level.NONE)
    detail = get_alert(conn, opened.alert_id)
    assert (detail.alert.status, detail.alert.acknowledged_by, detail.alert.peak_level) == (
        "open", None, Level.ORANGE)
    assert detail.audit[-1].detail["acknowledgement_withdrawn"]["by"] == "li"
    acknowledge(conn, opened.alert_id, user="wang")  # needs a new acknowledgement


def test_change_after_resolution_opens_a_new_alert(conn: psycopg.Connection) -> None:
    [first] = apply_changes(conn, [change(Level.RED, 0)])
    resolve(conn, first.alert_id, user="li", reason="evacuated, monitoring continues")
    assert apply_changes(conn, [change(Level.NONE, 5)]) == []
    [second] = apply_changes(conn, [change(Level.RED, 6)])
    assert second.kind == "opened" and second.alert_id != first.alert_id
    assert [a.alert_id for a in list_alerts(conn, status=["open", "acknowledged"])] == [
        second.alert_id]
    assert auto_resolve(conn, data_time=at(10_000), quiet=timedelta(minutes=1)) == []


def test_listing_joins_hazard_points_and_filters(conn: psycopg.Connection) -> None:
    add_hazard_point(conn, "HP001", "西山村滑坡", "330106")
    apply_changes(conn, [change(Level.YELLOW, 0), change(Level.RED, 1, "HP404"),
                         change(Level.BLUE, 2, "RG-7", "rainfall", "site"),
                         change(Level.ORANGE, 3, "HP001", "rainfall")])
    alerts = list_alerts(conn)
    assert [(a.target_id, a.hazard_kind, a.level) for a in alerts] == [
        ("HP404", "deformation", Level.RED), ("HP001", "rainfall", Level.ORANGE),
        ("HP001", "deformation", Level.YELLOW), ("RG-7", "rainfall", Level.BLUE)]
    names = {(a.target_id, a.hazard_kind): (a.target_name, a.county_code) for a in alerts}
    assert names[("HP001", "deformation")] == ("西山村滑坡", "330106")
    assert names[("HP404", "deformation")] == (None, None)  # no such hazard point
    assert names[("RG-7", "rainfall")] == (None, None)  # a site shows its id only
    assert [a.target_id for a in list_alerts(conn, min_level="orange")] == ["HP404", "HP001"]
    assert [a.hazard_kind for a in list_alerts(conn, target_id="HP001", hazard_kind="rainfall")
            ] == ["rainfall"]
    assert [a.target_id for a in list_alerts(conn, since=at(2))] == ["HP001", "RG-7"]
    assert list_alerts(conn, status="resolved") == []
    assert len(list_alerts(conn, limit=2)) == 2
    with pytest.raises(InvalidInput, match="unknown alert status 'closed'"):
        list_alerts(conn, status="closed")
    with pytest.raises(InvalidInput, match="unknown hazard kind 'flood'"):
        list_alerts(conn, hazard_kind="flood")
    with pytest.raises(InvalidInput, match="unknown level 'purple'"):
        list_alerts(conn, min_level="purple")
    with pytest.raises(InvalidInput, match="limit 0"):
        list_alerts(conn, limit=0)


def test_level_change_validation() -> None:
    with pytest.raises(InvalidInput, match="data_time must be a timezone-aware"):
        LevelChange("hazard", "HP1", "deformation", Level.RED, datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="unknown hazard kind 'flood'"):
        LevelChange("hazard", "HP1", "flood", Level.RED, T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown target type 'county'"):
        LevelChange("county", "HP1", "rainfall", Level.RED, T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="level 7 is not 0..4"):
        LevelChange("hazard", "HP1", "rainfall", 7, T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="target id must be"):
        LevelChange("hazard", "", "rainfall", Level.RED, T0)
    with pytest.raises(InvalidInput, match=r"evidence\.forecast\.band\[1\]: nan is not a finite"):
        LevelChange("hazard", "HP1", "deformation", Level.RED, T0,
                    {"forecast": {"band": [1.0, float("nan")]}})
    with pytest.raises(InvalidInput, match=r"evidence\.window: timedelta is not JSON"):
        LevelChange("hazard", "HP1", "deformation", Level.RED, T0,
                    {"window": timedelta(hours=1)})
    shanghai = datetime(2026, 6, 1, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    c = LevelChange("hazard", "HP1", "deformation", 3, shanghai,  # type: ignore[arg-type]
                    {"values": np.array([1.5, 2.0]), "n": np.int64(3), "level": Level.RED,
                     "forecast": {"failure_time": shanghai, "band": (shanghai, shanghai)}})
    assert c.level is Level.ORANGE and c.data_time == T0
    assert c.evidence == {"values": [1.5, 2.0], "n": 3, "level": 4, "forecast": {
        "failure_time": "2026-06-01T00:00:00+00:00",
        "band": ["2026-06-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"]}}


def test_api_rejects_bad_arguments(conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidInput, match="change 0 is a dict"):
        apply_changes(conn, [{"level": 3}])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="engine name must not be empty"):
        apply_changes(conn, [], engine=" ")
    with pytest.raises(InvalidInput, match="quiet period"):
        auto_resolve(conn, data_time=T0, quiet=timedelta(0))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        auto_resolve(conn, data_time=datetime(2026, 1, 1), quiet=timedelta(hours=1))


# --- outbox --------------------------------------------------------------------------------

def _fill_outbox(conn: psycopg.Connection, n: int) -> None:
    apply_changes(conn, [change(Level.YELLOW, i, f"HP{i:03d}") for i in range(n)])


def test_outbox_claims_never_overlap_between_connections(conn: psycopg.Connection,
                                                         db_url: str) -> None:
    _fill_outbox(conn, 10)
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        got_a = outbox.claim_pending(a, 6)  # transaction left open: rows stay locked
        got_b = outbox.claim_pending(b, 6)
        ids_a, ids_b = {i.id for i in got_a}, {i.id for i in got_b}
        assert len(ids_a) == 6 and len(ids_b) == 4
        assert not ids_a & ids_b
        for item in got_a:
            outbox.mark_sent(a, item.id)
        a.commit()
        b.rollback()  # sender B crashed: its rows are free again
        again = outbox.claim_pending(b, 10)
        assert {i.id for i in again} == ids_b
        assert all(i.attempts == 1 for i in again)
        b.commit()
    # B committed its claim (a lease): until it expires nobody else gets those rows.
    assert outbox.claim_pending(conn, 10) == []
    later = outbox.claim_pending(conn, 10, now=datetime.now(UTC) + timedelta(minutes=6))
    assert {i.id for i in later} == ids_b
    assert all(i.attempts == 2 for i in later)


def test_outbox_claim_orders_and_describes_events(conn: psycopg.Connection) -> None:
    apply_changes(conn, [change(Level.YELLOW, 0), change(Level.RED, 1)])
    items = outbox.claim_pending(conn, 10)
    assert [(i.event_kind, i.level, i.previous_level, i.target_id, i.hazard_kind, i.data_time)
            for i in items] == [("opened", Level.YELLOW, Level.NONE, "HP001", "deformation",
                                 at(0)),
                                ("raised", Level.RED, Level.YELLOW, "HP001", "deformation",
                                 at(1))]


def test_outbox_failure_backoff_and_giving_up(conn: psycopg.Connection) -> None:
    _fill_outbox(conn, 1)
    policy = outbox.Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=25), jitter=0.0,
                            max_attempts=3)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    delays = []
    for attempt in (1, 2):
        [item] = outbox.claim_pending(conn, 1, now=now)
        assert item.attempts == attempt
        failed = outbox.mark_failed(conn, item.id, "SMS gateway: 503", backoff=policy, now=now)
        assert failed.state == "pending" and failed.last_error == "SMS gateway: 503"
        delays.append(failed.next_attempt_at - now)
        assert outbox.claim_pending(conn, 1, now=failed.next_attempt_at
                                    - timedelta(microseconds=1)) == []
        now = failed.next_attempt_at
    assert delays == [timedelta(seconds=10), timedelta(seconds=20)]
    [item] = outbox.claim_pending(conn, 1, now=now)
    gave_up = outbox.mark_failed(conn, item.id, "SMS gateway: 503", backoff=policy, now=now)
    assert (gave_up.state, gave_up.attempts) == ("failed", 3)
    assert outbox.claim_pending(conn, 1, now=now + timedelta(days=1)) == []
    with pytest.raises(InvalidInput, match="already failed"):
        outbox.mark_sent(conn, item.id)


def test_outbox_marking_errors(conn: psycopg.Connection) -> None:
    _fill_outbox(conn, 1)
    [row] = conn.execute("SELECT id FROM notification_outbox").fetchall()
    with pytest.raises(InvalidInput, match="never claimed"):
        outbox.mark_sent(conn, row[0])
    [item] = outbox.claim_pending(conn, 1)
    sent = outbox.mark_sent(conn, item.id)
    assert sent.state == "sent" and sent.sent_at is not None
    with pytest.raises(InvalidInput, match="already sent"):
        outbox.mark_sent(conn, item.id)
    with pytest.raises(InvalidInput, match="already sent"):
        outbox.mark_failed(conn, item.id, "late error")
    with pytest.raises(NotFound, match="notification 999999"):
        outbox.mark_sent(conn, 999999)
    with pytest.raises(InvalidInput, match="error must not be empty"):
        outbox.mark_failed(conn, item.id, " ")
    with pytest.raises(InvalidInput, match="claim limit 0"):
        outbox.claim_pending(conn, 0)


def test_backoff_grows_to_cap_with_bounded_jitter() -> None:
    policy = outbox.Backoff(base=timedelta(seconds=30), cap=timedelta(minutes=10), jitter=0.5)
    rng = random.Random(7)
    for attempts, plain in ((1, 30), (2, 60), (5, 480), (6, 600), (60, 600)):
        d = policy.delay(attempts, rng).total_seconds()
        assert plain <= d <= plain * 1.5
    with pytest.raises(InvalidInput, match="jitter"):
        outbox.Backoff(jitter=2)
    with pytest.raises(InvalidInput, match="base <= cap"):
        outbox.Backoff(base=timedelta(hours=2), cap=timedelta(hours=1))
