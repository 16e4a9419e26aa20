"""Persist and restore the engine's state in the database, incrementally (tables engine_state
and engine_state_rows, migrations 0045 and 0047).

Saved: what `EngineState.saved_arrays()` names, in three scopes: per channel (levels, dwell
clocks, watermarks, learnt baselines and reference sums, ...), per target (`emitted`, the
levels last emitted per hazard kind) and per device (`maintenance`). Each channel, target and
device is one row holding its values packed as one numpy record (the header row in
engine_state says which fields, dtypes and shapes: the layout), keyed by channel id, target
("hazard:HP1") and device id, so a restart with a changed registry maps what it can and
starts the rest fresh, and an engine that saves a new field maps the old rows field by field.
Not saved: the sample rings and evidence; `restore` leaves them empty and the service refills
the rings from the readings store up to each channel's watermark.

Incremental: `save` packs the current state (a memory copy of a few bytes per field and row),
compares it byte for byte with what the database holds (the `Saved` snapshot the previous
save or `restore` returned) and UPSERTs only the rows that differ. So a step's database work
is proportional to what changed, whatever the registry's size, and no part of the tick has
to remember what it touched: any field added to the saved arrays is saved incrementally too.
A restart reads every row in one query per scope.

`save` runs on the caller's connection, inside the transaction that applies the tick's level
changes: the state and the alerts it produced commit together or not at all. The caller
adopts the returned snapshot only after that commit (after a rollback it must `restore`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine.tick import EngineState, Setup
from geowarn.errors import InvalidInput

SCOPES = ("channel", "target", "device")
_SCOPE_OF = {"emitted": "target", "maintenance": "device"}  # every other array: per channel
COPY_ABOVE = 2000  # rows per scope beyond which a save streams them with COPY

Layout = list[list[Any]]  # [[name, numpy dtype str, [trailing shape]], ...]


@dataclass(frozen=True)
class Saved:
    """What the database holds for one engine, packed per scope and aligned with a setup's
    channels, targets and devices: the reference the next save diffs against."""

    layout: dict[str, Layout]
    rows: dict[str, np.ndarray]  # scope -> (n,) unstructured void records
    rewrite: bool = False  # the stored layout differs: the next save rewrites every row
    written: dict[str, int] = field(default_factory=dict)  # rows the save that made it wrote


@dataclass(frozen=True)
class Restored:
    state: EngineState
    clock: float | None  # None: nothing was saved for this engine
    saved: Saved


def keys(setup: Setup, scope: str) -> list[str]:
    """The row keys of a scope, in setup order."""
    if scope == "channel":
        return [str(c.channel_id) for c in setup.channels]
    if scope == "target":
        return [f"{t}:{i}" for t, i in setup.targets]
    return list(setup.devices)


def _scoped(state: EngineState) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in SCOPES}
    for name, arr in state.saved_arrays().items():
        out[_SCOPE_OF.get(name, "channel")][name] = np.asarray(arr)
    return out


def _layout(arrays: Mapping[str, np.ndarray]) -> Layout:
    return [[name, a.dtype.str, list(a.shape[1:])] for name, a in arrays.items()]


def _dtype(layout: Layout) -> np.dtype:
    try:
        return np.dtype([(str(n), np.dtype(d), tuple(int(x) for x in s)) for n, d, s in layout])
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"saved engine state has an unreadable layout: {exc}") from None


def _pack(arrays: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """(n,) records as unstructured void, so == compares bytes (NaN equals NaN)."""
    dt = _dtype(_layout(arrays))
    rec = np.empty(n, dt)
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise InvalidInput(f"engine state array {name!r} has {a.shape[0]} rows, not {n}")
        rec[name] = a
    return rec.view(np.dtype((np.void, dt.itemsize)))


def save(conn: psycopg.Connection, engine: str, setup: Setup, state: EngineState,
         clock: float, previous: Saved | None = None) -> Saved:
    """Write the rows that differ from `previous` (every row when it is None, or when its
    layout is not the current one) and the header; returns the new snapshot."""
    scoped = _scoped(state)
    layout = {s: _layout(a) for s, a in scoped.items()}
    sizes = {"channel": setup.n, "target": len(setup.targets), "device": len(setup.devices)}
    full = (previous is None or previous.rewrite or previous.layout != layout
            or any(previous.rows[s].shape != (sizes[s],) for s in SCOPES))
    conn.execute(
        "INSERT INTO engine_state (engine, clock, saved_at, layout) VALUES (%s, %s, now(), %s) "
        "ON CONFLICT (engine) DO UPDATE SET clock = excluded.clock, "
        "saved_at = excluded.saved_at, layout = excluded.layout",
        (engine, clock, Jsonb(layout)))
    packed, written = {}, {}
    for s in SCOPES:
        packed[s] = _pack(scoped[s], sizes[s])
        if full:
            rows = np.arange(sizes[s])
        else:
            assert previous is not None
            rows = np.flatnonzero(packed[s] != previous.rows[s])
        written[s] = int(rows.size)
        if rows.size:
            _upsert(conn, engine, s, setup, rows, packed[s],
                    state.watermark if s == "channel" else None)
    return Saved(layout, packed, False, written)


def _upsert(conn: psycopg.Connection, engine: str, scope: str, setup: Setup, rows: np.ndarray,
            packed: np.ndarray, watermark: np.ndarray | None) -> None:
    all_keys = keys(setup, scope)
    ks = [all_keys[i] for i in rows.tolist()]
    blobs = [r.tobytes() for r in packed[rows]]
    wm: list[float | None] = [None] * len(ks) if watermark is None else [
        w if math.isfinite(w) else None for w in watermark[rows].tolist()]
    merge = ("ON CONFLICT (engine, scope, key) DO UPDATE SET packed = excluded.packed, "
             "watermark = excluded.watermark")
    if len(ks) <= COPY_ABOVE:
        conn.execute(
            "INSERT INTO engine_state_rows (engine, scope, key, packed, watermark) "
            "SELECT %s, %s, k, p, w FROM unnest(%s::text[], %s::bytea[], %s::float8[]) "
            f"AS u(k, p, w) {merge}", (engine, scope, ks, blobs, wm))
        return
    # Many rows (the first save, a catch-up): stream them through a staging table.
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _engine_state_stage (key text, packed bytea, "
                 "watermark double precision) ON COMMIT DELETE ROWS")
    conn.execute("TRUNCATE _engine_state_stage")
    with conn.cursor() as cur, cur.copy(
            "COPY _engine_state_stage (key, packed, watermark) FROM STDIN") as copy:
        for row in zip(ks, blobs, wm, strict=True):
            copy.write_row(row)
    conn.execute("INSERT INTO engine_state_rows (engine, scope, key, packed, watermark) "
                 f"SELECT %s, %s, key, packed, watermark FROM _engine_state_stage {merge}",
                 (engine, scope))


def restore(conn: psycopg.Connection, engine: str, setup: Setup) -> Restored:
    """The saved state mapped onto `setup` (fresh where nothing was saved), and the snapshot
    of what is stored. Rows of channels, targets and devices the setup no longer has are
    deleted (a retired device that comes back starts fresh)."""
    state = EngineState.initial(setup)
    scoped = _scoped(state)
    layout_now = {s: _layout(a) for s, a in scoped.items()}
    header = conn.execute("SELECT clock, layout FROM engine_state WHERE engine = %s",
                          (engine,)).fetchone()
    if header is None:
        return Restored(state, None, snapshot(state, setup, layout_now, rewrite=False))
    clock, stored_layout = header
    if not isinstance(stored_layout, dict):
        raise InvalidInput(f"engine {engine!r}: saved state has no layout")
    rewrite = False
    for s in SCOPES:
        old_layout = stored_layout.get(s, [])
        rewrite |= old_layout != layout_now[s]
        _load_scope(conn, engine, s, setup, scoped[s], old_layout)
    return Restored(state, float(clock), snapshot(state, setup, layout_now, rewrite))


def snapshot(state: EngineState, setup: Setup, layout: dict[str, Layout],
              rewrite: bool) -> Saved:
    """A state packed as the rows a save would compare (and write)."""
    sizes = {"channel": setup.n, "target": len(setup.targets), "device": len(setup.devices)}
    scoped = _scoped(state)
    return Saved(layout, {s: _pack(scoped[s], sizes[s]) for s in SCOPES}, rewrite)


def _load_scope(conn: psycopg.Connection, engine: str, scope: str, setup: Setup,
                arrays: dict[str, np.ndarray], old_layout: Layout) -> None:
    rows = conn.execute("SELECT key, packed FROM engine_state_rows WHERE engine = %s AND "
                        "scope = %s", (engine, scope)).fetchall()
    if not rows:
        return
    now_pos = {k: i for i, k in enumerate(keys(setup, scope))}
    gone = [k for k, _ in rows if k not in now_pos]
    if gone:
        conn.execute("DELETE FROM engine_state_rows WHERE engine = %s AND scope = %s AND "
                     "key = ANY(%s)", (engine, scope, gone))
    kept = [(now_pos[k], bytes(p)) for k, p in rows if k in now_pos]
    if not kept:
        return
    dt = _dtype(old_layout)
    if any(len(p) != dt.itemsize for _, p in kept):
        raise InvalidInput(f"engine {engine!r}: saved {scope} rows do not match their layout")
    old = np.frombuffer(b"".join(p for _, p in kept), dt)
    dst = np.array([i for i, _ in kept], np.int64)
    for name in dt.names or ():
        if name not in arrays:
            continue  # a field this engine no longer keeps
        cur = arrays[name]
        if old[name].shape[1:] != cur.shape[1:]:
            raise InvalidInput(f"saved engine state field {name!r} has shape "
                               f"{old[name].shape[1:]}, this engine keeps {cur.shape[1:]}")
        cur[dst] = old[name]

