"""Benchmark: publish-to-alert latency of the warning engine against the size of the registry.

    .venv/bin/python -m bench.engine_latency [--registry 2000,10000,30000] [--trials 200]
        [--no-baseline]

For each registry size, one fresh database with that many background devices (half rain
gauges, half crack meters, an hour of 10-minute data each: 1.5 channels per device) plus a
probe, a water-level gauge whose threshold rule (dwell 0) makes every reading a level change.
The real path: Mosquitto with GeoWarn's configuration, a `geowarn ingest` gateway process,
PostgreSQL, and an in-process engine service (wall clock, woken by NOTIFY, periodic tick
every 5 s so that periodic work competes with the trials). Latency = the engine's commit of
the probe's alert event minus the publish; p50 / p99 / max over `--trials` level changes.

Two engines in the same run, on the same database, broker and gateway, one after the other:
- "incremental": the engine as shipped (a step saves only the state rows that changed);
- "whole-state" (the baseline): the same engine saving what a step saved before the state
  was saved incrementally (the whole state as one numpy .npz blob with every channel id,
  target and device, rewritten on every step), and searching the whole registry for
  readings on every periodic tick (before, every periodic tick loaded every channel).
`--no-baseline` runs the shipped engine only (half the time). Background devices do not
fall silent during the run (offline_after_s 30 days for their kinds). The first line per
registry size gives publish-to-alert p50 / p99, the CPU per step and per message, and how
long the run took.
Also timed: one search of the whole registry for un-notified readings (the shipped service
runs it every `search_period_s`, 300 s).

CPU time beside the wall clock, because the machine is shared and wall-clock percentiles
follow its load: per notified step the engine thread's CPU (time.thread_time) and its
database backend's (/proc), and the gateway process's CPU per probe message. These count
the work a step does, so they show whether it grows with the registry whatever the load.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import operator
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import data as engine_data
from alerts.engine import state as engine_state
from alerts.engine.service import Engine, EngineConfig, Service
from alerts.engine.tick import EngineState, Setup
from bench.ingest import start_gateway
from bench.store import LOCAL_ADMIN, fresh_database
from geowarn.embedded import free_port, start_mosquitto
from ingest.broker_config import gateway_broker_config
from simulators.publisher import Publisher

PERIOD_S = 5.0
WARMUP = 5
STAMP_STEP_S = 0.01


def register(conn: psycopg.Connection, registry: int) -> None:
    """`registry` background devices with an hour of data, and the probe."""
    from devices.registry import DeviceSpec, add_device
    from geowarn.readings import write_readings

    with conn.transaction():  # one commit for the whole registry
        for i in range(registry):
            kind = "rain_gauge" if i % 2 == 0 else "crack_meter"
            add_device(conn, DeviceSpec(f"BG{i:05d}", kind=kind, hazard_id=f"HP{i % 200}",
                                        reporting_interval_s=600))
        add_device(conn, DeviceSpec("PROBE", kind="water_level", site_id="PROBE-SITE"))
    conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES "
                 "('site', 'PROBE-SITE', %s)", (Jsonb({
                     "method": "threshold", "thresholds": [10, 20, 30, 40], "dwell_s": 0,
                     "clear_ratio": 1.0, "hampel_k": 1e9}),))
    # No background device falls silent during the run (by default 30 min after its last
    # reading): at 30,000 devices that is one step of 30,000 maintenance alerts, a storm
    # worth its own benchmark, not a level change's latency.
    for kind in ("rain_gauge", "crack_meter"):
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES "
                     "('kind', %s, %s)", (kind, Jsonb({"offline_after_s": 30 * 86400})))
    ids = [r[0] for r in conn.execute("SELECT channel_id FROM channels c JOIN devices d "
                                      "USING (device_id) WHERE d.device_id LIKE 'BG%'")]
    now = time.time()
    rows = [(cid, datetime.fromtimestamp(now - 3600 + k * 600, UTC), 0.0, 0)
            for cid in ids for k in range(6)]
    write_readings(conn, rows)


def whole_state_save(conn: psycopg.Connection, engine: str, setup: Setup,
                     state: EngineState, clock: float, previous: Any = None,
                     touched: Any = None) -> Any:
    """The baseline's save: what a step saved before (the whole state as one numpy .npz blob
    with every channel id, target and device, one row rewritten per step)."""
    buf = io.BytesIO()
    np.savez(buf, **state.saved_arrays())  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO bench_whole_state (engine, clock, channel_ids, targets, devices, arrays) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (engine) DO UPDATE SET "
        "clock = excluded.clock, channel_ids = excluded.channel_ids, "
        "targets = excluded.targets, devices = excluded.devices, arrays = excluded.arrays",
        (engine, clock, [c.channel_id for c in setup.channels],
         [f"{t}:{i}" for t, i in setup.targets], list(setup.devices), buf.getvalue()))
    return previous


def _whole_state(step: Callable[..., Any]) -> Callable[..., Any]:
    def whole_state_step(self: Engine, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("channel_ids") == set():
            kwargs["channel_ids"] = None  # every periodic tick searches the registry
        return step(self, *args, **kwargs)
    return whole_state_step


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) a process has used: /proc/PID/stat, clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trials(url: str, port: int, n: int, variant: str, sent_before: int, gateway_pid: int
           ) -> tuple[list[float], dict[str, float]]:
    """Latencies (s) of n probe level changes through the running gateway, and CPU time
    (load-independent: what the work costs, not how long it waited for a core): the engine
    thread's per notified step (p50, p99), the engine's database backend per notified step
    (mean), the gateway process per probe message (mean). The probe alternates 25/5 (level
    2/0) continuing from the `sent_before` messages already sent."""
    committed: dict[int, float] = {}
    began: dict[int, float] = {}  # when the step that committed it began
    seen = threading.Condition()
    original = Engine.step
    inner = _whole_state(original) if variant == "whole-state" else original
    step_cpu: list[float] = []
    server_cpu: list[float] = []
    measuring = threading.Event()
    gc_pauses: list[float] = []  # the collector's full (generation 2) passes while measuring
    gc_started = [0.0]

    def gc_timer(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2 or not measuring.is_set():
            return
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_started[0])

    def timed_step(self: Engine, *args: Any, **kwargs: Any) -> Any:
        notified = bool(kwargs.get("channel_ids")) and not kwargs.get("periodic")
        backend = self.conn.info.backend_pid
        c0, s0, t0 = time.thread_time(), cpu_s(backend), time.perf_counter()
        events = inner(self, *args, **kwargs)  # returns after its commit
        now = time.perf_counter()
        if notified and measuring.is_set():
            step_cpu.append(time.thread_time() - c0)
            server_cpu.append(cpu_s(backend) - s0)
        with seen:
            for e in events:
                if e.target_id == "PROBE-SITE" and e.hazard_kind == "water_level":
                    committed.setdefault(round(e.data_time.timestamp() * 1000), now)
                    began.setdefault(round(e.data_time.timestamp() * 1000), t0)
            seen.notify_all()
        return events

    Engine.step = timed_step  # type: ignore[method-assign]
    gc.callbacks.append(gc_timer)
    real_save = engine_state.save
    if variant == "whole-state":
        engine_state.save = whole_state_save
    stop = threading.Event()
    service = Service(url, EngineConfig(clock="wall", period_s=PERIOD_S))
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    lat, to_step = [], []
    try:
        # Trials start once the engine has loaded and caught up (a 30,000-device registry
        # on a loaded machine takes a minute or more), so none waits for the start.
        if not service.caught_up.wait(900):
            raise RuntimeError("engine did not start")
        pub = Publisher("127.0.0.1", port, client_id=f"bench-engine-{variant}")
        # Distinct data times 10 ms apart, in the past (the wall-clock engine judges readings
        # up to now) and after those of the previous variant (older ones would be replays).
        base = int((time.time() - (n + WARMUP) * STAMP_STEP_S - 1.0) * 1000)
        for i in range(n + WARMUP):
            if i == WARMUP:
                measuring.set()
                gw0 = cpu_s(gateway_pid)
            stamp = base + i * round(STAMP_STEP_S * 1000)
            value = 25.0 if (sent_before + i) % 2 == 0 else 5.0
            payload = json.dumps({"seq": sent_before + i + 1, "readings": [
                {"ts": stamp, "channel": "level", "value": value}]}).encode()
            sent = time.perf_counter()
            pub.publish("gw/v1/PROBE/telemetry", payload)
            with seen:
                if not seen.wait_for(partial(operator.contains, committed, stamp), timeout=60):
                    raise RuntimeError(f"no alert event for probe message {i} ({variant})")
            if i >= WARMUP:  # the first few warm the connections and caches
                lat.append(committed[stamp] - sent)
                to_step.append(began[stamp] - sent)
        gateway_cpu = (cpu_s(gateway_pid) - gw0) / max(n, 1)
        pub.close()
    finally:
        stop.set()
        runner.join(60)
        Engine.step = original  # type: ignore[method-assign]
        engine_state.save = real_save
        gc.callbacks.remove(gc_timer)
    steps = np.array(step_cpu) * 1000.0
    waits = np.array(to_step) * 1000.0
    return lat, {"to_step_p50": float(np.percentile(waits, 50)),
                 "to_step_p99": float(np.percentile(waits, 99)),
                 "in_step_p50": float(np.percentile(np.array(lat) * 1000.0 - waits, 50)),
                 "gc_full_passes": len(gc_pauses),
                 "gc_full_max_ms": 1000.0 * max(gc_pauses, default=0.0),
"engine_step_cpu_p50": float(np.percentile(steps, 50)),
                 "engine_step_cpu_p99": float(np.percentile(steps, 99)),
                 "server_step_cpu_mean": float(np.mean(server_cpu)) * 1000.0,
                 "gateway_msg_cpu_mean": gateway_cpu * 1000.0, "steps": int(steps.size)}


def search_ms(url: str) -> float:
    """One search of the whole registry for unjudged readings."""
    engine = Engine(url, EngineConfig(clock="wall"))
    try:
        started = time.perf_counter()
        with engine.conn.transaction():
            engine_data.channels_with_new_readings(engine.conn, "engine", engine.setup,
                                                   time.time())
        return (time.perf_counter() - started) * 1000.0
    finally:
        engine.close()


def run(admin: str, registry: int, n: int,
        variants: tuple[str, ...] = ("incremental", "whole-state")) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {"registry": registry}
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(admin, f"bench_engine_latency_{os.getpid()}") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            register(conn, registry)
            conn.execute("CREATE TABLE bench_whole_state (engine text PRIMARY KEY, clock float8, "
                         "channel_ids int4[], targets text[], devices text[], arrays bytea)")
            out["channels"] = conn.execute("SELECT count(*) FROM channels").fetchone()[0]  # type: ignore[index]
        port = free_port()
        broker = start_mosquitto(gateway_broker_config(), port, Path(tmp) / "mq")
        gateway = start_gateway(url, port, Path(tmp) / "gw.log")
        try:
            for k, variant in enumerate(variants):
                lat, cpu = trials(url, port, n, variant, k * (n + WARMUP), gateway.pid)
                ms = np.array(lat) * 1000.0
                out[variant] = {"p50": float(np.percentile(ms, 50)),
                                "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
                                "trials": int(ms.size), **cpu}
                print(f"  {registry:,} devices, {variant}: {out[variant]}", flush=True)
        finally:
            gateway.terminate()
            gateway.wait(30)
            broker.terminate()
            broker.wait(10)
        out["search_ms"] = search_ms(url)
    out["elapsed_s"] = time.perf_counter() - started
    return out


def report(r: dict[str, Any]) -> str:
    inc = r["incremental"]
    head = (f"{r['registry']:,} devices ({r['channels']:,} channels): publish-to-alert "
            f"p50 {inc['p50']:.1f} ms, p99 {inc['p99']:.1f} ms over {inc['trials']} level "
            f"changes; CPU per notified step {inc['engine_step_cpu_p50']:.1f} ms (engine), "
            f"{inc['server_step_cpu_mean']:.1f} ms (its backend), gateway "
            f"{inc['gateway_msg_cpu_mean']:.1f} ms per message; publish to the step's start "
            f"p50 {inc['to_step_p50']:.1f} / p99 {inc['to_step_p99']:.1f} ms, the step p50 "
            f"{inc['in_step_p50']:.1f} ms; {inc['gc_full_passes']} full garbage collections "
            f"(longest {inc['gc_full_max_ms']:.0f} ms); run {r['elapsed_s']:.0f} s, "
            f"load average {os.getloadavg()[0]:.1f}\n")
    if "whole-state" not in r:
        return head
    whole = r["whole-state"]
    detail = (f"  {r['registry']:,} devices ({r['channels']:,} channels), {inc['trials']} level "
              f"changes each: incremental p50 {inc['p50']:.1f} ms, p99 {inc['p99']:.1f} ms, max "
              f"{inc['max']:.1f} ms | whole-state baseline p50 {whole['p50']:.1f} ms, p99 "
              f"{whole['p99']:.1f} ms, max {whole['max']:.1f} ms | p99 ratio "
              f"{inc['p99'] / whole['p99']:.2f} | registry search {r['search_ms']:.0f} ms | CPU "
              f"per notified step, incremental: engine p50 {inc['engine_step_cpu_p50']:.1f} ms, "
              f"p99 {inc['engine_step_cpu_p99']:.1f} ms, its database backend "
              f"{inc['server_step_cpu_mean']:.1f} ms; whole-state: engine p50 "
              f"{whole['engine_step_cpu_p50']:.1f} ms, backend {whole['server_step_cpu_mean']:.1f}"
              f" ms; gateway per message {inc['gateway_msg_cpu_mean']:.1f} ms "
              f"(load average {os.getloadavg()[0]:.1f})")
    return head + detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="2000,10000,30000",
                        help="background devices, one run per comma-separated count")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--no-baseline", action="store_true",
                        help="run the shipped engine only (not the whole-state baseline)")
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    for registry in (int(x) for x in args.registry.split(",")):
        variants = ("incremental",) if args.no_baseline else ("incremental", "whole-state")
        print(report(run(args.admin_url, registry, args.trials, variants)), flush=True)


if __name__ == "__main__":
    main()
