"""Benchmark: what one registry change costs a running engine, against the size of the registry.

    .venv/bin/python -m bench.engine_registry_change [--registry 2000,10000] [--trials 5]

For each registry size, one fresh database with that many background devices (half rain
gauges, half crack meters, an hour of 10-minute data each, as bench/engine_latency.py) and a
wall-clock engine that has judged and saved them all. Then, `--trials` times each, the change
the issue names: one device added (a rain gauge with an hour of data) and another device's
rule changed (a channel-scope `engine_rules` row, as `geowarn engine rules-set` writes), and
the engine applying it:
- "incremental": the engine as shipped, `Engine.reload_if_changed()` (alerts/engine/
  registry_delta.py: only the changed channels' state read and memory refilled);
- "whole reload" (the baseline, in the same run, on the same database): `Engine.load()`, what
  every registry change cost before (setup rebuilt, every channel's state restored and every
  ring refilled from the readings store).
Timed: the engine thread's CPU (time.thread_time), its database backend's CPU (/proc) and
the wall clock, median over the trials; CPU counts the work whatever the machine's load.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine.service import Engine, EngineConfig
from bench.engine_latency import cpu_s, register
from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings


def change(conn: psycopg.Connection, k: int) -> None:
    """Registry change number k: a new rain gauge with an hour of data, and a changed rule of
    one existing background device's channel."""
    add_device(conn, DeviceSpec(f"NEW{k:04d}", kind="rain_gauge", hazard_id="HP-NEW",
                                reporting_interval_s=600))
    ids = [r[0] for r in conn.execute("SELECT channel_id FROM channels WHERE device_id = %s",
                                      (f"NEW{k:04d}",))]
    now = time.time()
    write_readings(conn, [(c, datetime.fromtimestamp(now - 3600 + j * 600, UTC), 0.2, 0)
                          for c in ids for j in range(6)])
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s ORDER BY 1 "
                       "LIMIT 1", (f"BG{2 * k + 1:05d}",)).fetchone()  # a crack meter
    assert row is not None
    conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES ('channel', %s, %s) "
                 "ON CONFLICT (scope, scope_id) DO UPDATE SET params = excluded.params, "
                 "updated_at = now()", (str(row[0]), Jsonb({"dwell_s": 600 + k})))


def timed(engine: Engine, apply: Any) -> dict[str, float]:
    backend = engine.conn.info.backend_pid
    c0, s0, t0 = time.thread_time(), cpu_s(backend), time.perf_counter()
    apply()
    return {"cpu": time.thread_time() - c0, "server": cpu_s(backend) - s0,
            "wall": time.perf_counter() - t0}


def run(admin: str, registry: int, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {"registry": registry}
    with fresh_database(admin, f"bench_registry_change_{os.getpid()}") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            register(conn, registry)
            engine = Engine(url, EngineConfig(clock="wall"))
            try:
                engine.step(periodic=True)  # judge and save every channel once
                got: dict[str, list[dict[str, float]]] = {"incremental": [], "whole": []}
                reloaded = []
                for k in range(2 * trials):
                    variant = "incremental" if k % 2 == 0 else "whole"
                    change(conn, k)
                    n_before = engine.setup.n
                    got[variant].append(timed(engine, engine.reload_if_changed
                                              if variant == "incremental" else engine.load))
                    if variant == "incremental":
                        reloaded.append(engine.setup.n - n_before)
                    engine.step(periodic=True)  # the new device judged and saved
                out["channels"] = engine.setup.n
            finally:
                engine.close()
        for variant, runs in got.items():
            out[variant] = {key: 1000.0 * float(np.median([r[key] for r in runs]))
                            for key in ("cpu", "server", "wall")}
        out["added"] = reloaded[0] if reloaded else 0
        out["load"] = os.getloadavg()[0]
        print(report(out), flush=True)  # before the database is dropped
    return out


def report(r: dict[str, Any]) -> str:
    inc, whole = r["incremental"], r["whole"]
    return (f"{r['registry']:,} devices ({r['channels']:,} channels), one device added and "
            f"one rule changed: incremental CPU {inc['cpu']:.0f} ms (backend "
            f"{inc['server']:.0f} ms), wall {inc['wall']:.0f} ms | whole reload (baseline) CPU "
            f"{whole['cpu']:.0f} ms (backend {whole['server']:.0f} ms), wall "
            f"{whole['wall']:.0f} ms | CPU ratio {inc['cpu'] / whole['cpu']:.3f}, wall ratio "
            f"{inc['wall'] / whole['wall']:.3f} (load average {r['load']:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="2000,10000",
                        help="background devices, one run per comma-separated count")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    for registry in (int(x) for x in args.registry.split(",")):
        run(args.admin_url, registry, args.trials)


if __name__ == "__main__":
    main()
