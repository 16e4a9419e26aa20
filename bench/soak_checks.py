"""The soak's checks (bench/soak.py), read from the store, not from what was sent: every
expected reading stored exactly once with its value, and the alerts each fault should and
should not raise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg

from alerts.engine.data import load_channels, load_overrides
from alerts.engine.rules import RuleParams, resolve
from bench.soak_expect import Expectations, expectations
from bench.soak_fleet import Expected, Plan
from simulators.replay import scalar

# One binary COPY tuple of (channel_id int4, ts timestamptz, value float8): field count, then
# each field's length and value, big-endian; timestamptz is microseconds since 2000-01-01.
_ROW = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("channel_id", ">i4"), ("l1", ">i4"),
                 ("ts", ">i8"), ("l2", ">i4"), ("value", ">f8")])
_PG_EPOCH_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
_CHUNK = 1_000_000


def _copy_expected(conn: psycopg.Connection, ch: np.ndarray, ts_ms: np.ndarray,
                   val: np.ndarray) -> None:
    """The expected readings into soak_expected in one binary COPY built by numpy (exact
    float8 values; no Python object per reading)."""
    with conn.cursor() as cur, cur.copy("COPY soak_expected FROM STDIN (FORMAT binary)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))  # signature, flags, extension
        for a in range(0, ch.size, _CHUNK):
            rows = np.empty(min(_CHUNK, ch.size - a), _ROW)
            rows["nf"], rows["l0"], rows["l1"], rows["l2"] = 3, 4, 8, 8
            rows["channel_id"] = ch[a:a + _CHUNK]
            rows["ts"] = (ts_ms[a:a + _CHUNK] - _PG_EPOCH_MS) * 1000
            rows["value"] = val[a:a + _CHUNK]
            copy.write(rows.tobytes())
        copy.write(b"\xff\xff")  # trailer


def check_store(url: str, plan: Plan, channel: dict[int, int], exp: Expected) -> dict[str, int]:
    dev, ts, val = exp.arrays()
    ch = np.array([channel[i] for i in range(plan.n)], np.int32)[dev]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE soak_expected (channel_id int4, ts timestamptz, "
                     "value float8)")
        _copy_expected(conn, ch, ts.astype(np.int64), val.astype(np.float64))
        stored = scalar(conn, "SELECT count(*) FROM readings")
        missing = scalar(conn, "SELECT count(*) FROM soak_expected e LEFT JOIN readings r ON "
                         "r.channel_id = e.channel_id AND r.ts = e.ts WHERE r.channel_id IS NULL")
        wrong = scalar(conn, "SELECT count(*) FROM soak_expected e JOIN readings r ON "
                       "r.channel_id = e.channel_id AND r.ts = e.ts WHERE r.value <> e.value")
        extra = scalar(conn, "SELECT count(*) FROM readings r WHERE NOT EXISTS (SELECT 1 FROM "
                       "soak_expected e WHERE e.channel_id = r.channel_id AND e.ts = r.ts)")
        if missing:  # which: the database is dropped after the run
            print("missing readings (channel, count, first, last), most first:", conn.execute(
                "SELECT e.channel_id, count(*), min(e.ts)::text, max(e.ts)::text FROM "
                "soak_expected e LEFT JOIN readings r ON r.channel_id = e.channel_id AND "
                "r.ts = e.ts WHERE r.channel_id IS NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 12"
            ).fetchall(), "newest stored:", conn.execute(
                "SELECT max(ts)::text, max(ingested_at)::text FROM readings").fetchone(),
                flush=True)
        dead = scalar(conn, "SELECT count(*) FROM dead_letters")
        # One message resent (a device's duplicate, a broker's redelivery) is the same payload.
        dead_distinct = scalar(conn, "SELECT count(DISTINCT payload) FROM dead_letters "
                                     "WHERE reason = 'timestamp_future'")
        dead_other = scalar(conn, "SELECT count(*) FROM dead_letters "
                                  "WHERE reason <> 'timestamp_future'")
        size = scalar(conn, "SELECT pg_total_relation_size('readings')")
    return {"expected": int(dev.size), "stored": stored, "missing": missing,
            "wrong_value": wrong, "extra": extra, "dead_letters": dead,
            "dead_letters_distinct": dead_distinct, "dead_letters_other": dead_other,
            "readings_bytes": size}


def device_rules(url: str, plan: Plan, channel: dict[int, int]) -> dict[int, RuleParams]:
    """Each device's (one channel's) effective rule, resolved from the store as the engine
    resolves it."""
    with psycopg.connect(url, autocommit=True) as conn:
        channels = load_channels(conn)
        params = resolve(channels, load_overrides(conn))
    by_channel = {c.channel_id: p for c, p in zip(channels, params, strict=True)}
    return {i: by_channel[channel[i]] for i in range(plan.n)}


def expected_alerts(url: str, plan: Plan, channel: dict[int, int],
                    exp: Expected) -> Expectations:
    """What the faults must (and must not) raise under the rules in the store."""
    faulty = sorted(set(plan.stuck) | set(plan.offline) | plan.flood)
    dev, ts, val = exp.arrays()
    keep = np.isin(dev, faulty)
    dev, ts, val = dev[keep], ts[keep], val[keep]
    order = np.lexsort((ts, dev))
    dev, ts, val = dev[order], ts[order], val[order]
    late_set = set(exp.late)
    cuts = np.searchsorted(dev, faulty + [plan.n])
    series = {}
    for k, d in enumerate(faulty):
        sl = slice(cuts[k], cuts[k + 1])
        late = np.array([(d, int(t)) in late_set for t in ts[sl].tolist()], bool)
        series[d] = (ts[sl] / 1000.0, val[sl], late)
    return expectations(set(plan.stuck), set(plan.offline), plan.flood, series,
                        device_rules(url, plan, channel), float(np.abs(plan.skew_s).max()))


def check_alerts(url: str, plan: Plan, want: Expectations) -> dict[str, object]:
    """The alerts in the store against `want`; "ok" says whether every check passed."""
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
    stuck_cm = set(plan.stuck) - stuck_wl
    alerted = set().union(*by_kind.values()) if by_kind else set()
    wl, maint = hazard.get("water_level", set()), by_kind.get("maintenance", set())
    dq = by_kind.get("data_quality", set())
    # A resting crack repeats its value too: only a stuck stage gauge must be flagged.
    stuck_must = want.stuck_must & stuck_wl
    found = {
        "flooding gauges with a water-level alert (of those that must)": (
            len(want.flood_must & wl), len(want.flood_must)),
        "offline devices with a maintenance alert (of those that must)": (
            len(want.offline_must & maint), len(want.offline_must)),
        "stuck water-level gauges with a data-quality alert (of those that must)": (
            len(stuck_must & dq), len(stuck_must)),
    }
    wrong = {
        "hazard alerts on a target that did not flood": sorted(
            set().union(*hazard.values()) - plan.flood) if hazard else [],
        "offline devices too briefly silent, with a maintenance alert": sorted(
            want.offline_must_not & maint),
        "stuck devices too briefly stuck, with a data-quality alert": sorted(
            want.stuck_must_not & dq),
        "healthy devices with any alert": sorted(plan.healthy & alerted),
    }
    ok = all(a == b for a, b in found.values()) and not any(wrong.values())
    out: dict[str, object] = {
        "alerts by kind": {k: len(v) for k, v in sorted(by_kind.items())},
        **found, **wrong,
        "flooding gauges with a water-level alert (all)": (
            len(plan.flood & wl), len(plan.flood)),
        "offline devices with a maintenance alert (all)": (len(set(plan.offline) & maint),
                                                           len(plan.offline)),
        "stuck water-level gauges with a data-quality alert (all)": (
            len(stuck_wl & dq), len(stuck_wl)),
        "stuck crack meters with a data-quality alert (not required; of those long "
        "enough)": (len(stuck_cm & dq), len(stuck_cm), len(want.stuck_must & stuck_cm)),
        "spiky devices with a data-quality alert": (
            len(set(plan.spikes) & by_kind.get("data_quality", set())), len(plan.spikes)),
        "flood levels": sorted({levels[("water_level", d)] for d in plan.flood
                                if ("water_level", d) in levels}),
    }
    out["ok"] = ok
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
