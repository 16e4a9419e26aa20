"""Load what an engine tick needs from the database, in a few set-based queries.

- `load_channels`: every channel of a non-retired device, with the device's hazard point /
  site and reporting interval (the catalogue's when the device has none);
- `load_overrides`: the engine_rules table as {(scope, scope_id): params};
- `load_samples`: readings newer than each channel's watermark up to the engine clock, in one
  query over (channel_id, ts) index ranges, returned as tick.Samples;
- `load_late`: readings that arrived since a time (per channel: its arrival mark) with data
  times behind their channel's watermark (a backlog behind live reports), over the
  (channel_id, ingested_at) index;
- `channels_with_new_readings`: which channels hold readings beyond their saved watermark,
  answered by the server (for steps that were not told which channels changed);
- `load_memory`: the readings at or before each watermark that the rings need after a
  restart (rain: 72 h; other groups: their ring length in reporting intervals, with margin),
  and the displacement history's older hours as their middle values (`disp_hours`: one row
  per hour from the store, not every reading of 45 days);
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

from alerts.engine.disp_history import HOUR, OPEN_K, middle_times
from alerts.engine.rule_params import RAIN_WINDOWS_H
from alerts.engine.rules import ChannelInfo
from alerts.engine.tick import RING_K, EngineState, Samples, Setup
from alerts.engine.tick_setup import DISP_MEMORY_S
from alerts.methods.quality import HAMPEL_HALF
from devices.catalogue import load_catalogue
from geowarn import readings_bulk
from geowarn.errors import InvalidInput
from gis.regional import regional_floor


def load_channels(conn: psycopg.Connection,
                  channel_ids: Sequence[int] | None = None) -> list[ChannelInfo]:
    """Every judged channel, or only those of `channel_ids` (the console's velocity chart)."""
    catalogue = load_catalogue()
    rows = conn.execute(
        "SELECT c.channel_id, c.device_id, c.kind, c.spec, d.hazard_id, d.site_id, "
        "d.reporting_interval_s, d.lon, d.lat FROM channels c JOIN devices d USING (device_id) "
        "WHERE d.status <> 'retired' AND (%s::int4[] IS NULL OR c.channel_id = ANY(%s::int4[])) "
        "ORDER BY c.channel_id", (channel_ids, channel_ids)).fetchall()
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


def load_late(conn: psycopg.Connection, setup: Setup, state: EngineState,
              arrived_since: datetime | np.ndarray,
              channel_indices: Sequence[int] | None = None) -> Samples:
    """Readings stored at or after `arrived_since` (ingested_at, the store's arrival
    stamp; one time for every channel, or per setup row in seconds since the epoch: the
    service's arrival marks, alerts/engine/arrival.py) whose data time is behind their
    channel's watermark and inside the longest window (watermark − 72 h, watermark): a
    backlog that arrived after newer readings, which `load_samples` (data time after the
    watermark) never fetches. The reading at the watermark is the one judged there (one
    reading per channel and time). One probe per channel of the (channel_id, ingested_at)
    index (migration 0160, both store paths), when anything was stored since at all; the
    lower bound on ts also excludes TimescaleDB chunks. A reading judged already comes
    back when it arrived in the same span (a burst's older readings): the tick counts a
    time once."""
    idx = range(setup.n) if channel_indices is None else channel_indices
    rows = [i for i in idx if math.isfinite(float(state.watermark[i]))]
    if not rows:
        return Samples.empty()
    marks = [float(state.watermark[i]) for i in rows]
    if isinstance(arrived_since, datetime):
        sinces = [arrived_since.timestamp()] * len(rows)
    else:
        sinces = np.asarray(arrived_since, np.float64)[rows].tolist()
    span = max(RAIN_WINDOWS_H) * 3600.0
    lowest = datetime.fromtimestamp(min(marks) - span, UTC)
    # Nothing stored since (a replay of what was loaded before): one probe of the
    # ingested_at index instead of one per channel.
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM readings WHERE ingested_at >= "
                       "to_timestamp(%s) AND ts >= %s)", (min(sinces), lowest)).fetchone()
    if not (row and row[0]):
        return Samples.empty()
    got = conn.execute(LATE_SQL, {
        "ids": [setup.channels[i].channel_id for i in rows], "marks": marks,
        "sinces": sinces, "span": span, "lowest": lowest}).fetchall()
    if not got:
        return Samples.empty()
    return Samples(setup.rows_of(np.array([g[0] for g in got], np.int64)),
                   np.array([g[1] for g in got], np.float64),
                   np.array([g[2] for g in got], np.float64),
                   np.array([g[3] for g in got], np.int8))


# Per channel: its watermark (`mark`) and the arrival stamp it is read from (`since`).
LATE_SQL = (
    "SELECT w.channel_id, extract(epoch FROM r.ts)::float8, r.value, r.quality "
    "FROM unnest(%(ids)s::int4[], %(marks)s::float8[], %(sinces)s::float8[]) "
    "AS w(channel_id, mark, since) "
    "CROSS JOIN LATERAL (SELECT ts, value, quality FROM readings x "
    "WHERE x.channel_id = w.channel_id AND x.ingested_at >= to_timestamp(w.since) "
    "AND x.ts >= %(lowest)s::timestamptz AND x.ts < to_timestamp(w.mark) "
    "AND x.ts > to_timestamp(w.mark - %(span)s)) r "
    "ORDER BY w.channel_id, r.ts")


def load_spans(conn: psycopg.Connection, setup: Setup,
               spans: tuple[Sequence[int], Sequence[float], Sequence[float]]) -> Samples:
    """Stored readings of channel rows `spans[0]` with spans[1] <= ts <= spans[2] (seconds):
    what a displacement channel with late readings is judged again from
    (alerts/engine/disp_late.py `plan`)."""
    rows, lo, hi = spans
    if not len(rows):
        return Samples.empty()
    return _fetch(conn, setup, [setup.channels[i].channel_id for i in rows],
                  [datetime.fromtimestamp(x, UTC) for x in lo],
                  [datetime.fromtimestamp(x, UTC) for x in hi], inclusive_lower=True)


def merge_samples(a: Samples, b: Samples) -> Samples:
    """Two sample sets as one, sorted by channel, then time (as the tick takes them)."""
    if not b.ch.size:
        return a
    ch, t = np.r_[a.ch, b.ch], np.r_[a.t, b.t]
    order = np.lexsort((t, ch))
    return Samples(ch[order], t[order], np.r_[a.v, b.v][order],
                   np.r_[a.q, b.q][order].astype(np.int8))


def _hour_floor(seconds: float) -> float:
    return math.floor(seconds / HOUR) * HOUR


def _disp_from_hours(setup: Setup, i: int) -> bool:
    """Whether channel row i's older displacement history reloads as hourly middle values:
    a rate rule judges each reading against the one before it, which needs every reading."""
    return (setup.params[i].method == "displacement"
            and not math.isfinite(float(setup.p["implausible_rate_per_h"][i])))


def memory_ranges(setup: Setup, state: EngineState, hours: bool = False
                  ) -> tuple[list[int], list[datetime], list[datetime]]:
    """Channel ids and (lower, upper] bounds of the raw readings the memory held before a
    restart: (watermark − lookback, watermark]; displacement: every reading of its history's
    hours. With `hours` (what `load_memory` reads raw), displacement only its ring's span,
    from a whole hour on: the older hours of its history come from `disp_hour_ranges`."""
    ids, lo, hi = [], [], []
    for i, c in enumerate(setup.channels):
        w = float(state.watermark[i])
        if not math.isfinite(w):
            continue
        method = setup.params[i].method
        if method == "rainfall":
            start = w - max(RAIN_WINDOWS_H) * 3600.0
        elif hours and _disp_from_hours(setup, i):
            # from the start of an hour, so no hour is part raw, part middle values; -1 µs:
            # the bound is exclusive and the hour's first reading may lie on its edge
            start = _hour_floor(w - RING_K[method] * c.reporting_interval_s * 1.5) - 1e-6
        elif method == "displacement":  # every reading of the history's hours
            start = _hour_floor(w - DISP_MEMORY_S) - 1e-6
        elif method in RING_K:
            start = w - RING_K[method] * c.reporting_interval_s * 1.5
        else:
            continue
        ids.append(c.channel_id)
        lo.append(datetime.fromtimestamp(start, UTC))
        hi.append(datetime.fromtimestamp(w, UTC))
    return ids, lo, hi


def disp_hour_ranges(setup: Setup, state: EngineState
                     ) -> tuple[list[int], list[datetime], list[datetime], list[int]]:
    """Channel ids, [lower, upper) whole-hour bounds and channel rows of the displacement
    history a restart reloads as hourly middle values: the whole hours reaching back
    DISP_MEMORY_S (the history's length), before the raw span of `memory_ranges`."""
    ids, lo, hi, rows = [], [], [], []
    for i in setup.group_rows["displacement"].tolist():
        w = float(state.watermark[i])
        if not (math.isfinite(w) and _disp_from_hours(setup, i)):
            continue
        c = setup.channels[i]
        end = _hour_floor(w - RING_K["displacement"] * c.reporting_interval_s * 1.5)
        start = _hour_floor(w - DISP_MEMORY_S)  # whole hours: the oldest one in full
        if end <= start:
            continue
        ids.append(c.channel_id)
        lo.append(datetime.fromtimestamp(start, UTC))
        hi.append(datetime.fromtimestamp(end, UTC))
        rows.append(i)
    return ids, lo, hi, rows


def load_memory(conn: psycopg.Connection, setup: Setup, state: EngineState) -> Samples:
    """Readings the rings and the displacement history held before a restart: raw readings
    in one binary COPY, and the displacement history's older hours as two samples per hour
    (its middle values) in another, bounded by hours, not by the sampling rate."""
    ids, lo, hi = memory_ranges(setup, state, hours=True)
    raw = _fetch(conn, setup, ids, lo, hi, inclusive_lower=False) if ids else Samples.empty()
    hours = disp_hours(conn, setup, state)
    if not hours.ch.size:
        return raw
    # The rings are refilled from each channel's newest raw readings (tick_quality's
    # fill_memory); a channel whose raw span holds fewer (a gap) reloads its raw readings
    # over the whole lookback instead of middle values.
    need = RING_K["displacement"] + 2 * HAMPEL_HALF + 1
    short = np.setdiff1d(np.unique(hours.ch), raw.ch[np.bincount(raw.ch, minlength=setup.n)[
        raw.ch] >= need])
    if short.size:
        w = state.watermark[short]
        more = _fetch(conn, setup, [setup.channels[i].channel_id for i in short.tolist()],
                      [datetime.fromtimestamp(_hour_floor(x - DISP_MEMORY_S) - 1e-6, UTC)
                       for x in w.tolist()],
                      [datetime.fromtimestamp(x, UTC) for x in w.tolist()],
                      inclusive_lower=False)
        drop = np.isin(raw.ch, short)
        keep = ~np.isin(hours.ch, short)
        raw = Samples(np.r_[raw.ch[~drop], more.ch], np.r_[raw.t[~drop], more.t],
                      np.r_[raw.v[~drop], more.v], np.r_[raw.q[~drop], more.q])
        hours = Samples(hours.ch[keep], hours.t[keep], hours.v[keep], hours.q[keep])
    ch, t = np.r_[raw.ch, hours.ch], np.r_[raw.t, hours.t]
    order = np.lexsort((t, ch))
    return Samples(ch[order], t[order], np.r_[raw.v, hours.v][order],
                   np.r_[raw.q, hours.q][order].astype(np.int8))


def disp_hours(conn: psycopg.Connection, setup: Setup, state: EngineState) -> Samples:
    """The displacement history's older hours from the store, each as its two middle values
    (alerts/engine/disp_history.py keeps the median of the hour's newest OPEN_K readings that
    are reliable and plausible): fed to the history like readings, they give the bin the
    live readings gave, since the median of those two values is the hour's median. The
    values the range rule finds implausible are left out by the server as the screen left
    them out."""
    ids, lo, hi, rows = disp_hour_ranges(setup, state)
    if not ids:
        return Samples.empty()
    p = setup.p
    got = readings_bulk.hourly_middles(
        conn, ids, lo, hi, [float(p["implausible_min"][i]) for i in rows],
        [float(p["implausible_max"][i]) for i in rows], newest=OPEN_K)
    if not got.t.size:
        return Samples.empty()
    ch = setup.rows_of(got.channel_id)
    t_bin = middle_times(got.sec)
    return Samples(np.repeat(ch, 2), np.repeat(t_bin, 2), np.c_[got.lo, got.hi].ravel(),
                   np.zeros(2 * ch.size, np.int8))



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
