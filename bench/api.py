"""Benchmark of the duty officers' API under concurrent users.

    .venv/bin/python -m bench.api [--users 20] [--requests 40] [--hazards 5000]

In one run, on a fresh migrated database: `--hazards` hazard points with polygons in one
province (an open alert on every tenth), a crack meter with 30 days of 10-minute readings, and
an admin user; the API served by uvicorn on a free local port. `--users` threads, each with
its own HTTP connection, call each endpoint `--requests` times:
- baseline: `GET /api/auth/me` (the same app, session check and one query: what every
  request pays);
- the alert queue: `GET /api/alerts`;
- the map: `GET /api/hazards` (the FeatureCollection of every polygon);
- the map revalidated: the same with the ETag of the last answer in If-None-Match (304,
  what a console that already holds the map pays for each refresh);
- a chart: `GET /api/devices/CM-1/readings?from=-30d&bucket=1h&agg=avg`.
Every user shares one session token, as a console's parallel requests do. The client asks for
gzip (httpx's default), as browsers do.
Prints p50/p99 per endpoint and its ratio to the baseline's p50 (a ratio measured in the same
run; absolute figures depend on the machine and its load), and the CPU milliseconds each
request cost the API server and the PostgreSQL backends (what the machine's load does not
inflate).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg
import uvicorn

from api import users
from api.app import create_app
from bench.store import LOCAL_ADMIN, fresh_database
from geowarn.db import close_pool
from geowarn.embedded import free_port
from geowarn.settings import override_settings

PASSWORD = "benchmark password"


def populate(url: str, hazards: int) -> None:
    with psycopg.connect(url) as conn:
        # A grid of small squares over Zhejiang, counties cycling through 330102..330199.
        conn.execute(
            "INSERT INTO hazard_points (hazard_id, name, hazard_type, scale, county_code, "
            "geometry, min_lon, min_lat, max_lon, max_lat, households, people) "
            "SELECT 'HP-' || i, '隐患点 ' || i, 'landslide', 'small', "
            "(330102 + i %% 98)::text, json_build_object('type', 'Polygon', 'coordinates', "
            "json_build_array(json_build_array("
            "  json_build_array(x, y), json_build_array(x + 0.004, y), "
            "  json_build_array(x + 0.004, y + 0.004), json_build_array(x, y + 0.004), "
            "  json_build_array(x, y)))), x, y, x + 0.004, y + 0.004, 10, 30 "
            "FROM (SELECT i, 118.0 + (i %% 100) * 0.04 AS x, 27.0 + (i / 100) * 0.04 AS y "
            "      FROM generate_series(1, %s) i) g", (hazards,))
        conn.execute(
            "INSERT INTO alerts (target_type, target_id, hazard_kind, level, peak_level, "
            "opened_at, last_data_time, engine) SELECT 'hazard', 'HP-' || i, 'rainfall', "
            "1 + i %% 4, 1 + i %% 4, now() - interval '1 hour', now(), 'bench' "
            "FROM generate_series(10, %s, 10) i", (hazards,))
        conn.execute("INSERT INTO devices (device_id, kind, hazard_id, reporting_interval_s) "
                     "VALUES ('CM-1', 'crack_meter', 'HP-1', 600)")
        conn.execute("INSERT INTO channels (device_id, channel, kind, spec, unit) VALUES "
                     "('CM-1', 'opening', 'crack_meter', 'opening', 'mm')")
        conn.execute(
            "INSERT INTO readings (channel_id, ts, value, quality) "
            "SELECT (SELECT channel_id FROM channels WHERE device_id = 'CM-1'), "
            "now() - interval '30 days' + i * interval '10 minutes', 10 + i * 0.001, 0 "
            "FROM generate_series(0, 30 * 144) i")
        users.add_user(conn, "bench.admin", PASSWORD, "admin", ["330000"])
        conn.commit()


def serve(url: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    override_settings(database_url=url, db_pool_max=24)
    close_pool()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)  # uvicorn offers no started event
    return server, thread, f"http://127.0.0.1:{port}"


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the benchmark's database (from
    /proc; empty where the server is not on this machine's /proc)."""
    with psycopg.connect(url) as conn:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def load(base: str, path: str, token: str, users_n: int, requests: int,
         headers: dict[str, str] | None = None,
         client_cpu: list[float] | None = None) -> np.ndarray:
    """Latencies in ms; the client threads' own CPU seconds are appended to `client_cpu`
    (so that the server's share of this process's CPU can be told apart)."""
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def user() -> None:
        mine = []
        cpu0 = time.thread_time()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}",
                                                  **(headers or {})}, timeout=120) as client:
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.get(path)
                mine.append(time.perf_counter() - t0)
                if r.status_code != (304 if headers and "If-None-Match" in headers else 200):
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
        with lock:
            latencies.extend(mine)
            if client_cpu is not None:
                client_cpu.append(time.thread_time() - cpu0)

    threads = [threading.Thread(target=user) for _ in range(users_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(failures[0])
    return np.asarray(latencies) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40, help="per user and endpoint")
    parser.add_argument("--hazards", type=int, default=5000)
    parser.add_argument("--admin-url", default=LOCAL_ADMIN)
    args = parser.parse_args()
    # Production argon2 costs: a login is not what is measured, but it is what runs.
    with fresh_database(args.admin_url, "geowarn_bench_api") as url:
        populate(url, args.hazards)
        server, thread, base = serve(url)
        try:
            token = httpx.post(f"{base}/api/auth/login", json={
                "username": "bench.admin", "password": PASSWORD}).json()["token"]
            since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
            first = httpx.get(f"{base}/api/hazards", headers={"Authorization": f"Bearer {token}"})
            fc, etag = first.content, first.headers["etag"]
            endpoints: dict[str, tuple[str, dict[str, str] | None]] = {
                "baseline GET /api/auth/me": ("/api/auth/me", None),
                "alert queue GET /api/alerts": ("/api/alerts?limit=200", None),
                f"map GET /api/hazards ({args.hazards} polygons, {len(fc) // 1024} KiB)":
                    ("/api/hazards", None),
                "map revalidated, If-None-Match (304)":
                    ("/api/hazards", {"If-None-Match": etag}),
                "30-day chart GET /api/devices/CM-1/readings?bucket=1h":
                    ("/api/devices/CM-1/readings?" + httpx.QueryParams(
                        {"from": since, "bucket": "1h", "agg": "avg"}).__str__(), None),
            }
            results = {}
            for name, (path, headers) in endpoints.items():
                load(base, path, token, 2, 3, headers)  # warm-up: pool connections, plans
                clients: list[float] = []
                pg0, cpu0 = backend_cpu(url), time.process_time()
                ms = load(base, path, token, args.users, args.requests, headers, clients)
                api_cpu = time.process_time() - cpu0 - sum(clients)
                pg1 = backend_cpu(url)
                pg_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
                n = args.users * args.requests
                results[name] = (float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                                 1000 * api_cpu / n, 1000 * pg_cpu / n)
        finally:
            server.should_exit = True
            thread.join(10)
            close_pool()
    base_p50 = results["baseline GET /api/auth/me"][0]
    print(f"{args.users} concurrent users, {args.requests} requests each per endpoint")
    # CPU per request: the API server's (this process less its client threads) and the
    # PostgreSQL backends' (from /proc), which the load of other work does not inflate.
    print(f"{'endpoint':<58} {'p50 ms':>8} {'p99 ms':>8} {'p50/base':>8} "
          f"{'API cpu':>8} {'PG cpu':>8}")
    for name, (p50, p99, api, pg) in results.items():
        print(f"{name:<58} {p50:8.1f} {p99:8.1f} {p50 / base_p50:8.1f} {api:8.2f} {pg:8.2f}")
    print(json.dumps({k: {"p50_ms": round(v[0], 1), "p99_ms": round(v[1], 1),
                          "api_cpu_ms": round(v[2], 2), "pg_cpu_ms": round(v[3], 2)}
                      for k, v in results.items()}))


if __name__ == "__main__":
    main()
