"""The whole Lamosano record (Nava et al. 2023, ../shared/data) replayed through broker,
gateway, store and engine in data time, timed; a bench, not a test (it takes minutes).

    .venv/bin/python -m bench.replay_lamosano [--admin-url URL]

In one run on this machine:
1. End to end: a fresh database, Mosquitto with the shipped gateway configuration, a
   `geowarn ingest` process, and `geowarn replay` (a separate process) publishing the hourly
   rain gauge (2015-03-30 .. 2020-12-31, 50,497 readings) and the 11-day p5 displacement point
   (162 readings) merged in data time as fast as the broker acknowledges, then judging them
   with its data-clock engine (`--engine`). Timed: the whole command, and the publish and
   engine parts it reports.
2. Checked from the store: every reading stored exactly once, no failure forecast in any
   event's evidence, no orange/red deformation warning; the alert changes are listed.
3. Baseline, the same run: the engine's pure tick judging the same series in memory (no
   database, no broker; simulators/compare_rules.py), the floor of judging six years sample
   by sample. Reported as the ratio end to end / in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.ingest import start_gateway
from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port, start_mosquitto
from ingest.broker_config import gateway_broker_config
from simulators import compare_rules
from simulators.recorded import SeriesMapping, read_series
from simulators.replay import StoreChecks, store_checks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAIN = DATA / "lamosano_rain_hourly.csv"
CREEP = DATA / "lamosano_p5_displacement_11day.csv"
DEVICES = (("RG-LAMO", "rain_gauge", 3600), ("GNSS-LAMO-P5", "gnss", 11 * 86400))


def replay_command(port: int, engine_step: str) -> list[str]:
    return [sys.executable, "-m", "geowarn", "replay", str(RAIN), str(CREEP),
            "--device", "RG-LAMO", "--device", "GNSS-LAMO-P5", "--channel", "rain=rain",
            "--channel", "p5=disp_x", "--tz", "+01:00", "--url", f"mqtt://127.0.0.1:{port}",
            "--readings-per-message", "500", "--engine", "--engine-step", engine_step,
            "--progress", "--wait", "600"]


def end_to_end(url: str, tmp: Path, engine_step: str) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as conn:
        for device_id, kind, interval in DEVICES:
            add_device(conn, DeviceSpec(device_id=device_id, kind=kind,
                                        reporting_interval_s=interval))
    port = free_port()
    broker = start_mosquitto(gateway_broker_config(), port, tmp / "mq")
    # A record from 2015: the gateway's backlog window must take it.
    gateway = start_gateway(url, port, tmp / "gw.log", name="bench-lamosano",
                            max_backlog_days=20000, timeout=60)
    try:
        env = {**os.environ, "GEOWARN_DATABASE_URL": url, "GEOWARN_MAX_BACKLOG_DAYS": "20000"}
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(replay_command(port, engine_step), env=env, capture_output=True,
                              text=True, check=False)
        total = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    finally:
        for proc in (gateway, broker):
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    if done.returncode != 0:
        raise RuntimeError(f"replay failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    published = re.search(r"published (\d+) readings in \d+ messages \((\d+) readings/s\)",
                          done.stderr)
    engine = re.search(r"(\d+) level changes in ([\d.]+)s \((\d+) steps", done.stderr)
    with psycopg.connect(url) as conn:
        checks = store_checks(conn)
        peaks = conn.execute("SELECT target_id, hazard_kind, count(*), max(peak_level) "
                             "FROM alerts GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        history = conn.execute(
            "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time FROM alert_events "
            "e JOIN alerts a USING (alert_id) ORDER BY e.data_time, e.event_id").fetchall()
    return {"total_s": total, "cpu_s": cpu, "published": int(published[1]) if published else None,
            "publish_rate": int(published[2]) if published else None,
            "engine_changes": int(engine[1]) if engine else None,
            "engine_s": float(engine[2]) if engine else None,
            "engine_steps": int(engine[3]) if engine else None,
            "checks": checks, "alerts": peaks, "history": history,
            "progress_shown": "replay:" in done.stderr and "data 20" in done.stderr,
            "summary": done.stdout}


def in_memory(url: str) -> dict[str, float]:
    """The same series judged by the pure tick, no database or broker in the loop."""
    rain = read_series(RAIN, SeriesMapping(channels={"rain": "rain"},
                                           time_format="%d/%m/%Y %H:%M", timezone="+01:00"))
    creep = read_series(CREEP, SeriesMapping(channels={"p5": "disp_x"}, timezone="+01:00"))
    with psycopg.connect(url) as conn:
        inp = compare_rules.channels_and_samples(conn, [("RG-LAMO", rain),
                                                        ("GNSS-LAMO-P5", creep)])
    t0 = time.perf_counter()
    alerts = compare_rules.judge(inp, {}, 6 * 3600.0)
    return {"s": time.perf_counter() - t0, "readings": float(inp.samples.t.size),
            "alerts": float(len(alerts))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--admin-url", default=LOCAL_ADMIN)
    ap.add_argument("--engine-step", default="7d",
                    help="`geowarn replay --engine-step`: data time per engine step, or 'all' "
                    "(one step over everything, as before batching); default 7d")
    ap.add_argument("--history-out", type=Path,
                    help="write the alert history (data time) as JSON, to compare two runs")
    args = ap.parse_args()
    if not RAIN.exists():
        print(f"{RAIN} is missing: the shared folder lies beside the repository",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(args.admin_url, f"bench_lamosano_{os.getpid()}") as url:
        e2e = end_to_end(url, Path(tmp), args.engine_step)
        base = in_memory(url)
    print(e2e["summary"])
    checks = e2e["checks"]
    assert isinstance(checks, StoreChecks)
    print(f"end to end: {e2e['total_s']:.1f} s, CPU of the replay process "
          f"{e2e['cpu_s']:.1f} s (publish {e2e['published']} readings at "
          f"{e2e['publish_rate']} readings/s; engine {e2e['engine_s']} s in "
          f"{e2e['engine_steps']} steps of {args.engine_step}, {e2e['engine_changes']} "
          "level changes)")
    print(f"stored (rows, distinct channel+time): {checks.rows}, {checks.distinct}; "
          f"forecasts: {checks.forecasts}; orange/red deformation events: "
          f"{checks.severe_deformation}; progress shown: {e2e['progress_shown']}")
    if args.history_out:
        args.history_out.write_text(json.dumps(e2e["history"], default=str, indent=0))
    print(f"alerts (target, kind, count, peak level): {e2e['alerts']}")
    print(f"baseline, pure tick in memory: {base['s']:.1f} s for {base['readings']:.0f} "
          f"readings ({base['alerts']:.0f} alerts)")
    print(f"ratio end to end / in memory: {float(str(e2e['total_s'])) / base['s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
