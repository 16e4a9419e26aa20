"""Persist and restore the engine's state in the database, incrementally (tables engine_state
and engine_state_rows, migrations 0045 and 0047).

Saved: what `EngineState.saved_arrays()` names, in four scopes: per channel (levels, dwell
clocks, watermarks, data-quality findings, the quality screen, ...), per target (`emitted`, the
levels last emitted per hazard kind), per device (`maintenance`, `quality`) and per
displacement channel ("disp", keyed by channel id: the episode state of
alerts/engine/displacement.py DispState). Each channel, target, device and displacement
channel is one row holding its values packed as one numpy record (the
header row in engine_state says which fields, dtypes and shapes: the layout), keyed by
channel id, target ("hazard:HP1") and device id, so a restart with a changed registry maps
what it can and starts the rest fresh, and an engine that saves a new field maps the old
rows field by field. Not saved: the sample rings, the displacement history and evidence;
`restore` leaves them empty and the service refills them from the readings store up to each
channel's watermark (alerts/engine/disp_restart.py for displacement).

Incremental: `save` compares the saved arrays, bit for bit (NaN equals NaN), with a copy of
what the database holds (the `Saved` snapshot that `restore` or the previous save returned),
and UPSERTs only the rows that differ: what goes to the database is proportional to what
changed, whatever the registry's size, and a field added to the saved arrays is saved
incrementally too. Comparing every row costs a few milliseconds at 45,000 channels (tens of
arrays), so a step that knows which rows it touched (the tick's `TickResult.touched`) compares
only those; the service compares every row on its periodic steps. A restart reads every
row in one query per scope.

`save` runs on the caller's connection, inside the transaction that applies the tick's level
changes: the state and the alerts it produced commit together or not at all. After a
rolled-back transaction the caller must `restore` (the snapshot already counts the rows the
failed save wrote).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine.tick import EngineState, Setup
from alerts.engine.tick_setup import DEVICE_ARRAYS
from geowarn.errors import InvalidInput

SCOPES = ("channel", "target", "device", "disp")
# every other array: per channel ("disp_*": per displacement channel, DispState's)
_SCOPE_OF = {"emitted": "target", **{name: "device" for name in DEVICE_ARRAYS}}
COPY_ABOVE = 2000  # rows per scope beyond which a save streams them with COPY

Layout = list[list[Any]]  # [[name, numpy dtype str, [trailing shape]], ...]


@dataclass
class Saved:
    """What the database holds for one engine: a copy of the saved arrays per scope, aligned
    with a setup's channels, targets and devices; the reference the next save diffs against.
    `save` brings it up to date in place once its writes succeeded; after a rolled-back
    transaction the caller must `restore` a new one."""

    layout: dict[str, Layout]
    arrays: dict[str, dict[str, np.ndarray]]  # scope -> name -> copy of the array
    rewrite: bool = False  # the stored layout differs: the next save rewrites every row
    written: dict[str, int] = field(default_factory=dict)  # rows the last save wrote


@dataclass(frozen=True)
class Restored:
    state: EngineState
    clock: float | None  # None: nothing was saved for this engine
    saved: Saved


def keys(setup: Setup, scope: str, rows: Sequence[int] | None = None) -> list[str]:
    """The row keys of a scope, in setup order (or of the given rows only: a step names only
    the rows it writes)."""
    if scope in ("channel", "disp"):
        chans = setup.group_rows["displacement"] if scope == "disp" else np.arange(setup.n)
        pick = chans if rows is None else chans[np.asarray(rows, np.int64)]
        return [str(setup.channels[i].channel_id) for i in pick.tolist()]
    if rows is None:
        rows = range(len(setup.targets) if scope == "target" else len(setup.devices))
    if scope == "target":
        return [f"{setup.targets[i][0]}:{setup.targets[i][1]}" for i in rows]
    return [setup.devices[i] for i in rows]


def _scoped(state: EngineState) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in SCOPES}
    for name, arr in state.saved_arrays().items():
        scope = "disp" if name.startswith("disp_") else _SCOPE_OF.get(name, "channel")
        out[scope][name] = np.asarray(arr)
    return out


def _layout(arrays: Mapping[str, np.ndarray]) -> Layout:
    return [[name, a.dtype.str, list(a.shape[1:])] for name, a in arrays.items()]


def _dtype(layout: Layout) -> np.dtype:
    try:
        return np.dtype([(str(n), np.dtype(d), tuple(int(x) for x in s)) for n, d, s in layout])
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"saved engine state has an unreadable layout: {exc}") from None


def _pack(arrays: Mapping[str, np.ndarray], rows: np.ndarray) -> list[bytes]:
    """The given rows as packed records, one bytes object each."""
    rec = np.empty(rows.size, _dtype(_layout(arrays)))
    for name, a in arrays.items():
        rec[name] = a[rows]
    return [r.tobytes() for r in rec]


def packed_rows(state: EngineState, scope: str, rows: Sequence[int]) -> list[bytes]:
    """Rows of one scope of a state packed as a save writes them."""
    return _pack(_scoped(state)[scope], np.asarray(rows, np.int64))


def _bits(a: np.ndarray) -> np.ndarray:
    """A view comparing bit patterns (so NaN equals NaN), one row per leading index."""
    # The row width spelled out: reshape(0, -1) is ambiguous, and an engine over an empty
    # registry saves arrays of 0 rows.
    flat = np.ascontiguousarray(a).reshape(a.shape[0], int(np.prod(a.shape[1:])))
    return flat.view(f"u{a.dtype.itemsize}") if a.dtype.itemsize in (1, 2, 4, 8) else \
        flat.view(np.uint8)


def _changed(now: Mapping[str, np.ndarray], before: Mapping[str, np.ndarray], n: int,
             among: np.ndarray | None = None) -> np.ndarray:
    """Rows whose saved arrays differ from `before` (only rows `among`, when given)."""
    if among is not None:
        among = np.unique(np.asarray(among, np.int64))
        return among[_changed({k: a[among] for k, a in now.items()},
                              {k: before[k][among] for k in now}, among.size)]
    ne = np.zeros(n, bool)
    for name, a in now.items():
        ne |= (_bits(a) != _bits(before[name])).any(axis=1)
    return np.flatnonzero(ne)


def unsaved(state: EngineState, saved: Saved) -> dict[str, np.ndarray]:
    """Rows per scope where the state differs from what the database holds (empty after a
    save that saw every change)."""
    scoped = _scoped(state)
    return {s: _changed(scoped[s], saved.arrays[s], next(iter(scoped[s].values())).shape[0])
            for s in SCOPES}


def save(conn: psycopg.Connection, engine: str, setup: Setup, state: EngineState,
         clock: float, previous: Saved | None = None,
         touched: Mapping[str, np.ndarray] | None = None) -> Saved:
    """Write the rows that differ from `previous` (every row when it is None, or when its
    layout is not the current one) and the header; returns the up-to-date snapshot
    (`previous` itself, updated, when it was usable). `touched` (the tick's
    TickResult.touched): per scope, the only rows that can have changed since the last
    save, so only those are compared (a scope it does not name is compared whole)."""
    scoped = _scoped(state)
    layout = {s: _layout(a) for s, a in scoped.items()}
    sizes = {"channel": setup.n, "target": len(setup.targets), "device": len(setup.devices),
             "disp": setup.group_rows["displacement"].size}
    full = (previous is None or previous.rewrite or previous.layout != layout
            or any(a.shape[0] != sizes[s] for s in SCOPES
                   for a in previous.arrays[s].values()))
    conn.execute(
        "INSERT INTO engine_state (engine, clock, saved_at, layout) VALUES (%s, %s, now(), %s) "
        "ON CONFLICT (engine) DO UPDATE SET clock = excluded.clock, "
        "saved_at = excluded.saved_at, layout = excluded.layout",
        (engine, clock, Jsonb(layout)))
    dirty = {}
    batch: tuple[list[str], list[str], list[bytes], list[float | None]] = ([], [], [], [])
    for s in SCOPES:
        if full or previous is None:
            dirty[s] = np.arange(sizes[s])
        else:
            dirty[s] = _changed(scoped[s], previous.arrays[s], sizes[s],
                                None if touched is None else touched.get(s))
        rows = dirty[s]
        batch[0].extend([s] * rows.size)
        batch[1].extend(keys(setup, s, rows.tolist()))
        batch[2].extend(_pack(scoped[s], rows))
        batch[3].extend([w if math.isfinite(w) else None for w in state.watermark[rows].tolist()]
                        if s == "channel" else [None] * rows.size)
    if batch[0]:
        _upsert(conn, engine, *batch)
    written = {s: int(r.size) for s, r in dirty.items()}
    if full or previous is None:
        return Saved(layout, _copies(scoped), False, written)
    for s in SCOPES:  # every write succeeded: the database now holds these rows
        for name, a in scoped[s].items():
            previous.arrays[s][name][dirty[s]] = a[dirty[s]]
    previous.written = written
    return previous


def _copies(scoped: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    return {s: {n: a.copy() for n, a in arrays.items()} for s, arrays in scoped.items()}


def _upsert(conn: psycopg.Connection, engine: str, scopes: list[str], ks: list[str],
            blobs: list[bytes], wm: list[float | None]) -> None:
    merge = ("ON CONFLICT (engine, scope, key) DO UPDATE SET packed = excluded.packed, "
             "watermark = excluded.watermark")
    if len(ks) <= COPY_ABOVE:  # one statement, one round trip
        conn.execute(
            "INSERT INTO engine_state_rows (engine, scope, key, packed, watermark) "
            "SELECT %s, s, k, p, w FROM unnest(%s::text[], %s::text[], %s::bytea[], "
            f"%s::float8[]) AS u(s, k, p, w) {merge}", (engine, scopes, ks, blobs, wm))
        return
    # Many rows (the first save, a catch-up): stream them through a staging table.
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _engine_state_stage (scope text, key text, "
                 "packed bytea, watermark double precision) ON COMMIT DELETE ROWS")
    conn.execute("TRUNCATE _engine_state_stage")
    with conn.cursor() as cur, cur.copy(
            "COPY _engine_state_stage (scope, key, packed, watermark) FROM STDIN") as copy:
        for row in zip(scopes, ks, blobs, wm, strict=True):
            copy.write_row(row)
    conn.execute("INSERT INTO engine_state_rows (engine, scope, key, packed, watermark) "
                 f"SELECT %s, scope, key, packed, watermark FROM _engine_state_stage {merge}",
                 (engine,))


def restore(conn: psycopg.Connection, engine: str, setup: Setup, only: bool = False
            ) -> Restored:
    """The saved state mapped onto `setup` (fresh where nothing was saved), and the snapshot
    of what is stored. Rows of channels, targets and devices the setup no longer has are
    deleted (a retired device that comes back starts fresh). `only`: `setup` is a part of
    the engine's registry (the channels a registry change touched, alerts/engine/
    registry_delta.py): only its rows are read, and no other row is deleted."""
    state = EngineState.initial(setup)
    scoped = _scoped(state)
    layout_now = {s: _layout(a) for s, a in scoped.items()}
    header = conn.execute("SELECT clock, layout FROM engine_state WHERE engine = %s",
                          (engine,)).fetchone()
    if header is None:
        return Restored(state, None, snapshot(state, layout_now, rewrite=False))
    clock, stored_layout = header
    if not isinstance(stored_layout, dict):
        raise InvalidInput(f"engine {engine!r}: saved state has no layout")
    rewrite = False
    for s in SCOPES:
        old_layout = stored_layout.get(s, [])
        rewrite |= old_layout != layout_now[s]
        _load_scope(conn, engine, s, setup, scoped[s], old_layout, only)
    return Restored(state, float(clock), snapshot(state, layout_now, rewrite))


def snapshot(state: EngineState, layout: dict[str, Layout], rewrite: bool) -> Saved:
    """A state as the reference a save compares with (what the database holds)."""
    return Saved(layout, _copies(_scoped(state)), rewrite)


def _load_scope(conn: psycopg.Connection, engine: str, scope: str, setup: Setup,
                arrays: dict[str, np.ndarray], old_layout: Layout, only: bool = False) -> None:
    now_pos = {k: i for i, k in enumerate(keys(setup, scope))}
    rows = conn.execute("SELECT key, packed FROM engine_state_rows WHERE engine = %s AND "
                        "scope = %s AND (NOT %s OR key = ANY(%s))",
                        (engine, scope, only, list(now_pos) if only else [])).fetchall()
    if not rows:
        return
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

