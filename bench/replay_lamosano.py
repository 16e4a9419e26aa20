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
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port, start_mosquitto
from ingest.broker_config import gateway_broker_config
from simulators import compare_rules
from simulators.recorded import SeriesMapping, read_series

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAIN = DATA / "lamosano_rain_hourly.csv"
CREEP = DATA / "lamosano_p5_displacement_11day.csv"
DEVICES = (("RG-LAMO", "rain_gauge", 3600), ("GNSS-LAMO-P5", "gnss", 11 * 86400))


def replay_command(port: int) -> list[str]:
    return [sys.executable, "-m", "geowarn", "replay", str(RAIN), str(CREEP),
            "--device", "RG-LAMO", "--device", "GNSS-LAMO-P5", "--channel", "rain=rain",
            "--channel", "p5=disp_x", "--tz", "+01:00", "--url", f"mqtt://127.0.0.1:{port}",
            "--readings-per-message", "500", "--engine", "--progress", "--wait", "600"]


def start_gateway(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """A `geowarn ingest` process whose backlog window takes a record from 2015."""
    env = {**os.environ, "GEOWARN_DATABASE_URL": url, "GEOWARN_MQTT_URL":
           f"mqtt://127.0.0.1:{port}", "GEOWARN_GATEWAY_NAME": "bench-lamosano",
           "GEOWARN_MAX_BACKLOG_DAYS": "20000"}
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "ingest"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "subscribed to" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("gateway did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.05)  # the gateway logs when it listens; nothing else to wait on
    return proc


def end_to_end(url: str, tmp: Path) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as conn:
        for device_id, kind, interval in DEVICES:
            add_device(conn, DeviceSpec(device_id=device_id, kind=kind,
                                        reporting_interval_s=interval))
    port = free_port()
    broker = start_mosquitto(gateway_broker_config(), port, tmp / "mq")
    gateway = start_gateway(url, port, tmp / "gw.log")
    try:
        env = {**os.environ, "GEOWARN_DATABASE_URL": url, "GEOWARN_MAX_BACKLOG_DAYS": "20000"}
        t0 = time.perf_counter()
        done = subprocess.run(replay_command(port), env=env, capture_output=True, text=True,
                              check=False)
        total = time.perf_counter() - t0
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
    engine = re.search(r"(\d+) level changes in ([\d.]+)s", done.stderr)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT (channel_id, ts)) "
                              "FROM readings").fetchone()
        forecasts = conn.execute(
            "SELECT count(*) FROM alert_events WHERE jsonb_path_exists(evidence, "
            "'strict $.**.forecast ? (@ != null)')").fetchone()
        severe = conn.execute(
            "SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id) "
            "WHERE a.hazard_kind = 'deformation' AND e.level >= 3").fetchone()
        peaks = conn.execute("SELECT target_id, hazard_kind, count(*), max(peak_level) "
                             "FROM alerts GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    return {"total_s": total, "published": int(published[1]) if published else None,
            "publish_rate": int(published[2]) if published else None,
            "engine_changes": int(engine[1]) if engine else None,
            "engine_s": float(engine[2]) if engine else None,
            "stored": stored, "forecasts": forecasts[0] if forecasts else None,
            "severe_deformation": severe[0] if severe else None, "alerts": peaks,
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
    args = ap.parse_args()
    if not RAIN.exists():
        print(f"{RAIN} is missing: the shared folder lies beside the repository",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(args.admin_url, f"bench_lamosano_{os.getpid()}") as url:
        e2e = end_to_end(url, Path(tmp))
        base = in_memory(url)
    print(e2e["summary"])
    print(f"end to end: {e2e['total_s']:.1f} s (publish {e2e['published']} readings at "
          f"{e2e['publish_rate']} readings/s; engine {e2e['engine_s']} s, "
          f"{e2e['engine_changes']} level changes)")
    print(f"stored (rows, distinct channel+time): {e2e['stored']}; forecasts: "
          f"{e2e['forecasts']}; orange/red deformation events: {e2e['severe_deformation']}; "
          f"progress shown: {e2e['progress_shown']}")
    print(f"alerts (target, kind, count, peak level): {e2e['alerts']}")
    print(f"baseline, pure tick in memory: {base['s']:.1f} s for {base['readings']:.0f} "
          f"readings ({base['alerts']:.0f} alerts)")
    print(f"ratio end to end / in memory: {float(str(e2e['total_s'])) / base['s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
