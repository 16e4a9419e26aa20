"""Persist and restore the engine's state in the database (table engine_state, migration
0045).

Saved: what `EngineState.saved_arrays()` names (levels, dwell clocks, watermarks, learnt
baselines and reference sums, emitted target levels, maintenance levels) as one numpy .npz
blob, keyed by channel id, target and device so a restart with a changed registry maps what
it can and starts the rest fresh. Not saved: the sample rings; `restore` leaves them empty and
the service refills them from the readings store up to each channel's watermark.

`save` runs on the caller's connection, inside the transaction that applies the tick's level
changes: the state and the alerts it produced commit together or not at all.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from alerts.engine.tick import EngineState, Setup
from geowarn.errors import InvalidInput


@dataclass(frozen=True)
class Restored:
    state: EngineState
    clock: float | None  # None: nothing was saved for this engine


def _target_keys(setup: Setup) -> list[str]:
    return [f"{t}:{i}" for t, i in setup.targets]


def save(conn: psycopg.Connection, engine: str, setup: Setup, state: EngineState,
         clock: float) -> None:
    buf = io.BytesIO()
    np.savez(buf, **state.saved_arrays())  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO engine_state (engine, clock, saved_at, channel_ids, targets, devices, "
        "arrays) VALUES (%s, %s, now(), %s, %s, %s, %s) ON CONFLICT (engine) DO UPDATE SET "
        "clock = excluded.clock, saved_at = excluded.saved_at, "
        "channel_ids = excluded.channel_ids, targets = excluded.targets, "
        "devices = excluded.devices, arrays = excluded.arrays",
        (engine, clock, [c.channel_id for c in setup.channels], _target_keys(setup),
         list(setup.devices), buf.getvalue()))


def restore(conn: psycopg.Connection, engine: str, setup: Setup) -> Restored:
    state = EngineState.initial(setup)
    row = conn.execute("SELECT clock, channel_ids, targets, devices, arrays FROM engine_state "
                       "WHERE engine = %s", (engine,)).fetchone()
    if row is None:
        return Restored(state, None)
    clock, ids, targets, devices, blob = row
    try:
        saved = dict(np.load(io.BytesIO(blob), allow_pickle=False))
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"engine {engine!r}: saved state is unreadable: {exc}") from None
    _map(state, saved, [c.channel_id for c in setup.channels], list(ids),
         [k for k in state.saved_arrays() if k not in ("emitted", "maintenance")])
    _map(state, saved, _target_keys(setup), list(targets), ["emitted"])
    _map(state, saved, list(setup.devices), list(devices), ["maintenance"])
    return Restored(state, float(clock))


def _map(state: EngineState, saved: dict[str, np.ndarray], now_keys: Sequence[object],
         old_keys: Sequence[object], names: list[str]) -> None:
    old_pos = {k: i for i, k in enumerate(old_keys)}
    pairs = [(i, old_pos[k]) for i, k in enumerate(now_keys) if k in old_pos]
    if not pairs:
        return
    dst, src = (np.array(x, np.int64) for x in zip(*pairs, strict=True))
    for name in names:
        if name not in saved:
            raise InvalidInput(f"saved engine state lacks array {name!r}")
        cur = getattr(state, name)
        old = saved[name]
        if old.shape[1:] != cur.shape[1:] or old.shape[0] != len(old_keys):
            raise InvalidInput(f"saved engine state array {name!r} has shape {old.shape}")
        cur[dst] = old[src]
