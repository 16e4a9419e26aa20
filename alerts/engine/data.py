"""Load what an engine tick needs from the database, in a few set-based queries.

- `load_channels`: every channel of a non-retired device, with the device's hazard point /
  site and reporting interval (the catalogue's when the device has none);
- `load_overrides`: the engine_rules table as {(scope, scope_id): params};
- `load_samples`: readings newer than each channel's watermark up to the engine clock, in one
  query over (channel_id, ts) index ranges, returned as tick.Samples;
- `channels_with_new_readings`: which channels hold readings beyond their saved watermark,
  answered by the server (for steps that were not told which channels changed);
- `load_memory`: the readings at or before each watermark that the rings need after a
  restart (rain: 72 h; other groups: their ring length in reporting intervals, with margin);
- `regional_levels` / `RegionalFloors`: the regional-warning floor of every hazard-point
  target at a data time (the latter recomputes it only when its inputs change).

Rows come through geowarn/readings_bulk.py: one binary COPY parsed by numpy, the same on
plain PostgreSQL and TimescaleDB.
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
from alerts.engine.tick_setup import DISP_MEMORY_S
from devices.catalogue import load_catalogue
from geowarn import readings_bulk
from geowarn.errors import InvalidInput
from gis.regional import regional_floor


def load_channels(conn: psycopg.Connection) -> list[ChannelInfo]:
    catalogue = load_catalogue()
    rows = conn.execute(
        "SELECT c.channel_id, c.device_id, c.kind, c.spec, d.hazard_id, d.site_id, "
        "d.reporting_interval_s, d.lon, d.lat FROM channels c JOIN devices d USING (device_id) "
        "WHERE d.status <> 'retired' ORDER BY c.channel_id").fetchall()
    out = []
    for cid, dev, kind, spec, hazard, site, interval, lon, lat in rows:
        if interval is None:
            try:
                interval = catalogue.kind(kind).reporting_interval_s
            except InvalidInput:  # a kind no longer in the catalogue: hourly by default
                interval = 3600
        out.append(ChannelInfo(cid, dev, kind, spec, hazard, site, float(interval), lon, lat))
    return out


def load_overrides(conn: psycopg.Connection) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(s, i): p for s, i, p in conn.execute(
        "SELECT scope, scope_id, params FROM engine_rules")}


def _ts(seconds: float) -> datetime | float:
    return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else seconds


def _fetch(conn: psycopg.Connection, setup: Setup, ids: Sequence[int],
           lower: Sequence[datetime | float], upper: Sequence[datetime | float],
           inclusive_lower: bool) -> Samples:
    got = readings_bulk.ranges(conn, ids, lower, upper, inclusive_lower=inclusive_lower)
    if not got.t.size:
        return Samples.empty()
    return Samples(setup.rows_of(got.channel_id), got.t, got.value, got.quality)


def channels_with_new_readings(conn: psycopg.Connection, engine: str, setup: Setup,
                               until: float, since: float = -math.inf) -> list[int]:
    """Rows of the channels holding readings newer than their saved watermark (a channel
    never judged: newer than `since`) up to `until`, found by the server: one index probe per
    channel and nothing sent or parsed per channel. The saved watermarks are the engine's own
    after every committed step (alerts/engine/state.py), so this equals comparing with the
    in-memory state."""
    rows = conn.execute(
        "SELECT c.channel_id FROM channels c JOIN devices d USING (device_id) "
        "LEFT JOIN engine_state_rows s ON s.engine = %(engine)s AND s.scope = 'channel' "
        "AND s.key = c.channel_id::text "
        "WHERE d.status <> 'retired' AND EXISTS (SELECT 1 FROM readings r "
        "WHERE r.channel_id = c.channel_id AND r.ts <= %(until)s::timestamptz AND r.ts > "
        "coalesce(to_timestamp(s.watermark), %(since)s::timestamptz))",
        {"engine": engine, "until": readings_bulk.bound(_ts(until)),
         "since": readings_bulk.bound(_ts(since))}).fetchall()
    index = setup.index
    return sorted(index[r[0]] for r in rows if r[0] in index)


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


def memory_ranges(setup: Setup, state: EngineState
                  ) -> tuple[list[int], list[datetime], list[datetime]]:
    """Channel ids and (lower, upper] bounds of what the rings held before a restart:
    (watermark − lookback, watermark]."""
    ids, lo, hi = [], [], []
    for i, c in enumerate(setup.channels):
        w = float(state.watermark[i])
        if not math.isfinite(w):
            continue
        method = setup.params[i].method
        if method == "rainfall":
            back = max(RAIN_WINDOWS_H) * 3600.0
        elif method == "displacement":
            back = DISP_MEMORY_S
        elif method in RING_K:
            back = RING_K[method] * c.reporting_interval_s * 1.5
        else:
            continue
        ids.append(c.channel_id)
        lo.append(datetime.fromtimestamp(w - back, UTC))
        hi.append(datetime.fromtimestamp(w, UTC))
    return ids, lo, hi


def load_memory(conn: psycopg.Connection, setup: Setup, state: EngineState) -> Samples:
    """Readings the rings held before a restart, in one binary COPY."""
    ids, lo, hi = memory_ranges(setup, state)
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


class RegionalFloors:
    """`regional_levels` computed only when its inputs change: the regional warnings valid
    at the clock (usually none) and the hazard points. A step reads those fingerprints (two
    small queries) instead of every hazard point's polygon."""

    def __init__(self) -> None:
        self._setup: Setup | None = None
        self._key: tuple[Any, ...] = ()
        self._levels = np.zeros(0, np.int8)

    def levels(self, conn: psycopg.Connection, setup: Setup, at: float) -> np.ndarray:
        when = datetime.fromtimestamp(at, UTC)
        active = tuple(conn.execute(
            "SELECT warning_id, level, valid_from, valid_to, cancelled_at, county_codes, "
            "md5(coalesce(geometry::text, '')) FROM regional_warnings "
            "WHERE valid_from <= %s AND valid_to > %s AND (cancelled_at IS NULL OR "
            "cancelled_at > %s) ORDER BY warning_id", (when, when, when)).fetchall())
        if not active:
            return np.zeros(len(setup.targets), np.int8)
        hazards = conn.execute("SELECT count(*), max(updated_at) FROM hazard_points").fetchone()
        key = (active, tuple(hazards or ()))
        if setup is not self._setup or key != self._key:
            self._levels = regional_levels(conn, setup, at)
            self._setup, self._key = setup, key
        return self._levels.copy()
