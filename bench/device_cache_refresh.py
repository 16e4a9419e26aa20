"""Benchmark: the gateway device cache's periodic refresh right after a bulk registration.

    .venv/bin/python -m bench.device_cache_refresh [--devices 30000] [--repeats 3]

One fresh database with `--devices` crack meters (one channel each) written in one
statement, as a bulk registration or import writes them; the cache loaded whole after it.
Then, `--repeats` times, the gateway CPU (process time) of one periodic refresh:
- shipped (ingest/device_cache.py `refresh_changed`): the devices written by a transaction
  the previous read's snapshot did not see (devices.changed_xid, migration 0145);
- baseline, in the same run: what the refresh read before, every device with updated_at
  in the last 300 s (the overlap for late commits), built into DeviceInfo the same way.
The gateway refreshes every 30 s on its message path (the decoder thread), so the baseline
stalled messages for this long, for 5 minutes after every bulk change.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from bench.store import LOCAL_ADMIN, fresh_database
from devices.messages import Calibration, DeviceInfo
from ingest.device_cache import DeviceCache


def overlap_refresh(conn: psycopg.Connection, since: datetime) -> dict[str, DeviceInfo]:
    """The replaced refresh: every device updated after `since` (the last refresh's server
    time minus the 300 s overlap), with its calibrations."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT device_id, profile, status, kind FROM devices "
                           "WHERE updated_at > %s", (since,)).fetchall()
        cal: dict[str, dict[str, Calibration]] = {}
        for c in cur.execute("SELECT device_id, channel, cal_scale, cal_offset FROM channels "
                             "WHERE device_id = ANY(%s)", ([r["device_id"] for r in rows],)):
            cal.setdefault(c["device_id"], {})[c["channel"]] = Calibration(c["cal_scale"],
                                                                           c["cal_offset"])
    return {r["device_id"]: DeviceInfo(device_id=r["device_id"], profile=r["profile"],
                                       status=r["status"], kind=r["kind"],
                                       calibration=cal.get(r["device_id"], {})) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    with fresh_database(args.admin_url, f"bench_device_cache_{os.getpid()}") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO devices (device_id, kind) SELECT 'CM' || i, "
                         "'crack_meter' FROM generate_series(1, %s) i", (args.devices,))
            conn.execute("INSERT INTO channels (device_id, channel, kind, spec, unit) "
                         "SELECT device_id, 'opening', 'crack_meter', 'opening', 'mm' "
                         "FROM devices")
        cache = DeviceCache(lambda: psycopg.connect(url))
        t = time.process_time()
        cache.refresh()
        whole = time.process_time() - t
        shipped, baseline = [], []
        for _ in range(args.repeats):
            t = time.process_time()
            n_new = cache.refresh_changed()
            shipped.append(time.process_time() - t)
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT now()").fetchone()
                assert row is not None
                t = time.process_time()
                n_old = len(overlap_refresh(conn, row[0] - timedelta(seconds=300)))
                baseline.append(time.process_time() - t)
        ms_new, ms_old = 1000 * min(shipped), 1000 * min(baseline)
        print(f"{args.devices:,} devices just written: whole reload {1000 * whole:.0f} ms CPU; "
              f"periodic refresh, shipped {ms_new:.1f} ms ({n_new} devices read) | baseline "
              f"(300 s look-back) {ms_old:.0f} ms ({n_old} devices read) | ratio "
              f"{ms_new / ms_old:.4f} (best of {args.repeats}; load average "
              f"{os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
