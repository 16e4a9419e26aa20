"""The soak's checks (bench/soak.py), read from the store, not from what was sent: every
expected reading stored exactly once with its value, and the alerts each fault should and
should not raise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from bench.soak_fleet import Expected, Plan
from simulators.replay import scalar


def check_store(url: str, plan: Plan, channel: dict[int, int], exp: Expected) -> dict[str, int]:
    dev, ts, val = exp.arrays()
    ch = np.array([channel[i] for i in range(plan.n)], np.int32)[dev]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE soak_expected (channel_id int4, ts timestamptz, "
                     "value float8)")
        with conn.cursor() as cur, cur.copy("COPY soak_expected FROM STDIN") as copy:
            for c, t, v in zip(ch.tolist(), ts.tolist(), val.tolist(), strict=True):
                copy.write_row((c, datetime.fromtimestamp(t / 1000.0, UTC), v))
        stored = scalar(conn, "SELECT count(*) FROM readings")
        missing = scalar(conn, "SELECT count(*) FROM soak_expected e LEFT JOIN readings r ON "
                         "r.channel_id = e.channel_id AND r.ts = e.ts WHERE r.channel_id IS NULL")
        wrong = scalar(conn, "SELECT count(*) FROM soak_expected e JOIN readings r ON "
                       "r.channel_id = e.channel_id AND r.ts = e.ts WHERE r.value <> e.value")
        extra = scalar(conn, "SELECT count(*) FROM readings r WHERE NOT EXISTS (SELECT 1 FROM "
                       "soak_expected e WHERE e.channel_id = r.channel_id AND e.ts = r.ts)")
        dead = scalar(conn, "SELECT count(*) FROM dead_letters")
        size = scalar(conn, "SELECT pg_total_relation_size('readings')")
    return {"expected": int(dev.size), "stored": stored, "missing": missing,
            "wrong_value": wrong, "extra": extra, "dead_letters": dead, "readings_bytes": size}


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
