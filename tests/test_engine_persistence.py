"""The engine's incremental state persistence (alerts/engine/state.py) against a real database:
a step writes only the rows whose state changed, and an engine restarted from those rows
holds exactly the state a full save of the same moment gives; a changed registry or layout
maps what it can. Also the periodic step's server-side search for unjudged readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.engine import data as engine_data
from alerts.engine import state as engine_state
from alerts.engine.service import Engine
from alerts.engine.tick import EngineState
from alerts.engine.tick_setup import GROUPS
from devices.registry import DeviceSpec, add_device
from geowarn.errors import InvalidInput
from geowarn.readings import write_readings

START = datetime(2024, 7, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
N = 144  # one day of 10-minute samples


def differing(a: EngineState, b: EngineState) -> list[str]:
    """Names of the saved arrays that differ between two states (NaN equals NaN)."""
    sa, sb = a.saved_arrays(), b.saved_arrays()
    assert sa.keys() == sb.keys()
    return [n for n in sa if not np.array_equal(sa[n], sb[n], equal_nan=sa[n].dtype.kind == "f")]


def _register(conn: psycopg.Connection, rng: np.random.Generator) -> dict[str, int]:
    """Rain gauges, crack meters and water levels on a few hazard points and sites, with a
    storm, an accelerating slope, a rising river, and a gauge that falls silent."""
    for i in range(6):
        add_device(conn, DeviceSpec(f"RG{i}", kind="rain_gauge", hazard_id=f"HP{i % 3}",
                                    reporting_interval_s=600))
        add_device(conn, DeviceSpec(f"CM{i}", kind="crack_meter", hazard_id=f"HP{i % 3}",
                                    reporting_interval_s=600))
        add_device(conn, DeviceSpec(f"WL{i}", kind="water_level", site_id=f"RIVER{i % 2}",
                                    reporting_interval_s=600))
    conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('kind', "
                 "'water_level', '{\"warning_m\": 15, \"guaranteed_m\": 16, "
                 "\"historical_max_m\": 18}'), ('kind', 'crack_meter', "
                 "'{\"reference_rate_mm_per_day\": 2.0, \"velocity_mm_per_day\": "
                 "[20, 40, 80, 160]}')")
    ids: dict[str, int] = dict(conn.execute(
        "SELECT device_id || '.' || channel, channel_id FROM channels").fetchall())
    minutes = np.arange(N) * 10.0
    rows = []
    for i in range(6):
        rain = np.where(rng.random(N) < 0.2, rng.choice([0.2, 0.5, 1.0], N), 0.0)
        rain[60 + 5 * i: 72 + 5 * i] += 5.0 + i  # storms at different times
        crack = 5.0 + rng.uniform(0.001, 0.003) * minutes + rng.normal(0, 0.02, N)
        if i == 0:
            crack += 3.0 * np.log(1500.0 / np.maximum(1500.0 - minutes, 1.0))
        stage = 12.0 + np.clip(np.arange(N) - 40 - 10 * i, 0, None) * 0.06
        for k in range(N):
            ts = START + k * STEP
            if i == 5 and k > 50:
                continue  # RG5, CM5 and WL5 fall silent
            rows += [(ids[f"RG{i}.rain"], ts, float(round(rain[k], 1)), 0),
                     (ids[f"CM{i}.opening"], ts, float(round(crack[k], 3)), 0),
                     (ids[f"WL{i}.level"], ts, float(round(stage[k], 3)), 0)]
    write_readings(conn, rows)
    return ids


def _state_rows(conn: psycopg.Connection, engine: str) -> dict[tuple[str, str], bytes]:
    return {(s, k): bytes(p) for s, k, p in conn.execute(
        "SELECT scope, key, packed FROM engine_state_rows WHERE engine = %s", (engine,))}


def test_incremental_saves_restart_to_exactly_the_full_save(db_url: str,
                                                            conn: psycopg.Connection) -> None:
    ids = _register(conn, np.random.default_rng(7))
    live = Engine(db_url)  # saves incrementally, as the service does
    written: list[dict[str, int]] = []
    try:
        for k in range(N):
            live.step(now=(START + k * STEP).timestamp(), periodic=k % 6 == 0)
            written.append(live.saved.written)
            # A non-periodic step compares only the rows its tick says it touched: nothing
            # it changed may be left unsaved.
            assert all(r.size == 0 for r in engine_state.unsaved(live.state,
                                                                 live.saved).values()), k
            if k % 36 != 35:
                continue
            # Restart from the incremental rows; separately, a full save of the same moment
            # under another name, and a restart from that.
            with live.conn.transaction():
                engine_state.save(live.conn, "full", live.setup, live.state, live.clock)
            restarted = Engine(db_url)
            from_full = engine_state.restore(restarted.conn, "full", restarted.setup)
            try:
                assert differing(restarted.state, live.state) == []
                assert differing(from_full.state, live.state) == []
                assert restarted.clock == live.clock == from_full.clock
                # Row for row: what the incremental saves left is what a full save writes;
                # the rows they never wrote still hold their initial state.
                inc, full = _state_rows(conn, "engine"), _state_rows(conn, "full")
                assert inc.items() <= full.items()
                initial = EngineState.initial(live.setup)
                for (scope, key), packed in full.items() - inc.items():
                    row = engine_state.keys(live.setup, scope).index(key)
                    assert packed == engine_state.packed_rows(initial, scope, [row])[0]
                # The refilled rings hold what the live ones hold, except for the series
                # channels whose readings arrived within the arrival overlap: a restart cuts
                # those back and judges the readings again on its next step (restarted.redo,
                # alerts/engine/late_series.py); they must be among the live ring's.
                setup = live.setup
                pending: dict[str, set[int]] = {g: set() for g in live.state.rings}
                for c in np.unique(restarted.redo.ch).tolist():
                    g = GROUPS[int(setup.group_of[c])]
                    pending[g].add(int(setup.row_in_group[c]))
                    redo_t = restarted.redo.t[restarted.redo.ch == c]
                    live_t = live.state.rings[g].last(np.array([setup.row_in_group[c]]),
                                                      live.state.rings[g].k)[0]
                    assert set(redo_t.tolist()) <= set(live_t[np.isfinite(live_t)].tolist())
                for g, ring in live.state.rings.items():
                    other = restarted.state.rings[g]  # refilled: fewer old samples, same last K
                    rows = np.array([r for r in range(ring.total.size) if r not in pending[g]],
                                    np.int64)
                    t1, v1, q1 = ring.last(rows, ring.k)
                    t2, v2, q2 = other.last(rows, ring.k)
                    assert np.array_equal(t1, t2, equal_nan=True), g
                    assert np.array_equal(v1, v2, equal_nan=True), g
                    assert np.array_equal(q1, q2), g
            finally:
                restarted.close()
    finally:
        live.close()
    # The first save writes every row; later steps only what changed: once RG5, CM5 and WL5
    # are silent, a step writes the reporting channels' rows (their watermarks move) and none
    # of the silent ones nor of the channels that never report (rain totals).
    reporting = sum(1 for k in ids if k.endswith((".rain", ".opening", ".level")))
    assert written[0]["channel"] == live.setup.n > reporting
    later = [w["channel"] for w in written[60:]]
    assert max(later) <= reporting - 3 and min(later) >= 1
    assert sum(w["target"] for w in written[60:]) < len(written[60:]) * len(live.setup.targets)


def test_quiet_steps_write_nothing_and_a_crash_keeps_the_committed_rows(
        db_url: str, conn: psycopg.Connection) -> None:
    _register(conn, np.random.default_rng(8))
    engine = Engine(db_url)
    try:
        last = (START + (N - 1) * STEP).timestamp()
        engine.step(now=last)
        before = _state_rows(conn, "engine")
        engine.step(now=last)  # nothing new, same clock: no row changes
        assert engine.saved.written == {"channel": 0, "target": 0, "device": 0, "disp": 0}
        assert _state_rows(conn, "engine") == before
    finally:
        engine.close()


def test_registry_and_layout_changes(db_url: str, conn: psycopg.Connection) -> None:
    ids = _register(conn, np.random.default_rng(9))
    engine = Engine(db_url)
    try:
        engine.step(now=(START + 80 * STEP).timestamp())
    finally:
        engine.close()
    keys = {k for s, k in _state_rows(conn, "engine") if s == "channel"}
    assert str(ids["RG1.rain"]) in keys
    # A retired device's rows go at the next load; a new one starts fresh.
    conn.execute("UPDATE devices SET status = 'retired', updated_at = now() "
                 "WHERE device_id = 'RG1'")
    add_device(conn, DeviceSpec("RG9", kind="rain_gauge", hazard_id="HP9"))
    engine = Engine(db_url)
    try:
        keys = {k for s, k in _state_rows(conn, "engine") if s == "channel"}
        assert str(ids["RG1.rain"]) not in keys
        new = engine.setup.index[conn.execute(
            "SELECT channel_id FROM channels WHERE device_id = 'RG9' AND channel = 'rain'"
        ).fetchone()[0]]  # type: ignore[index]
        assert np.isnan(engine.state.watermark[new])
        kept = engine.setup.index[ids["WL0.level"]]
        assert engine.state.watermark[kept] == (START + 80 * STEP).timestamp()
    finally:
        engine.close()
    # Rows saved by an engine that kept one field fewer (the last one): the other fields are
    # mapped by name, the missing one starts fresh, and the next save rewrites every row in
    # the current layout.
    layout = conn.execute("SELECT layout FROM engine_state").fetchone()[0]  # type: ignore[index]
    name, dtype, shape = layout["channel"][-1]
    size = np.dtype((np.dtype(dtype), tuple(shape))).itemsize
    conn.execute("UPDATE engine_state SET layout = %s", (Jsonb(
        {**layout, "channel": layout["channel"][:-1]}),))
    conn.execute("UPDATE engine_state_rows SET packed = substring(packed FROM 1 FOR "
                 "length(packed) - %s) WHERE scope = 'channel'", (size,))
    engine = Engine(db_url)
    try:
        fresh = EngineState.initial(engine.setup)
        assert differing(engine.state, fresh) != [] and name not in differing(engine.state,
                                                                              fresh)
        kept = engine.setup.index[ids["WL0.level"]]
        assert engine.state.watermark[kept] == (START + 80 * STEP).timestamp()
        assert engine.saved.rewrite
        engine.step(now=(START + 81 * STEP).timestamp())
        assert engine.saved.written["channel"] == engine.setup.n
    finally:
        engine.close()
    # Rows that do not fit their layout are refused with a clear error.
    conn.execute("UPDATE engine_state_rows SET packed = '\\x00' WHERE scope = 'target'")
    with pytest.raises(InvalidInput, match="do not match their layout"):
        Engine(db_url)


def test_periodic_search_finds_exactly_the_unjudged_channels(db_url: str,
                                                             conn: psycopg.Connection) -> None:
    ids = _register(conn, np.random.default_rng(10))
    engine = Engine(db_url)
    try:
        t = (START + 30 * STEP).timestamp()
        engine.step(now=t)
        with engine.conn.transaction():
            assert engine_data.channels_with_new_readings(
                engine.conn, "engine", engine.setup, t) == []
            later = engine_data.channels_with_new_readings(
                engine.conn, "engine", engine.setup, t + 600)
        # Every channel with data has a reading 10 minutes later (none is silent yet).
        assert sorted(engine.setup.channels[i].channel_id for i in later) == sorted(
            ids[k] for k in ids if k.endswith((".rain", ".opening", ".level")))
        # The same as comparing with the in-memory watermarks.
        loaded = engine_data.load_samples(engine.conn, engine.setup, engine.state, t + 600)
        assert sorted(set(loaded.ch.tolist())) == later
    finally:
        engine.close()
