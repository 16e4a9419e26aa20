"""Late GNSS solutions through the real database: a station's buffered solutions, stored two
hours after its radio link came back (live reports first), are fetched by arrival and judged
again from the stored readings of the span (alerts/engine/disp_late.py, the service's
`load_spans`): the engine ends with the displacement state, level and forecast of an engine
that received every solution in order, and the deformation alert's level."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from alerts.engine import disp_late
from alerts.engine.service import Engine, EngineConfig
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from simulators.displacement_scenarios import HOUR, accelerating

CONFIG = EngineConfig(name="engine", clock="data", quiet_s=1000 * 3600.0)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(round(float(seconds)), UTC)


def _station(conn: psycopg.Connection) -> int:
    add_device(conn, DeviceSpec("GN-L", kind="gnss", reporting_interval_s=1800))
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = 'GN-L' ORDER BY "
                       "channel_id LIMIT 1").fetchone()
    assert row is not None
    return int(row[0])


def _run(url: str, t: np.ndarray, v: np.ndarray, outage: tuple[float, float] | None
         ) -> tuple[Engine, list[tuple[object, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cid = _station(conn)
        engine = Engine(url, CONFIG)

        def write(sel: np.ndarray) -> None:
            write_readings(conn, [(cid, _ts(a), float(b), 0) for a, b in
                                  zip(t[sel], v[sel], strict=True)])

        if outage is None:
            write(np.ones(t.size, bool))
            engine.step(now=float(t.max()) + 30.0, periodic=True)
        else:
            a, b = outage
            write(t < a)
            engine.step(now=a, periodic=True)
            for hour in np.arange(b, t.max() + HOUR, HOUR):
                if hour == b + 2 * HOUR:
                    write((t >= a) & (t < b))  # the buffered solutions
                write((t >= hour) & (t < hour + HOUR))
                engine.step(now=min(hour + HOUR, float(t.max()) + 30.0), periodic=True)
        levels = conn.execute(
            "SELECT a.level FROM alerts a WHERE a.hazard_kind = 'deformation' "
            "ORDER BY a.alert_id").fetchall()
        return engine, levels


@pytest.mark.timeout(1800)
def test_a_gnss_backlog_through_the_store_ends_as_the_in_order_engine(
        db_url: str, second_db: str) -> None:
    s = accelerating(5, v0_mm_day=1.0, pre_days=10, tert_days=6, noise_mm=1.5, step_s=1800,
                     end_before_s=6 * HOUR)
    t = np.round(s.t)
    b = float(np.floor(t.max() / HOUR) * HOUR) - 30 * HOUR
    live, live_levels = _run(db_url, t, s.v, None)
    late, late_levels = _run(second_db, t, s.v, (b - 6 * HOUR, b))
    try:
        da, db = live.state.disp, late.state.disp
        assert da is not None and db is not None
        assert int(live.state.level.max()) >= 3  # the station accelerates into orange/red
        for name in ("vel", "vel_se", "fc", "accel_since", "established", "v_ref"):
            np.testing.assert_array_equal(getattr(da, name), getattr(db, name), err_msg=name)
        np.testing.assert_array_equal(live.state.level, late.state.level)
        assert disp_late.memory(late.state).ignored.sum() == 0  # judged again, not left out
        assert live_levels[-1:] == late_levels[-1:]
    finally:
        live.close()
        late.close()
