"""Benchmark of the notifier: a red warning to 500 households through the real twilio client.

    .venv/bin/python -m bench.notify [--households 500] [--notifiers 1 2] [--raw 2000]

In one run, on this machine, against the local fake of Twilio's REST API
(tests/fixtures/fake_twilio.py; callbacks off):
1. Baseline: the fake's own raw accept rate: `--raw` Messages create requests sent straight
   with requests.Session from as many threads as a notifier uses (4), no database.
2. For each count in --notifiers: that many `python -m notify notify` processes (LISTENing),
   a hazard point with `--households` households (and shelters for all), then one red
   level change committed; measured: time from the commit to the last resident SMS
   accepted by the fake, and messages accepted per second per notifier (SMS and calls, from
   the first acceptance to the last) against the raw rate: the ratio is the figure to read.
Pacing is set far above the run's rate (GEOWARN_TWILIO_RATE_PER_S), so this measures the
notifier's own cost (planning, claims, records), not an account's sending rate.
Needs PostgreSQL (GEOWARN_DATABASE_URL's server or 127.0.0.1:5432); a scratch database is
created and dropped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests
from psycopg import sql

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from geowarn import migrate
from tests import notify_world as world
from tests.fixtures import fake_twilio

ROOT = Path(__file__).resolve().parent.parent
SENDER = "+8610690000001"


def _admin_url() -> str:
    return os.environ.get("GEOWARN_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def raw_rate(fake: fake_twilio.FakeTwilio, n: int, threads: int = 4) -> float:
    url = f"{fake.base_url}/2010-04-01/Accounts/{fake.account}/Messages.json"
    sessions = [requests.Session() for _ in range(threads)]

    def post(i: int) -> None:
        r = sessions[i % threads].post(url, data={"To": f"+86137{i:08d}", "From": SENDER,
                                                  "Body": f"raw {i}"},
                                       auth=(fake.account, fake.token), timeout=10)
        r.raise_for_status()

    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(n)))
    return n / (time.monotonic() - start)


def _notifiers(db_url: str, fake: fake_twilio.FakeTwilio, count: int,
               tag: str) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
    env.update(GEOWARN_DATABASE_URL=db_url, GEOWARN_TWILIO_ACCOUNT_SID=fake.account,
               GEOWARN_TWILIO_AUTH_TOKEN=fake.token, GEOWARN_TWILIO_FROM=SENDER,
               GEOWARN_TWILIO_API_BASE=fake.base_url, GEOWARN_TWILIO_RATE_PER_S="1000000")
    return [subprocess.Popen([sys.executable, "-m", "notify", "notify", "--name",
                              f"bench-{tag}-{i}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(count)]


def _wait_listening(conn: psycopg.Connection, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # startup only: no event to wait on
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND query = 'LISTEN geowarn_outbox'").fetchone()
        if row and row[0] >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("notifiers did not start")


def one_run(conn: psycopg.Connection, db_url: str, fake: fake_twilio.FakeTwilio,
            households: int, notifiers: int) -> dict[str, float]:
    hid = f"BENCH-{notifiers}"
    world.build(conn, households=households, hid=hid, shelters=((households * 6, 0),),
                officers=notifiers == 1)
    residents = {f"+86{1360:04d}{i:07d}" for i in range(households)}
    before = {r.sid for r in (*fake.messages(), *fake.calls())}
    procs = _notifiers(db_url, fake, notifiers, str(notifiers))
    try:
        _wait_listening(conn, notifiers)
        expected_calls = households + 1  # residents and the monitor are also called
        committed = time.monotonic()
        apply_changes(conn, [LevelChange("hazard", hid, "deformation", Level.RED,
                                         world.T0)], engine="bench")

        def done(f: fake_twilio.FakeTwilio) -> bool:
            new_sms = [m for m in f.messages() if m.sid not in before and m.to in residents]
            new_calls = [c for c in f.calls() if c.sid not in before]
            return len(new_sms) >= households and len(new_calls) >= expected_calls

        if not fake.wait_for(done, timeout=600):
            raise RuntimeError("the notifiers did not send everything in 10 minutes")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    new = [r for r in (*fake.messages(), *fake.calls()) if r.sid not in before]
    last_resident = max(r.accepted_at for r in new if r.kind == "message" and r.to in residents)
    first, last = min(r.accepted_at for r in new), max(r.accepted_at for r in new)
    return {"commit_to_last_resident_sms_s": last_resident - committed,
            "messages": float(len(new)),
            "per_notifier_per_s": len(new) / (last - first) / notifiers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--households", type=int, default=500)
    ap.add_argument("--notifiers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--raw", type=int, default=2000)
    args = ap.parse_args(argv)
    admin = _admin_url()
    name = f"geowarn_bench_notify_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        migrate.upgrade(db_url)
        with fake_twilio.serve() as fake, psycopg.connect(db_url, autocommit=True) as conn:
            fake.callbacks_on = False
            raw = raw_rate(fake, args.raw)
            print(f"fake's raw accept rate (4 threads, {args.raw} requests): {raw:,.0f} msg/s")
            for k in args.notifiers:
                r = one_run(conn, db_url, fake, args.households, k)
                print(f"{k} notifier(s), {args.households} households, red: commit -> last "
                      f"resident SMS accepted {r['commit_to_last_resident_sms_s']:.2f} s; "
                      f"{r['messages']:.0f} messages (SMS + calls), "
                      f"{r['per_notifier_per_s']:,.0f} msg/s per notifier = "
                      f"{r['per_notifier_per_s'] / raw:.2f} of the raw rate")
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
