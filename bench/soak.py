"""Soak: a fleet's day with faults, through broker, gateway, store and engine, as fast as it goes.

    .venv/bin/python -m bench.soak [--devices 10000] [--hours 24] [--seed 1]
                                   [--engine-partitions 1] [--admin-url URL]

A benchmark, not a test (it takes minutes to hours). In one run:
- a fresh database, Mosquitto with the shipped configuration, one `geowarn ingest` process and
  `geowarn engine --clock data` (or N members of `--partitions N`) as real processes;
- `--devices` devices (half water-level gauges, half crack meters, registered at one reading
  a minute) send `--hours` of data time, one reading per message, minute by minute, published
  as fast as the broker acknowledges (QoS 1). Faults, deterministic under `--seed`:
  offline (1 % of devices silent for up to 2 h), stuck (0.5 %: one value repeated for up to
  3 h), spikes (1 %: three single-sample spikes of 6 m / 25 mm), duplicates (1 % of messages
  published twice), out of order (1 % of messages sent after the device's next one), clock
  skew (2 % of devices stamp ±5-50 s off, stored as stamped; 0.1 % send one message a day in
  the future, which the gateway must dead-letter), floods (0.2 % of gauges rise above the
  warning stage for a few hours);
- checks from the store, not from what was sent: every expected reading stored exactly once
  with its value (count and a per-reading join), the future messages dead-lettered, and the
  alerts: a water-level alert on every flooding gauge and on no other target, a maintenance
  (silent) alert on every offline device, a data-quality alert on every stuck water-level
  gauge (stuck crack meters are counted, not required: a resting crack repeats its value
  too), no alert of any kind on a healthy device;
- the gateway's and engine's resident memory (VmRSS) sampled every 2 s; "flat" is judged on
  the median of the second quarter of the run against that of the last quarter.
Exit status 1 when a check fails. The expected-readings arrays take ~30 bytes a reading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from bench.ingest import start_gateway
from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port, start_mosquitto
from geowarn.readings_write import device_channels
from ingest.broker_config import gateway_broker_config
from simulators.publisher import Publisher

WARNING = {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2}


@dataclass
class Plan:
    """Who does what, drawn once from the seed."""

    n: int
    minutes: int
    water: np.ndarray  # (n,) bool: water-level gauge, else crack meter
    base: np.ndarray  # (n,) normal value
    offline: dict[int, tuple[int, int]]  # device -> [from, to) minutes
    stuck: dict[int, tuple[int, int]]
    spikes: dict[int, set[int]]
    flood: set[int]
    skew_s: np.ndarray  # (n,) float seconds added to every stamp
    future: dict[int, int]  # device -> minute of its one message stamped a day ahead
    dup_p: float = 0.01
    ooo_p: float = 0.01
    ids: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> set[int]:
        faulty = set(self.offline) | set(self.stuck) | set(self.spikes) | self.flood \
            | set(self.future) | set(np.flatnonzero(self.skew_s).tolist())
        return set(range(self.n)) - faulty


def make_plan(n: int, minutes: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    water = np.arange(n) % 2 == 0
    base = np.where(water, rng.uniform(8.0, 11.0, n), rng.uniform(3.0, 8.0, n)).round(3)
    order = rng.permutation(n)
    k = lambda p: max(1, int(round(n * p)))  # noqa: E731 - at least one of each fault
    groups, at = {}, 0
    for name, p in (("offline", 0.01), ("stuck", 0.005), ("spikes", 0.01), ("skew", 0.02),
                    ("future", 0.001)):
        groups[name] = order[at:at + k(p)].tolist()
        at += k(p)
    gauges = [int(d) for d in order[at:] if water[d]]
    flood = set(gauges[:k(0.002)])
    span = lambda frac_max, cap: max(20, min(cap, int(minutes * frac_max)))  # noqa: E731
    offline = {}
    for d in groups["offline"]:
        a = int(rng.integers(minutes // 5, max(minutes // 5 + 1, minutes // 2)))
        offline[d] = (a, min(minutes - 5, a + span(0.3, 120)))
    stuck = {}
    for d in groups["stuck"]:
        a = int(rng.integers(minutes // 5, max(minutes // 5 + 1, minutes // 2)))
        stuck[d] = (a, min(minutes - 1, a + max(40, span(0.3, 180))))
    # Single-sample spikes, away from the edges and from each other (two in a row are an
    # onset the engine confirms, not a spike).
    slots = np.arange(minutes // 6, minutes - minutes // 6, max(2, minutes // 12))
    spikes = {d: set((rng.choice(slots, 3, replace=False)
                      + rng.integers(0, max(1, minutes // 24))).tolist())
              for d in groups["spikes"]}
    skew = np.zeros(n)
    for d in groups["skew"]:
        skew[d] = float(rng.choice([-1, 1]) * rng.integers(5, 51))
    future = {d: int(rng.integers(minutes // 4, minutes)) for d in groups["future"]}
    ids = [f"SOAK-{'WL' if water[i] else 'CM'}-{i:05d}" for i in range(n)]
    return Plan(n, minutes, water, base, offline, stuck, spikes, flood, skew, future, ids=ids)


def values_at(plan: Plan, m: int, rng: np.random.Generator) -> np.ndarray:
    """Every device's value at minute m (rounded as a device reports it)."""
    day = np.sin(2 * np.pi * m / 1440.0)
    v = np.where(plan.water, plan.base + 0.05 * day + rng.normal(0, 0.02, plan.n),
                 plan.base + rng.normal(0, 0.03, plan.n))
    for d in plan.flood:  # a hydrograph over the middle of the span: up 6.6 m and back
        x = (m - 0.45 * plan.minutes) / max(30.0, 0.15 * plan.minutes)
        v[d] += 6.6 * max(0.0, 1.0 - abs(x))
    for d, (a, _) in plan.stuck.items():
        if a <= m < plan.stuck[d][1]:
            v[d] = plan.base[d]
    for d, when in plan.spikes.items():
        if m in when:
            v[d] += 6.0 if plan.water[d] else 25.0
    return np.round(v, 3)


@dataclass
class Expected:
    """What the store must hold, accumulated while the stream is built."""

    device: list[np.ndarray] = field(default_factory=list)
    ts_ms: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    future_messages: int = 0
    messages: int = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.device), np.concatenate(self.ts_ms),
                np.concatenate(self.value))


def _stamp(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000.0, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def stream(plan: Plan, start: datetime, seed: int, exp: Expected) -> Iterator[tuple[str, bytes]]:
    """The fleet minute by minute, faults applied; fills `exp` as it goes."""
    rng = np.random.default_rng(seed + 7)
    topics = [f"gw/v1/{i}/telemetry" for i in plan.ids]
    chan = ["level" if w else "opening" for w in plan.water]
    seq = np.zeros(plan.n, np.int64)
    held: dict[int, bytes] = {}  # out of order: sent after the device's next message
    t0 = int(start.timestamp() * 1000)
    off = np.zeros(plan.n, bool)
    skew_ms = (plan.skew_s * 1000).astype(np.int64)
    future_ms = 86_400_000 + int(time.time() * 1000) - t0  # a day ahead of the wall clock
    for m in range(plan.minutes):
        vals = values_at(plan, m, rng)
        off[:] = False
        for d, (a, b) in plan.offline.items():
            off[d] = a <= m < b
        send = np.flatnonzero(~off)
        ts = t0 + m * 60_000 + skew_ms[send]
        fut = np.array([plan.future.get(int(d)) == m for d in send], bool) if plan.future \
            else np.zeros(send.size, bool)
        exp.device.append(send[~fut])
        exp.ts_ms.append(ts[~fut])
        exp.value.append(vals[send[~fut]])
        dup = rng.random(send.size) < plan.dup_p
        ooo = rng.random(send.size) < plan.ooo_p
        for j, d in enumerate(send.tolist()):
            seq[d] += 1
            stamp = ts[j] + (future_ms if fut[j] else 0)
            payload = (f'{{"seq":{seq[d]},"readings":[{{"ts":"{_stamp(int(stamp))}",'
                       f'"channel":"{chan[d]}","value":{float(vals[d])!r}}}]}}').encode()
            exp.messages += 1
            exp.future_messages += int(fut[j])
            if ooo[j] and d not in held:
                held[d] = payload
                continue
            yield topics[d], payload
            if dup[j]:
                yield topics[d], payload
            if d in held:
                yield topics[d], held.pop(d)
    for d, payload in held.items():
        yield topics[d], payload


class RssSampler(threading.Thread):
    def __init__(self, pids: dict[str, int], every_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in pids}
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kb = next(int(line.split()[1]) for line in text.splitlines()
                          if line.startswith("VmRSS:"))
                self.samples[name].append((time.monotonic() - t0, kb / 1024.0))
            self.stop.wait(self.every_s)

    def summary(self, name: str) -> dict[str, float]:
        mib = np.array([s[1] for s in self.samples[name]])
        q = max(1, mib.size // 4)
        return {"start": float(mib[0]), "q2": float(np.median(mib[q:2 * q])),
                "q4": float(np.median(mib[-q:])), "max": float(mib.max()),
                "samples": float(mib.size)}


def register(url: str, plan: Plan) -> dict[int, int]:
    """Devices (one reading a minute), the water-level stages; device index -> channel id."""
    with psycopg.connect(url, autocommit=True) as conn:
        for i, device_id in enumerate(plan.ids):
            add_device(conn, DeviceSpec(device_id, kind="water_level" if plan.water[i]
                                        else "crack_meter", reporting_interval_s=60))
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params, updated_by) "
                     "VALUES ('kind', 'water_level', %s, 'bench')", (json.dumps(WARNING),))
        return {i: next(iter(device_channels(conn, d).values()))
                for i, d in enumerate(plan.ids)}


def start_engines(url: str, partitions: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "GEOWARN_DATABASE_URL": url}
    base = [sys.executable, "-m", "geowarn", "engine", "--clock", "data", "--period", "5"]
    if partitions == 1:
        cmds = [base]
    else:
        cmds = [[*base, "--partitions", str(partitions), "--member", f"m{k}"]
                for k in range(partitions)]
    return [subprocess.Popen(c, env=env, stdout=(tmp / f"engine{k}.log").open("wb"),
                             stderr=subprocess.STDOUT) for k, c in enumerate(cmds)]


def wait_for(url: str, sql: str, target: float, timeout: float, what: str,
             params: tuple[object, ...] = ()) -> float:
    deadline = time.monotonic() + timeout
    last_print = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(sql, params).fetchone()
            got = float(row[0]) if row and row[0] is not None else 0.0
            if got >= target:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {got:,.0f} of {target:,.0f}")
            if time.monotonic() - last_print > 30:
                print(f"  waiting for {what}: {got:,.0f} / {target:,.0f}", flush=True)
                last_print = time.monotonic()
            time.sleep(0.5)


def check_store(url: str, plan: Plan, channel: dict[int, int], exp: Expected) -> dict[str, int]:
    dev, ts, val = exp.arrays()
    ch = np.array([channel[i] for i in range(plan.n)], np.int32)[dev]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE soak_expected (channel_id int4, ts timestamptz, "
                     "value float8)")
        with conn.cursor() as cur, cur.copy("COPY soak_expected FROM STDIN") as copy:
            for c, t, v in zip(ch.tolist(), ts.tolist(), val.tolist(), strict=True):
                copy.write_row((c, datetime.fromtimestamp(t / 1000.0, UTC), v))
        stored = conn.execute("SELECT count(*) FROM readings").fetchone()
        missing = conn.execute(
            "SELECT count(*) FROM soak_expected e LEFT JOIN readings r ON r.channel_id = "
            "e.channel_id AND r.ts = e.ts WHERE r.channel_id IS NULL").fetchone()
        wrong = conn.execute(
            "SELECT count(*) FROM soak_expected e JOIN readings r ON r.channel_id = "
            "e.channel_id AND r.ts = e.ts WHERE r.value <> e.value").fetchone()
        extra = conn.execute(
            "SELECT count(*) FROM readings r WHERE NOT EXISTS (SELECT 1 FROM soak_expected e "
            "WHERE e.channel_id = r.channel_id AND e.ts = r.ts)").fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        size = conn.execute("SELECT pg_total_relation_size('readings')").fetchone()
    return {"expected": int(dev.size), "stored": int(stored[0]) if stored else -1,
            "missing": int(missing[0]) if missing else -1,
            "wrong_value": int(wrong[0]) if wrong else -1,
            "extra": int(extra[0]) if extra else -1,
            "dead_letters": int(dead[0]) if dead else -1,
            "readings_bytes": int(size[0]) if size else -1}


def check_alerts(url: str, plan: Plan) -> dict[str, object]:
    index = {d: i for i, d in enumerate(plan.ids)}
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT target_type, target_id, hazard_kind, max(e.level) "
                            "FROM alerts a JOIN alert_events e USING (alert_id) "
                            "GROUP BY 1, 2, 3").fetchall()
    by_kind: dict[str, set[int]] = {}
    levels: dict[tuple[str, int], int] = {}
    for _target_type, target_id, kind, level in rows:
        i = index.get(target_id, -1)
        by_kind.setdefault(kind, set()).add(i)
        levels[(kind, i)] = int(level)
    hazard = {k: v for k, v in by_kind.items() if k not in ("maintenance", "data_quality")}
    stuck_wl = {d for d in plan.stuck if plan.water[d]}
    alerted = set().union(*by_kind.values()) if by_kind else set()
    out: dict[str, object] = {
        "alerts by kind": {k: len(v) for k, v in sorted(by_kind.items())},
        "flooding gauges with a water-level alert": (
            len(plan.flood & hazard.get("water_level", set())), len(plan.flood)),
        "hazard alerts on a target that did not flood": sorted(
            set().union(*hazard.values()) - plan.flood) if hazard else [],
        "offline devices with a maintenance alert": (
            len(set(plan.offline) & by_kind.get("maintenance", set())), len(plan.offline)),
        # A resting crack repeats its value too: only a stuck stage gauge is a finding.
        "stuck water-level gauges with a data-quality alert": (
            len(stuck_wl & by_kind.get("data_quality", set())), len(stuck_wl)),
        "stuck crack meters with a data-quality alert (not expected)": (
            len(set(plan.stuck) - stuck_wl & by_kind.get("data_quality", set())),
            len(set(plan.stuck) - stuck_wl)),
        "spiky devices with a data-quality alert": (
            len(set(plan.spikes) & by_kind.get("data_quality", set())), len(plan.spikes)),
        "healthy devices with any alert": sorted(plan.healthy & alerted),
        "flood levels": sorted({levels[("water_level", d)] for d in plan.flood
                                if ("water_level", d) in levels}),
    }
    odd = [(kind, plan.ids[i]) for kind, i in levels if i in plan.healthy
           or (kind in hazard and i not in plan.flood)]
    if odd:
        with psycopg.connect(url) as conn:
            out["unexpected alerts"] = conn.execute(
                "SELECT a.target_id, a.hazard_kind, e.kind, e.level, e.data_time::text, "
                "left(e.evidence::text, 300) FROM alert_events e JOIN alerts a USING "
                "(alert_id) WHERE (a.hazard_kind, a.target_id) IN (SELECT * FROM "
                "unnest(%s::text[], %s::text[])) ORDER BY 1, e.data_time",
                ([k for k, _ in odd], [d for _, d in odd])).fetchall()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine-partitions", type=int, default=1)
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    minutes = int(args.hours * 60)
    plan = make_plan(args.devices, minutes, args.seed)
    start = (datetime.now(UTC) - timedelta(hours=args.hours + 1)).replace(second=0,
                                                                          microsecond=0)
    print(f"soak: {args.devices:,} devices x {minutes:,} minutes from {start.isoformat()}, "
          f"seed {args.seed}, engine partitions {args.engine_partitions}", flush=True)
    with tempfile.TemporaryDirectory() as tmpdir, \
            fresh_database(args.admin_url, f"bench_soak_{os.getpid()}") as url:
        tmp = Path(tmpdir)
        t_reg = time.perf_counter()
        channel = register(url, plan)
        print(f"registered in {time.perf_counter() - t_reg:.1f} s", flush=True)
        port = free_port()
        broker = start_mosquitto(gateway_broker_config(), port, tmp / "mq")
        gateway = start_gateway(url, port, tmp / "gw.log")
        engines = start_engines(url, args.engine_partitions, tmp)
        sampler = RssSampler({"gateway": gateway.pid, **{f"engine{k}": p.pid
                                                         for k, p in enumerate(engines)}})
        sampler.start()
        exp = Expected()
        try:
            pub = Publisher("127.0.0.1", port, client_id="soak-pub", inflight=1000)
            t0 = time.perf_counter()
            pub.publish_all(stream(plan, start, args.seed, exp))
            assert pub.wait_acked(600)
            t_pub = time.perf_counter()
            pub.close()
            n_expected = sum(a.size for a in exp.device)
            print(f"published {exp.messages:,} messages in {t_pub - t0:.0f} s", flush=True)
            t_stored = wait_for(url, "SELECT count(*) FROM readings", n_expected, 7200,
                                "readings stored")
            newest = float(np.concatenate(exp.ts_ms).max()) / 1000.0
            names_sql = ("SELECT count(*) FROM engine_state WHERE clock >= %s")
            t_engine = wait_for(url, names_sql, args.engine_partitions, 7200,
                                "engines caught up", (newest,))
            time.sleep(6)  # one more periodic tick (silence, auto-resolve) at the final clock
        finally:
            sampler.stop.set()
            for p in [*engines, gateway]:
                p.terminate()
            for p in [*engines, gateway]:
                p.wait(60)
            broker.terminate()
            broker.wait(10)
        store = check_store(url, plan, channel, exp)
        alerts = check_alerts(url, plan)
    readings = store["expected"]
    print(f"\nstored {store['stored']:,} of {readings:,} expected readings; missing "
          f"{store['missing']}, wrong value {store['wrong_value']}, extra {store['extra']}; "
          f"dead letters {store['dead_letters']} (future-stamped messages sent: "
          f"{exp.future_messages})")
    print(f"store: {store['readings_bytes'] / max(1, store['stored']):.0f} bytes per reading "
          f"(readings table with its indexes, plain PostgreSQL)")
    print(f"time: publish {t_pub - t0:,.0f} s ({exp.messages / (t_pub - t0):,.0f} msg/s), "
          f"all stored {t_stored - t0:,.0f} s ({readings / (t_stored - t0):,.0f} readings/s), "
          f"engine caught up {t_engine - t0:,.0f} s after the first publish")
    for k, v in alerts.items():
        print(f"{k}: {v}")
    for name in sampler.samples:
        s = sampler.summary(name)
        print(f"RSS {name}: start {s['start']:.0f} MiB, 2nd-quarter median {s['q2']:.0f}, "
              f"last-quarter median {s['q4']:.0f} ({s['q4'] - s['q2']:+.0f}), max "
              f"{s['max']:.0f} ({s['samples']:.0f} samples)")
    stuck_wl = {d for d in plan.stuck if plan.water[d]}
    ok = (store["missing"] == 0 and store["extra"] == 0 and store["wrong_value"] == 0
          and store["stored"] == readings and store["dead_letters"] >= exp.future_messages
          and alerts["flooding gauges with a water-level alert"] == (len(plan.flood),) * 2
          and not alerts["hazard alerts on a target that did not flood"]
          and alerts["offline devices with a maintenance alert"] == (len(plan.offline),) * 2
          and alerts["stuck water-level gauges with a data-quality alert"]
          == (len(stuck_wl),) * 2
          and not alerts["healthy devices with any alert"])
    print("checks:", "all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
