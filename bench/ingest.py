"""End-to-end ingest benchmark: readings per second from MQTT publish to database commit.

    .venv/bin/python -m bench.ingest [--readings 200000] [--admin-url URL]

What is measured, in one run on this machine:
1. Sustained rate, publish to commit: a `geowarn ingest` gateway process (QoS 1, manual ack
   after commit, shipped Mosquitto config) takes a pre-built stream published as fast as the
   broker acknowledges it, at 1 and at 10 readings per message. Timed from the first publish to
   the moment the last reading is committed.
2. Baseline, the same run: a plain psycopg binary COPY of the same rows into the same, empty
   readings table (the floor any gateway pays). Reported as the ratio gateway / COPY.
3. Latency at a fifth of the measured maximum message rate (10 readings per message):
   commit time (readings.ingested_at, the transaction's start, so slightly early) minus the
   publish time recorded here; p50 and p99 over every reading. Same host, same clock.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port, start_mosquitto
from ingest.broker_config import gateway_broker_config
from simulators.publisher import Publisher
from simulators.streams import SimMessage, device_ids, generate, make_devices


def build_stream(url: str, readings: int, per_message: int, devices: int, seed: int,
                 start: datetime) -> list[SimMessage]:
    sims = make_devices(device_ids(["gnss", "crack_meter", "water_level", "rain_gauge"],
                                   devices, f"B{per_message}"), "native", seed)
    with psycopg.connect(url, autocommit=True) as conn:
        for d in sims:
            add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind))
    return list(generate(sims, start=start, messages_per_device=readings // devices // per_message,
                         readings_per_message=per_message, step=timedelta(seconds=10)))


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0


def wait_count(url: str, target: int, timeout: float = 600) -> float:
    """Poll until `target` readings are committed; returns the time it was first seen."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            if row and row[0] >= target:
                return time.perf_counter()
            time.sleep(0.02)
    raise TimeoutError(f"only {count(url)} of {target} readings committed")


def start_gateway(url: str, port: int, log: Path, *, name: str = "bench-gw",
                  max_backlog_days: float = 3650, timeout: float = 30
                  ) -> subprocess.Popen[bytes]:
    """A `geowarn ingest` process; returns once it has subscribed (it logs when it listens,
    nothing else to wait on). A recording from years ago needs a larger backlog window."""
    env = {**os.environ, "GEOWARN_DATABASE_URL": url, "GEOWARN_MQTT_URL":
           f"mqtt://127.0.0.1:{port}", "GEOWARN_GATEWAY_NAME": name,
           "GEOWARN_MAX_BACKLOG_DAYS": f"{max_backlog_days:g}"}
    proc = subprocess.Popen([sys.executable, "-m", "geowarn", "ingest"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while "subscribed to" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("gateway did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.05)
    return proc


def run_rate(admin: str, readings: int, per_message: int, devices: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(admin, f"bench_ingest_{os.getpid()}_{per_message}") as url:
        start = datetime.now(UTC) - timedelta(days=60)
        stream = build_stream(url, readings, per_message, devices, 1, start)
        port = free_port()
        broker = start_mosquitto(gateway_broker_config(), port, Path(tmp) / "mq")
        gateway = start_gateway(url, port, Path(tmp) / "gw.log")
        try:
            pub = Publisher("127.0.0.1", port, client_id="bench-pub")
            t0 = time.perf_counter()
            pub.publish_all((m.topic, m.payload) for m in stream)
            t_pub = time.perf_counter()
            t_end = wait_count(url, readings)
            pub.close()
        finally:
            gateway.terminate()
            gateway.wait(30)
            broker.terminate()
            broker.wait(10)
        copy_rate = copy_baseline(url, readings)
        rate = readings / (t_end - t0)
        return {"readings": readings, "messages": len(stream), "rate": rate,
                "publish_rate": readings / (t_pub - t0), "copy_rate": copy_rate,
                "ratio": rate / copy_rate}


def copy_baseline(url: str, readings: int) -> float:
    """Rows/s of a plain binary COPY of the same rows into the same, emptied table."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT channel_id, ts, value, quality FROM readings").fetchall()
        conn.execute("TRUNCATE readings")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY readings (channel_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "timestamptz", "float8", "int2"])
            for row in rows:
                copy.write_row(row)
        elapsed = time.perf_counter() - t0
        assert len(rows) == readings
    return readings / elapsed


def run_latency(admin: str, msg_rate: float, seconds: float, devices: int) -> dict[str, float]:
    per_message = 10
    n_messages = int(msg_rate * seconds)
    readings = n_messages * per_message
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(admin, f"bench_latency_{os.getpid()}") as url:
        stream = build_stream(url, readings, per_message, devices, 2,
                              datetime.now(UTC) - timedelta(days=60))
        port = free_port()
        broker = start_mosquitto(gateway_broker_config(), port, Path(tmp) / "mq")
        gateway = start_gateway(url, port, Path(tmp) / "gw.log")
        sent_at: dict[tuple[str, datetime], float] = {}
        try:
            pub = Publisher("127.0.0.1", port, client_id="bench-lat")
            t0 = time.perf_counter()
            for i, m in enumerate(stream):
                due = t0 + i / msg_rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                first = m.expected[0]
                sent_at[(first[0], first[2])] = time.time()
                pub.publish(m.topic, m.payload)
            wait_count(url, len(stream) * per_message)
            pub.close()
        finally:
            gateway.terminate()
            gateway.wait(30)
            broker.terminate()
            broker.wait(10)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT c.device_id, r.ts, extract(epoch FROM r.ingested_at) FROM readings r "
                "JOIN channels c USING (channel_id)").fetchall()
    lat = np.array([float(ing) - sent_at[(d, ts)] for d, ts, ing in rows if (d, ts) in sent_at])
    return {"messages": len(stream), "msg_rate": msg_rate, "p50_ms": float(np.percentile(lat, 50))
            * 1000, "p99_ms": float(np.percentile(lat, 99)) * 1000, "samples": len(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    results = {}
    for per_message in (1, 10):
        n = args.readings // (5 if per_message == 1 else 1)
        r = run_rate(args.admin_url, n, per_message, args.devices)
        results[per_message] = r
        print(f"{per_message:>2} reading(s)/message: {r['rate']:,.0f} readings/s end to end "
              f"({r['messages']:,} messages, {r['readings']:,} readings; publisher alone "
              f"{r['publish_rate']:,.0f}/s); plain COPY {r['copy_rate']:,.0f} rows/s; "
              f"ratio {r['ratio']:.2f}", flush=True)
    max_msgs = results[10]["rate"] / 10
    lat = run_latency(args.admin_url, max_msgs / 5, args.latency_seconds, args.devices)
    print(f"latency at {lat['msg_rate']:,.0f} msg/s (a fifth of the maximum, 10 readings/"
          f"message, {lat['samples']:,} messages): p50 {lat['p50_ms']:.1f} ms, "
          f"p99 {lat['p99_ms']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
