"""A registry change applied to a running engine at the cost of what changed (issue 7,
alerts/engine/registry_delta.py), through the real database.

While a rain alert is live and a slope creeps, a water-level gauge is added, another
gauge's rule is changed (`geowarn engine rules-set`) and a third gauge is retired. Checked:
the channels that did not change keep their levels, rings, rain sums and displacement
history without a single read of the readings store for them (the reads are counted) and
without the whole reload; the new gauge is judged; the changed rule takes effect; the
retired gauge's channels are no longer judged; the spliced engine equals one restarted from
the database field by field; and the alerts of the whole run equal those of a run that
reloaded everything at the change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from alerts.engine import state as engine_state
from alerts.engine.service import Engine
from alerts.engine.tick import EngineState, Setup
from devices.registry import DeviceSpec, add_device, retire_device
from geowarn import readings_bulk
from geowarn.cli import main as geowarn_main
from geowarn.readings import write_readings
from simulators.scenarios import accelerating_creep, flood_stage, typhoon_rain

START = datetime(2024, 7, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
N, K = 288, 150  # steps in the run; the step at which the registry changes
RULE = '{"warning_m": %s, "guaranteed_m": 16, "historical_max_m": 18}'


def _ids(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT device_id || '.' || channel, channel_id FROM channels"
                             ).fetchall())


def _write(conn: psycopg.Connection, channel: int, every: int, values: np.ndarray) -> None:
    write_readings(conn, [(channel, START + i * every * STEP, float(v), 0)
                          for i, v in enumerate(values) if np.isfinite(v)])


def _stage(seed: int, base: float, peak: float, rise: int, at: int) -> np.ndarray:
    return flood_stage(N, 300.0, base_m=base, peak_m=peak, rise_start=rise, peak_index=at,
                       noise_m=0.004, seed=seed)


def _register(conn: psycopg.Connection) -> None:
    for dev, kind, hazard, site, every in (
            ("RAIN-1", "rain_gauge", "HP1", None, 300),
            ("CRACK-1", "crack_meter", "HP1", None, 600),
            ("WL-1", "water_level", None, "RIVER-1", 300),
            ("WL-2", "water_level", None, "RIVER-2", 300)):
        add_device(conn, DeviceSpec(dev, kind=kind, hazard_id=hazard, site_id=site,
                                    reporting_interval_s=every))
    for site, warning in (("RIVER-1", 15), ("RIVER-2", 14), ("RIVER-3", 14)):
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('site', %s, "
                     "%s)", (site, RULE % warning))
    ids = _ids(conn)
    rain = typhoon_rain(N, 300.0, peak_index=110, peak_mm_h=30.0, width_h=1.5, seed=1)
    _write(conn, ids["RAIN-1.rain"], 1, rain["rain"])
    _write(conn, ids["RAIN-1.rain_total"], 1, rain["rain_total"])
    creep = accelerating_creep(N // 2, 600.0, v0_mm_per_day=2.0, onset_s=0.4 * 86400,
                               failure_s=1.3 * 86400, noise_mm=0.02, quantum_mm=0.01, seed=3)
    _write(conn, ids["CRACK-1.opening"], 2, 5.0 + creep.displacement)
    # WL-1 reaches 14.5 m (its new warning) before 15 m (its old one); WL-2 would cross its
    # warning only after it is retired.
    _write(conn, ids["WL-1.level"], 1, _stage(4, 12.0, 15.6, 120, 230))
    _write(conn, ids["WL-2.level"], 1, _stage(5, 12.0, 15.0, 160, 250))


def _wl3(conn: psycopg.Connection) -> None:
    add_device(conn, DeviceSpec("WL-3", kind="water_level", site_id="RIVER-3",
                                reporting_interval_s=300))
    _write(conn, _ids(conn)["WL-3.level"], 1, _stage(6, 13.8, 16.5, 100, 200))


def _events(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time FROM alert_events e "
        "JOIN alerts a USING (alert_id) ORDER BY e.data_time, a.target_id, a.hazard_kind, "
        "e.kind, e.level").fetchall()


def _replay(engine: Engine, start: int, stop: int) -> None:
    for i in range(start, stop):
        engine.step(now=(START + i * STEP).timestamp())


def _by_id(setup: Setup, state: EngineState) -> dict[int, dict[str, Any]]:
    """Each channel's memory by channel id: saved arrays, ring contents, rain sums and the
    displacement history (what a registry change must leave alone)."""
    out: dict[int, dict[str, Any]] = {}
    assert state.rain is not None and state.disp is not None
    for i, c in enumerate(setup.channels):
        g = setup.params[i].method
        row = int(setup.row_in_group[i])
        mine: dict[str, Any] = {name: np.asarray(a)[i].copy()
                                for name, a in state.saved_arrays().items()
                                if not name.startswith("disp_") and name not in (
                                    "emitted", "maintenance", "quality")}
        if g in state.rings:
            ring = state.rings[g]
            mine["ring"] = [a.copy() for a in ring.last(np.array([row]), ring.k)]
        if g == "rainfall":
            mine["rain_mm"] = state.rain.totals_mm(state.rings[g], np.array([row])).copy()
        if g == "displacement":
            h = state.disp.hist
            mine["bins"] = (h.bins[row].copy(), h.sec[row].copy(), int(h.last_hour[row]),
                            h.open_vals[row].copy(), float(h.offset[row]))
            mine.update({k: np.asarray(a)[row].copy()
                         for k, a in state.disp.saved_arrays().items()})
        out[c.channel_id] = mine
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind
                               in "fc"))


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Channel ids the readings store is asked for (raw ranges and hourly middles)."""
    asked: list[int] = []

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def read(conn: Any, ids: Any, *args: Any, **kwargs: Any) -> Any:
            asked.extend(int(i) for i in ids)
            return real(conn, ids, *args, **kwargs)
        return read

    monkeypatch.setattr(readings_bulk, "ranges", counting(readings_bulk.ranges))
    monkeypatch.setattr(readings_bulk, "hourly_middles", counting(readings_bulk.hourly_middles))
    return asked


def _open_alerts(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT target_id, hazard_kind FROM alerts WHERE status <> 'resolved' "
                        "ORDER BY 1, 2").fetchall()


def test_a_registry_change_costs_what_changed_and_equals_a_restart(
        db_url: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOWARN_DATABASE_URL", db_url)
    _register(conn)
    engine = Engine(db_url)
    _replay(engine, 0, K)
    assert ("HP1", "rainfall") in _open_alerts(conn)  # the change comes while alerts are live
    before = _by_id(engine.setup, engine.state)
    ids = _ids(conn)

    _wl3(conn)
    assert geowarn_main(["engine", "rules-set", "site", "RIVER-1", RULE % 14.5]) == 0
    retire_device(conn, "WL-2")
    asked = _count_reads(monkeypatch)

    def no_whole_reload() -> None:
        raise AssertionError("the registry change reloaded the whole engine")

    monkeypatch.setattr(engine, "load", no_whole_reload)
    assert engine.reload_if_changed()
    monkeypatch.undo()
    monkeypatch.setenv("GEOWARN_DATABASE_URL", db_url)
    changed = {ids["WL-1.level"], _ids(conn)["WL-3.level"]}
    assert set(engine.setup.index) == set(before) - {ids["WL-2.level"]} | changed
    # (1) Only the changed gauge's memory was read from the store (the new one has none yet:
    # nothing judged); every other channel kept its memory exactly (levels, dwell clocks,
    # screen, rings, rain sums, displacement history).
    assert set(asked) == {ids["WL-1.level"]}
    after = _by_id(engine.setup, engine.state)
    kept = set(before) - changed - {ids["WL-2.level"]}
    assert kept == {ids[k] for k in ("RAIN-1.rain", "RAIN-1.rain_total", "CRACK-1.opening")}
    for c in kept:
        assert _same(before[c], after[c]), c
    assert after[ids["CRACK-1.opening"]]["bins"][2] > 0  # a displacement history was kept
    # (4) The retired gauge's channels are out of the setup and its saved rows are deleted.
    assert ids["WL-2.level"] not in engine.setup.index
    assert conn.execute("SELECT count(*) FROM engine_state_rows WHERE key IN (%s, 'WL-2', "
                        "'site:RIVER-2')", (str(ids["WL-2.level"]),)).fetchone() == (0,)
    # (5) The spliced engine equals one restarted from the database, field by field.
    fresh = Engine(db_url)
    try:
        _assert_same_engine(engine, fresh)
    finally:
        fresh.close()
    _replay(engine, K, N)
    assert all(r.size == 0 for r in engine_state.unsaved(engine.state, engine.saved).values())
    engine.close()
    got = _events(conn)
    flood = {t: [(lv, when) for tt, k, _, lv, when in got if tt == t and k == "water_level"]
             for t in ("RIVER-1", "RIVER-2", "RIVER-3")}
    # (2) The new gauge is judged (its stored readings from the first on, in data-time
    # rounds): above its approach level from the start, then its warning.
    assert [lv for lv, _ in flood["RIVER-3"]][:2] == [1, 2]
    # (3) The new rule (warning 14.5 m) raises WL-1 to yellow before its stage reached the
    # old warning (15 m).
    at_15 = START + int(np.argmax(_stage(4, 12.0, 15.6, 120, 230) >= 15.0)) * STEP
    assert any(lv >= 2 and when < at_15 for lv, when in flood["RIVER-1"]), flood["RIVER-1"]
    # (4) Nothing for the retired gauge after the change.
    assert all(when < START + K * STEP for _, when in flood["RIVER-2"])

    # The same run with the whole reload at the change gives the same alerts.
    conn.execute("DELETE FROM alert_events; DELETE FROM notification_outbox; "
                 "DELETE FROM alerts; DELETE FROM engine_state_rows; DELETE FROM engine_state")
    conn.execute("UPDATE devices SET status = 'retired' WHERE device_id = 'WL-3'")
    conn.execute("UPDATE devices SET status = 'active' WHERE device_id = 'WL-2'")
    conn.execute("UPDATE engine_rules SET params = %s WHERE scope_id = 'RIVER-1'", (RULE % 15,))
    engine = Engine(db_url)
    try:
        _replay(engine, 0, K)
        conn.execute("UPDATE devices SET status = 'active' WHERE device_id = 'WL-3'")
        conn.execute("UPDATE devices SET status = 'retired' WHERE device_id = 'WL-2'")
        conn.execute("UPDATE engine_rules SET params = %s WHERE scope_id = 'RIVER-1'",
                     (RULE % 14.5,))
        engine.load()
        _replay(engine, K, N)
    finally:
        engine.close()
    assert _events(conn) == got


def _assert_same_engine(a: Engine, b: Engine) -> None:
    sa, sb = a.setup, b.setup
    assert sa.channels == sb.channels and sa.params == sb.params
    assert sa.targets == sb.targets and sa.devices == sb.devices
    for name in ("family", "target", "fusion_k", "device", "row_in_group", "fusion_at_least"):
        assert np.array_equal(getattr(sa, name), getattr(sb, name)), name
    assert sa.p.keys() == sb.p.keys()
    for name in sa.p:
        assert np.array_equal(sa.p[name], sb.p[name], equal_nan=True), name
    assert all(np.array_equal(x, y) for x, y in zip(sa.neighbours, sb.neighbours, strict=True))
    # What the database holds, as each engine's snapshot says, and the saved state itself.
    for scope in engine_state.SCOPES:
        assert a.saved.arrays[scope].keys() == b.saved.arrays[scope].keys()
        for name, arr in a.saved.arrays[scope].items():
            assert np.array_equal(arr, b.saved.arrays[scope][name], equal_nan=True), name
    # A restart cuts the series channels whose readings arrived within the arrival overlap
    # back to before them and judges those readings again on its next step (b.redo,
    # alerts/engine/late_series.py); their memory is compared through the alerts of the whole
    # run below, the rest field by field.
    pending = {sb.channels[int(i)].channel_id for i in np.unique(b.redo.ch)}
    mine, theirs = _by_id(sa, a.state), _by_id(sb, b.state)
    assert pending <= mine.keys() and not a.redo.ch.size
    assert _same({k: v for k, v in mine.items() if k not in pending},
                 {k: v for k, v in theirs.items() if k not in pending})
    assert np.array_equal(a.state.emitted, b.state.emitted)
    # The restart also judges again the rain channels with readings in the overlap (their
    # sums unchanged, so nothing changes): a superset.
    assert set(a.rejudge.tolist()) <= set(b.rejudge.tolist()) and a.clock == b.clock
