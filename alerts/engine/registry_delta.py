"""A registry change applied to a running engine at the cost of what changed (issue 7).

A device added, retired or moved, a channel learnt, a rule set or deleted: before, the engine
rebuilt everything (alerts/engine/service.py `load`: the setup, every channel's saved state
and every ring refilled from the readings store), 5.6 s of CPU at 30,000 devices during which
no alert was raised. Here:

- what changed is found as the gateway finds it (ingest/device_cache.py): the devices and
  channels written by a transaction the previous read's server snapshot did not see
  (devices.changed_xid, channels.changed_xid, migrations 0145 and 0167), an index range;
  rules by their table's (count, newest updated_at), read whole only when that moved (the
  table holds one row per scope, not per reading);
- only the channels whose ChannelInfo, resolved rule or maintenance windows differ, and new
  ones, get their saved rows read (alerts/engine/state.py `restore(only=True)`) and their
  rings and displacement history refilled from the store (tick_quality `fill_memory`), on a
  setup of those channels alone;
- the new Setup is built from the kept ChannelInfo/RuleParams plus the changed ones (the same
  inputs a restart reads, so the same setup), and the new state is spliced together row by
  row: every other channel's levels, dwell clocks, screen memory, rings, rain sums and
  displacement history are copied over unchanged, as are the kept targets' and devices' rows
  and the snapshot of what the database holds (`Saved`), so the next save writes only what a
  step changes;
- rows of channels, targets and devices that left this engine are deleted, as a restart does.

The result equals a restart's (tests/test_engine_registry_delta.py compares them field by
field). What this module does not know how to splice (a state field of an unknown shape)
raises `Unspliceable` and the service falls back to the whole reload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from alerts.engine import data as engine_data
from alerts.engine import maintenance as engine_maintenance
from alerts.engine import state as engine_state
from alerts.engine.partitions import Partition, select
from alerts.engine.rule_params import RuleParams
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import EngineState, Setup, build_setup, fill_memory
from alerts.engine.tick_setup import GROUPS
from devices.registry import registry_snapshot

Windows = dict[str, list[tuple[float, float]]]
Overrides = dict[tuple[str, str], Mapping[str, Any]]
_TARGET, _DEVICE = {"emitted"}, {"maintenance", "quality"}
_CACHES = {"silent_at", "fused_regional"}  # rebuilt whole when None (tick, silence)
_SHARED = {"windows_s"}  # the same for every row (RainWindows)


class Unspliceable(Exception):
    """The state holds something this module cannot carry over: reload whole."""


@dataclass
class Known:
    """What the engine's setup was built from: compared with the registry to find changes."""

    seen: str  # server snapshot taken before the registry was read
    rules_key: tuple[Any, ...]
    overrides: Overrides
    windows: Windows
    every: dict[int, ChannelInfo]  # every judged channel, this partition's or not
    mine: set[int]  # the ids of this engine's partition


@dataclass(frozen=True)
class Applied:
    """One registry change applied: the new setup, state and snapshot, and what it cost."""

    setup: Setup
    state: EngineState
    saved: engine_state.Saved
    reloaded: tuple[int, ...]  # channel ids whose state was read and memory refilled
    removed: tuple[int, ...]
    rejudge: np.ndarray  # rain rows (of the new setup) to judge again


def rules_key(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute("SELECT count(*), max(updated_at) FROM engine_rules").fetchone()
    return tuple(row or ())


def known_now(conn: psycopg.Connection, partition: Partition
              ) -> tuple[Known, list[ChannelInfo]]:
    """Read the whole registry (a start or a whole reload): what the engine knows, and this
    partition's channels in registry order."""
    seen = registry_snapshot(conn)
    key = rules_key(conn)
    every = engine_data.load_channels(conn)
    mine = select(conn, every, partition)
    return Known(seen, key, engine_data.load_overrides(conn),
                 engine_maintenance.load_windows(conn), {c.channel_id: c for c in every},
                 {c.channel_id for c in mine}), mine


def changed_devices(conn: psycopg.Connection, seen: str) -> tuple[set[str], str]:
    """Devices whose row, or one of whose channels' rows, a transaction that snapshot `seen`
    did not see wrote; and the snapshot to pass next time (taken before the read)."""
    now = registry_snapshot(conn)
    rows = conn.execute(
        "SELECT device_id FROM devices WHERE changed_xid >= pg_snapshot_xmin(%(s)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot(changed_xid, %(s)s::pg_snapshot) UNION "
        "SELECT device_id FROM channels WHERE changed_xid >= pg_snapshot_xmin(%(s)s::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot(changed_xid, %(s)s::pg_snapshot)", {"s": seen}).fetchall()
    return {r[0] for r in rows}, now


def _rule_keys(c: ChannelInfo) -> list[tuple[str, str]]:
    """The override keys that apply to a channel (alerts/engine/rules.py `resolve`)."""
    out = [("kind", c.kind), ("kind", f"{c.kind}.{c.spec}"), ("channel", str(c.channel_id))]
    if c.hazard_id:
        out.append(("hazard", c.hazard_id))
    if c.site_id:
        out.append(("site", c.site_id))
    return out


@dataclass(frozen=True)
class Change:
    """The registry after a change, and which of this partition's channels to reload."""

    channels: list[ChannelInfo]  # this partition's, in registry (channel id) order
    params: list[RuleParams]
    windows: Windows
    reload: set[int]
    removed: set[int]


def find_change(conn: psycopg.Connection, known: Known, setup: Setup, partition: Partition
                ) -> tuple[Known, Change | None]:
    """What changed since `known`: the registry as known now (its snapshot moved on) and the
    change (None: nothing changed). `known` itself is left as it was, so a change whose
    transaction fails is found again."""
    devices, seen = changed_devices(conn, known.seen)
    key = rules_key(conn)
    overrides = engine_data.load_overrides(conn) if key != known.rules_key else known.overrides
    rules = {k for k in overrides.keys() | known.overrides.keys()
             if overrides.get(k) != known.overrides.get(k)}
    if not devices and not rules:
        return replace(known, seen=seen, rules_key=key, overrides=overrides), None
    windows = engine_maintenance.load_windows(conn) if devices else known.windows
    ids = [r[0] for r in conn.execute("SELECT channel_id FROM channels WHERE device_id = ANY(%s)",
                                      (sorted(devices),))] if devices else []
    fresh = engine_data.load_channels(conn, ids) if ids else []
    every = {i: c for i, c in known.every.items() if c.device_id not in devices}
    every.update((c.channel_id, c) for c in fresh)
    mine = {i for i in known.mine if i in every and every[i].device_id not in devices}
    mine |= {c.channel_id for c in select(conn, fresh, partition)}
    channels = [every[i] for i in sorted(mine)]
    old = setup.index
    params: list[RuleParams | None] = [None] * len(channels)
    todo = []
    for j, c in enumerate(channels):
        i = old.get(c.channel_id)
        if (i is None or c.device_id in devices
                or (rules and not rules.isdisjoint(_rule_keys(c)))):
            todo.append(j)
        else:
            params[j] = setup.params[i]
    for j, p in zip(todo, resolve([channels[j] for j in todo], overrides), strict=True):
        params[j] = p
    # Reload what a restart would find different: a new channel, or one whose registry entry,
    # rule or device maintenance windows changed. A device re-saved unchanged keeps its state.
    reload = set()
    for j in todo:
        c, i = channels[j], old.get(channels[j].channel_id)
        if (i is None or setup.channels[i] != c or setup.params[i] != params[j]
                or windows.get(c.device_id) != known.windows.get(c.device_id)):
            reload.add(c.channel_id)
    removed = {c.channel_id for c in setup.channels if c.channel_id not in mine}
    now = Known(seen, key, overrides, windows, every, mine)
    return now, Change(channels, [p for p in params if p is not None], windows, reload,
                       removed)


def apply(conn: psycopg.Connection, engine: str, setup: Setup, state: EngineState,
          saved: engine_state.Saved, change: Change, rejudge: np.ndarray,
          arrived_since: datetime) -> Applied:
    """Build the new setup and splice the new state (see the module docstring). `rejudge`:
    rain rows of the old setup still to be judged again; `arrived_since`: the arrival time
    from which late readings count (the service's oldest arrival mark)."""
    windows = change.windows
    new = build_setup(change.channels, change.params, windows=windows)
    part = [j for j, c in enumerate(change.channels) if c.channel_id in change.reload]
    sub = build_setup([change.channels[j] for j in part], [change.params[j] for j in part],
                      windows=windows)
    restored = engine_state.restore(conn, engine, sub, only=True)
    fill_memory(sub, restored.state, engine_data.load_memory(conn, sub, restored.state))
    late = engine_data.load_late(conn, sub, restored.state, arrived_since)
    maps = _maps(setup, sub, new, change.reload)
    out = EngineState.initial(new)
    _splice_state(out, state, restored.state, maps)
    snap = _splice_saved(out, saved, restored.saved, maps)
    _forget(conn, engine, setup, new)
    # Rain rows to judge again: those the old setup still had to, and reloaded gauges with
    # late readings since the oldest arrival mark (as a restart's load finds them).
    rain = GROUPS.index("rainfall")
    again = [setup.channels[i].channel_id for i in rejudge.tolist()]
    again += [sub.channels[i].channel_id for i in np.unique(late.ch).tolist()
              if sub.group_of[i] == rain]
    idx = new.index
    rejudge = np.array(sorted({idx[c] for c in again if c in idx}), np.int64)
    return Applied(new, out, snap, tuple(sorted(change.reload)), tuple(sorted(change.removed)),
                   rejudge)


Maps = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _pairs(old_keys: Sequence[Any], sub_keys: Sequence[Any], new_keys: Sequence[Any],
           reload: set[Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(new rows, old rows) of the keys carried over, (new rows, sub rows) of those reloaded.
    Channels: `reload` says which come from the reload; targets and devices (None): the ones
    the old setup had come from it, the rest from the reload."""
    old_at = {k: i for i, k in enumerate(old_keys)}
    sub_at = {k: i for i, k in enumerate(sub_keys)}
    keep_n, keep_o, sub_n, sub_s = [], [], [], []
    for n, k in enumerate(new_keys):
        take_sub = (k in reload) if reload is not None else (k not in old_at)
        if take_sub:
            sub_n.append(n)
            sub_s.append(sub_at[k])
        else:
            keep_n.append(n)
            keep_o.append(old_at[k])
    return tuple(np.array(a, np.int64) for a in (keep_n, keep_o, sub_n, sub_s))  # type: ignore


def _maps(old: Setup, sub: Setup, new: Setup, reload: set[int]) -> Maps:
    """Row maps per scope: "channel", "target", "device" and each method group."""
    def ids(s: Setup, rows: np.ndarray | None = None) -> list[int]:
        pick = range(s.n) if rows is None else rows.tolist()
        return [s.channels[i].channel_id for i in pick]

    maps = {"channel": _pairs(ids(old), ids(sub), ids(new), reload),
            "target": _pairs(old.targets, sub.targets, new.targets, None),
            "device": _pairs(old.devices, sub.devices, new.devices, None)}
    for g in GROUPS:
        maps[g] = _pairs(ids(old, old.group_rows[g]), ids(sub, sub.group_rows[g]),
                         ids(new, new.group_rows[g]), reload)
    return maps


def _rows(dst: Any, old: Any, sub: Any, m: tuple[np.ndarray, ...], where: str) -> None:
    """Copy the carried-over rows from `old` and the reloaded ones from `sub` into `dst`
    (dataclasses of per-row arrays, nested ones included)."""
    keep_n, keep_o, sub_n, sub_s = m
    for f in fields(dst):
        a, b, c = getattr(dst, f.name), getattr(old, f.name), getattr(sub, f.name)
        if is_dataclass(a):
            _rows(a, b, c, m, f"{where}.{f.name}")
        elif f.name in _SHARED:
            continue
        elif isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[1:] == b.shape[1:] \
                == c.shape[1:]:
            a[keep_n] = b[keep_o]
            a[sub_n] = c[sub_s]
        else:
            raise Unspliceable(f"{where}.{f.name}")


def _splice_state(out: EngineState, old: EngineState, sub: EngineState, maps: Maps) -> None:
    for f in fields(out):
        name = f.name
        if name in _CACHES:
            setattr(out, name, None)
        elif name == "disp_findings":
            out.disp_findings = []
        elif name == "rings":
            for g, ring in out.rings.items():
                k = max(ring.k, old.rings[g].k, sub.rings[g].k)  # a rain ring may have grown
                for r in (ring, old.rings[g], sub.rings[g]):
                    r.grow(k)
                _rows(ring, old.rings[g], sub.rings[g], maps[g], f"rings.{g}")
        elif name in ("rain", "disp"):
            g = "rainfall" if name == "rain" else "displacement"
            _rows(getattr(out, name), getattr(old, name), getattr(sub, name), maps[g], name)
        elif name == "evidence":
            keep_n, keep_o, _, _ = maps["channel"]
            for key, col in old.evidence.items():  # a reloaded channel has none yet
                full = np.full((out.level.size,) + col.shape[1:], np.nan)
                full[keep_n] = col[keep_o]
                out.evidence[key] = full
        elif name == "screen":
            _rows(out.screen, old.screen, sub.screen, maps["channel"], "screen")
        else:
            scope = "target" if name in _TARGET else "device" if name in _DEVICE else "channel"
            a = getattr(out, name)
            if not isinstance(a, np.ndarray):
                raise Unspliceable(name)
            keep_n, keep_o, sub_n, sub_s = maps[scope]
            a[keep_n] = getattr(old, name)[keep_o]
            a[sub_n] = getattr(sub, name)[sub_s]


def _splice_saved(out: EngineState, saved: engine_state.Saved, sub: engine_state.Saved,
                  maps: Maps) -> engine_state.Saved:
    """What the database holds, aligned with the new setup: the old snapshot's rows for what
    was carried over, the reload's for what was read."""
    scoped = engine_state._scoped(out)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for s, named in scoped.items():
        keep_n, keep_o, sub_n, sub_s = maps["displacement" if s == "disp" else s]
        arrays[s] = {}
        for name, a in named.items():
            if name not in saved.arrays[s] or name not in sub.arrays[s]:
                raise Unspliceable(f"saved {s}.{name}")
            snap = np.empty_like(a)
            snap[keep_n] = saved.arrays[s][name][keep_o]
            snap[sub_n] = sub.arrays[s][name][sub_s]
            arrays[s][name] = snap
    layout = {s: engine_state._layout(a) for s, a in scoped.items()}
    return engine_state.Saved(layout, arrays, saved.rewrite or sub.rewrite
                              or saved.layout != layout)


def _forget(conn: psycopg.Connection, engine: str, old: Setup, new: Setup) -> None:
    """Delete the saved rows of what left this engine (a restart's restore does the same:
    a device that comes back starts fresh)."""
    for s in engine_state.SCOPES:
        gone = sorted(set(engine_state.keys(old, s)) - set(engine_state.keys(new, s)))
        if gone:
            conn.execute("DELETE FROM engine_state_rows WHERE engine = %s AND scope = %s AND "
                         "key = ANY(%s)", (engine, s, gone))
