"""Load what an engine tick needs from the database, in a few set-based queries.

- `load_channels`: every channel of a non-retired device, with the device's hazard point /
  site and reporting interval (the catalogue's when the device has none);
- `load_overrides`: the engine_rules table as {(scope, scope_id): params};
- `load_samples`: readings newer than each channel's watermark up to the engine clock, in one
  query over (channel_id, ts) index ranges, returned as tick.Samples;
- `load_memory`: the readings at or before each watermark that the rings need after a
  restart (rain: 72 h; other groups: their ring length in reporting intervals, with margin);
- `regional_levels`: the regional-warning floor of every hazard-point target at a data time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from alerts.engine.rules import RAIN_WINDOWS_H, ChannelInfo
from alerts.engine.tick import RING_K, EngineState, Samples, Setup
from devices.catalogue import load_catalogue
from geowarn.errors import InvalidInput
from gis.regional import regional_floor


def load_channels(conn: psycopg.Connection) -> list[ChannelInfo]:
    catalogue = load_catalogue()
    rows = conn.execute(
        "SELECT c.channel_id, c.device_id, c.kind, c.spec, d.hazard_id, d.site_id, "
        "d.reporting_interval_s FROM channels c JOIN devices d USING (device_id) "
        "WHERE d.status <> 'retired' ORDER BY c.channel_id").fetchall()
    out = []
    for cid, dev, kind, spec, hazard, site, interval in rows:
        if interval is None:
            try:
                interval = catalogue.kind(kind).reporting_interval_s
            except InvalidInput:  # a kind no longer in the catalogue: hourly by default
                interval = 3600
        out.append(ChannelInfo(cid, dev, kind, spec, hazard, site, float(interval)))
    return out


def load_overrides(conn: psycopg.Connection) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(s, i): p for s, i, p in conn.execute(
        "SELECT scope, scope_id, params FROM engine_rules")}


def _ts(seconds: float) -> datetime | float:
    return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else -math.inf


def _fetch(conn: psycopg.Connection, setup: Setup, ids: Sequence[int],
           lower: Sequence[datetime | float], upper: Sequence[datetime | float],
           inclusive_lower: bool) -> Samples:
    index = {c.channel_id: i for i, c in enumerate(setup.channels)}
    op = ">=" if inclusive_lower else ">"
    # All bounds go as text: psycopg has no float -> timestamptz adapter for ±infinity, and
    # it refuses a list mixing datetimes and strings (a new channel next to known ones).
    lo = [x.isoformat() if isinstance(x, datetime) else "-infinity" for x in lower]
    hi = [x.isoformat() if isinstance(x, datetime) else "infinity" for x in upper]
    rows = conn.execute(
        "SELECT r.channel_id, extract(epoch FROM r.ts)::float8, r.value, r.quality "
        "FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS w(id, lo, hi) "
        f"JOIN readings r ON r.channel_id = w.id AND r.ts {op} w.lo AND r.ts <= w.hi "
        "ORDER BY r.channel_id, r.ts", (list(ids), lo, hi)).fetchall()
    if not rows:
        return Samples.empty()
    cid, t, v, q = (np.array(col) for col in zip(*rows, strict=True))
    ch = np.array([index[int(c)] for c in cid], np.int64)
    return Samples(ch, t.astype(np.float64), v.astype(np.float64), q.astype(np.int8))


def load_samples(conn: psycopg.Connection, setup: Setup, state: EngineState, until: float,
                 channel_indices: Sequence[int] | None = None,
                 since: float = -math.inf) -> Samples:
    """Readings with watermark < ts <= until for the given channels (default: all); a
    channel never judged (no watermark) starts after `since`."""
    idx = range(setup.n) if channel_indices is None else channel_indices
    if not len(idx):
        return Samples.empty()
    ids = [setup.channels[i].channel_id for i in idx]
    up = _ts(until)
    lows = [float(state.watermark[i]) for i in idx]
    return _fetch(conn, setup, ids, [_ts(w if math.isfinite(w) else since) for w in lows],
                  [up] * len(ids), inclusive_lower=False)


def load_memory(conn: psycopg.Connection, setup: Setup, state: EngineState) -> Samples:
    """Readings the rings held before a restart: (watermark − lookback, watermark]."""
    ids, lo, hi = [], [], []
    for i, c in enumerate(setup.channels):
        w = float(state.watermark[i])
        if not math.isfinite(w):
            continue
        method = setup.params[i].method
        if method == "rainfall":
            back = max(RAIN_WINDOWS_H) * 3600.0
        elif method in RING_K:
            back = RING_K[method] * c.reporting_interval_s * 1.5
        else:
            continue
        ids.append(c.channel_id)
        lo.append(_ts(w - back))
        hi.append(_ts(w))
    if not ids:
        return Samples.empty()
    return _fetch(conn, setup, ids, lo, hi, inclusive_lower=False)


def regional_levels(conn: psycopg.Connection, setup: Setup, at: float) -> np.ndarray:
    """Floor level per target (0 for sites, devices and unknown hazard points)."""
    out = np.zeros(len(setup.targets), np.int8)
    hazard_ids = [tid for t, tid in setup.targets if t == "hazard"]
    if not hazard_ids:
        return out
    known = {r[0] for r in conn.execute(
        "SELECT hazard_id FROM hazard_points WHERE hazard_id = ANY(%s)", (hazard_ids,))}
    if not known:
        return out
    floors = regional_floor(conn, sorted(known), datetime.fromtimestamp(at, UTC))
    for i, (t, tid) in enumerate(setup.targets):
        if t == "hazard" and tid in floors:
            out[i] = int(floors[tid])
    return out
