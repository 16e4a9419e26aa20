"""Soak: a fleet's day with faults, through broker, gateway, store and engine, as fast as it goes.

    .venv/bin/python -m bench.soak [--devices 10000] [--hours 24] [--seed 1]
                                   [--engine-partitions 1] [--admin-url URL]
                                   [--sabotage lose|double] [--verbose]

A benchmark, not a test (it takes minutes to hours). In one run:
- a fresh database, Mosquitto with the shipped configuration, one `geowarn ingest` process and
  `geowarn engine --clock data` (or N members of `--partitions N`) as real processes;
- `--devices` devices (half water-level gauges, half crack meters, registered at one reading
  a minute) send `--hours` of data time, one reading per message, minute by minute, published
  as fast as the broker acknowledges (QoS 1). Faults, deterministic under `--seed`:
  offline (1 % of devices silent for up to 2 h), stuck (0.5 %: one value repeated for up to
  3 h), spikes (1 %: three single-sample spikes of 6 m / 25 mm, 8 min apart at least),
  duplicates (1 % of messages
  published twice), out of order (1 % of messages sent after the device's next one), clock
  skew (2 % of devices stamp ±5-50 s off, stored as stamped; 0.1 % send one message a day in
  the future, which the gateway must dead-letter), floods (0.2 % of gauges rise above the
  warning stage for a few hours);
- checks from the store, not from what was sent: every expected reading stored exactly once
  with its value (count and a per-reading join), the future messages dead-lettered, and the
  alerts as the rules in the store expect them (bench/soak_expect.py): a water-level alert
  on every flooding gauge whose rise is long enough to be seen, and on no other target; a
  maintenance (silent) alert on every offline device whose gap exceeds offline_after_s; a
  data-quality alert on every stuck water-level gauge whose run reaches stuck_count (stuck
  crack meters are counted, not required: a resting crack repeats its value too); none on
  a device too briefly silent or stuck for its rule; no alert of any kind on a healthy device;
- `--sabotage lose|double` loses one reading or stores one twice (under two stamps) on
  purpose: the run must then fail its checks;
- the gateway's and engine's resident memory (VmRSS) sampled every 2 s; "flat" is judged on
  the median of the second quarter of the run against that of the last quarter.
- CPU seconds of each part (this process: registration, stream and publisher; broker;
  gateway; engine; the PostgreSQL backends of the run's database).
Exit status 1 when a check fails; the last lines are a summary. The expected-readings arrays
take ~20 bytes a reading (about 0.3 GB for 10,000 devices x 24 h).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.ingest import start_gateway
from bench.rss import RssSampler, cpu_seconds
from bench.soak_checks import check_alerts, check_store, expected_alerts
from bench.soak_fleet import Expected, Plan, make_plan, stream
from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port, start_mosquitto
from geowarn.readings_write import device_channels
from ingest.broker_config import gateway_broker_config
from simulators.publisher import Publisher

# No new reading stored for this long after the last publish: stop waiting and let the
# checks name what is missing (60 s cut a 10,000 x 2 h run 300 readings short; whether they
# were lost or late is not known, so the wait is long).
STALL_S = 600.0
WARNING = {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.2}


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
             params: tuple[object, ...] = (), stall_s: float = 0.0) -> float:
    """Until `sql` reaches `target`; with `stall_s`, also when it has not moved for that
    long (a lost reading: the checks then say what is missing)."""
    deadline = time.monotonic() + timeout
    last_print = 0.0
    last_got, moved = -1.0, time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            asked = time.perf_counter()
            row = conn.execute(sql, params).fetchone()
            cost = time.perf_counter() - asked
            got = float(row[0]) if row and row[0] is not None else 0.0
            if got >= target:
                return time.perf_counter()
            if got != last_got:
                last_got, moved = got, time.monotonic()
            elif stall_s and time.monotonic() - moved > stall_s:
                print(f"  {what}: stalled at {got:,.0f} of {target:,.0f} for {stall_s:.0f} s",
                      flush=True)
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {got:,.0f} of {target:,.0f}")
            if time.monotonic() - last_print > 30:
                print(f"  waiting for {what}: {got:,.0f} / {target:,.0f}", flush=True)
                last_print = time.monotonic()
            # A count over millions of rows costs a second of a core: poll so that watching
            # takes a tenth of one core at most, not the CPU of the system it watches.
            time.sleep(max(0.5, 10 * cost))


def run_cpu(url: str, broker: int, gateway: int, engines: list[int]) -> dict[str, float]:
    """CPU seconds each part of the run has used: this process (the fleet's stream and the
    publisher), the broker, the gateway, the engines, and the PostgreSQL backends serving this
    run's database (the gateway's and engines' sessions, read while they are still open)."""
    with psycopg.connect(url, autocommit=True) as conn:
        backends = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
    t = os.times()
    return {"this process (registration, stream, publisher)": t.user + t.system,
            "broker": cpu_seconds(broker), "gateway": cpu_seconds(gateway),
            "engine": sum(cpu_seconds(p) for p in engines),
            f"PostgreSQL ({len(backends)} backends)": sum(cpu_seconds(p) for p in backends)}


def stored_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0


def restart_probe(url: str, port: int, tmp: Path, gateway: subprocess.Popen[bytes],
                  n_expected: int) -> subprocess.Popen[bytes]:
    """After a stall, restart the gateway once: readings that arrive now were held by the
    broker (in flight or queued for the old session, never delivered again), readings that
    still do not were lost before the broker queued them or dropped by it. After a probe the
    gateway's RSS samples are the first gateway's (up to the stall) and its CPU seconds the
    restarted one's only."""
    before = stored_count(url)
    gateway.terminate()
    gateway.wait(60)
    (tmp / "gw.log").rename(tmp / "gw-before-restart.log")
    gateway = start_gateway(url, port, tmp / "gw.log")
    wait_for(url, "SELECT count(*) FROM readings", n_expected, 600,
             "readings stored after a gateway restart", stall_s=120)
    after = stored_count(url)
    print(f"  restart probe: {after - before:,} more readings stored after restarting the "
          f"gateway ({n_expected - after:,} still missing)", flush=True)
    return gateway


def keep_logs(tmp: Path, dest: str) -> None:
    """The run's logs outlive its temporary folder (connects, disconnects, failed batches)."""
    if not dest:
        return
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for log in [*tmp.glob("*.log"), tmp / "mq" / "mosquitto.log"]:
        if log.exists():
            shutil.copy(log, out / log.name)
    print(f"logs kept in {out}/", flush=True)


def print_dead_letters(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT reason, count(*), min(left(detail, 160)) FROM dead_letters "
                            "GROUP BY reason ORDER BY 2 DESC").fetchall()
    for reason, n, detail in rows:
        print(f"dead letters {reason}: {n} (e.g. {detail})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine-partitions", type=int, default=1)
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    parser.add_argument("--gateway-inflight", type=int, default=0,
                        help="GEOWARN_GATEWAY_INFLIGHT of the gateway (0: the default)")
    parser.add_argument("--gateway-batch", type=int, default=0,
                        help="GEOWARN_GATEWAY_BATCH_MESSAGES of the gateway (0: the default)")
    parser.add_argument("--stall-s", type=float, default=STALL_S,
                        help="stop waiting for readings after this long without progress")
    parser.add_argument("--sabotage", choices=("lose", "double"), default="",
                        help="break the run on purpose (one reading lost / stored twice): "
                             "the checks must fail")
    parser.add_argument("--keep-logs", default="soak-logs", metavar="DIR",
                        help="copy the gateway's, engines' and broker's logs here at the end "
                             "('' : keep none)")
    parser.add_argument("--verbose", action="store_true",
                        help="print each faulty device's run, gap and flood bounds")
    args = parser.parse_args()
    t_wall = time.perf_counter()
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
        for name, value in (("GEOWARN_GATEWAY_INFLIGHT", args.gateway_inflight),
                            ("GEOWARN_GATEWAY_BATCH_MESSAGES", args.gateway_batch)):
            if value:
                os.environ[name] = str(value)  # read by the gateway started next
        gateway = start_gateway(url, port, tmp / "gw.log")
        engines = start_engines(url, args.engine_partitions, tmp)
        sampler = RssSampler({"gateway": gateway.pid, **{f"engine{k}": p.pid
                                                         for k, p in enumerate(engines)}})
        sampler.start()
        exp = Expected()
        try:
            pub = Publisher("127.0.0.1", port, client_id="soak-pub", inflight=1000)
            t0 = t_pub0 = time.perf_counter()
            pub.publish_all(stream(plan, start, args.seed, exp, args.sabotage))
            assert pub.wait_acked(600)
            t_pub = time.perf_counter()
            pub.close()
            n_expected = exp.arrays()[0].size
            print(f"published {exp.messages:,} messages in {t_pub - t0:.0f} s", flush=True)
            t_stored = wait_for(url, "SELECT count(*) FROM readings", n_expected, 7200,
                                "readings stored", stall_s=args.stall_s)
            if stored_count(url) < n_expected:
                gateway = restart_probe(url, port, tmp, gateway, n_expected)
            newest = float(exp.arrays()[1].max()) / 1000.0
            names_sql = ("SELECT count(*) FROM engine_state WHERE clock >= %s")
            t_engine = wait_for(url, names_sql, args.engine_partitions, 7200,
                                "engines caught up", (newest,))
            time.sleep(6)  # one more periodic tick (silence, auto-resolve) at the final clock
            cpu = run_cpu(url, broker.pid, gateway.pid, [p.pid for p in engines])
        finally:
            sampler.stop.set()
            for p in [*engines, gateway]:
                p.terminate()
            for p in [*engines, gateway]:
                p.wait(60)
            broker.terminate()
            broker.wait(10)
            keep_logs(tmp, args.keep_logs)
        print_dead_letters(url)
        t_checks, t_checks_cpu = time.perf_counter(), sum(os.times()[:2])
        store = check_store(url, plan, channel, exp)
        want = expected_alerts(url, plan, channel, exp)
        alerts = check_alerts(url, plan, want)
        t_checks = time.perf_counter() - t_checks
        t_checks_cpu = sum(os.times()[:2]) - t_checks_cpu
    readings = store["expected"]
    print(f"\nstored {store['stored']:,} of {readings:,} expected readings; missing "
          f"{store['missing']}, wrong value {store['wrong_value']}, extra {store['extra']}; "
          f"dead letters {store['dead_letters']} ({store['dead_letters_distinct']} distinct "
          f"future-stamped, {store['dead_letters_other']} other; future-stamped messages "
          f"{exp.future_messages}, published {exp.future_published} times)")
    print(f"store: {store['readings_bytes'] / max(1, store['stored']):.0f} bytes per reading "
          f"(readings table with its indexes, plain PostgreSQL)")
    print(f"time: publish {t_pub - t0:,.0f} s ({exp.messages / (t_pub - t0):,.0f} msg/s), "
          f"all stored {t_stored - t0:,.0f} s ({readings / (t_stored - t0):,.0f} readings/s), "
          f"engine caught up {t_engine - t0:,.0f} s after the first publish")
    for k, v in alerts.items():
        if k != "ok":
            print(f"{k}: {v}")
    if args.verbose:
        for k, v in want.notes.items():
            print(f"{k}: {v}")
    rss = {name: sampler.summary(name) for name in sampler.samples}
    for name, s in rss.items():
        print(f"RSS {name}: start {s['start']:.0f} MiB, 2nd-quarter median {s['q2']:.0f}, "
              f"last-quarter median {s['q4']:.0f} ({s['q4'] - s['q2']:+.0f}), max "
              f"{s['max']:.0f} ({s['samples']:.0f} samples)")
    checks = {
        "every expected reading stored once with its value": (
            store["missing"] == 0 and store["extra"] == 0 and store["wrong_value"] == 0
            and store["stored"] == readings),
        # Every future-stamped message dead-lettered, each publication of it once (a
        # redelivery after a reconnect may add one), and nothing else.
        "future-stamped messages dead-lettered": (
            store["dead_letters_distinct"] == exp.future_messages
            and store["dead_letters"] >= exp.future_published
            and store["dead_letters_other"] == 0),
        "alerts as the rules expect": bool(alerts["ok"]),
    }
    ok = all(checks.values())
    wall = time.perf_counter() - t_wall
    print(f"\n== soak summary: {args.devices:,} devices x {args.hours:g} h, seed {args.seed}"
          f"{', sabotage ' + args.sabotage if args.sabotage else ''}, gateway inflight "
          f"{args.gateway_inflight or 'default'}, batch {args.gateway_batch or 'default'} ==")
    for k, v in checks.items():
        print(f"  {'pass' if v else 'FAIL'}: {k}")
    print(f"  readings expected {readings:,}, stored {store['stored']:,}, missing "
          f"{store['missing']}, wrong {store['wrong_value']}, extra {store['extra']}; "
          f"messages {exp.messages:,}; dead letters {store['dead_letters']} of "
          f"{exp.future_messages} future-stamped messages published {exp.future_published} times")
    stuck_wl = {d for d in want.stuck_must if plan.water[d]}
    print(f"  must alert: flood {len(want.flood_must)}, offline {len(want.offline_must)}, "
          f"stuck gauges {len(stuck_wl)}; must not: offline {len(want.offline_must_not)}, "
          f"stuck {len(want.stuck_must_not)}")
    for name, s in rss.items():
        print(f"  RSS {name}: start {s['start']:.0f} MiB, end {s['end']:.0f} MiB "
              f"(2nd-quarter median {s['q2']:.0f} -> last quarter {s['q4']:.0f}, max "
              f"{s['max']:.0f})")
    print(f"  wall {wall:,.0f} s: setup {t_pub0 - t_wall:,.0f} s, publish "
          f"{t_pub - t0:,.0f} s, all stored {t_stored - t0:,.0f} s "
          f"({readings / (t_stored - t0):,.0f} readings/s), engine caught up "
          f"{t_engine - t0:,.0f} s, checks {t_checks:,.0f} s")
    print("  CPU s: " + ", ".join(f"{k} {v:,.1f}" for k, v in cpu.items())
          + f"; checks {t_checks_cpu:,.1f} (this process)")
    print("checks:", "all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
