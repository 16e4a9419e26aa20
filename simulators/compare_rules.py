"""`geowarn replay --compare-rules FILE`: the alerts two rule sets would have raised on the
replayed series, per hazard point (or site, or device), in data time. Nothing is published,
stored or raised.

The recorded series are judged in memory by the engine's own pure tick
(alerts/engine/tick.py), once under the rules in force (the database's engine_rules) and once
under the rules of FILE (the JSON list `geowarn engine rules-list` prints: objects with scope,
scope_id, params; the whole set, replacing the current one). Only the replayed devices'
channels are judged, with their registry entries (hazard point, site, reporting interval);
regional-warning floors are not applied. Level changes become alerts as the lifecycle makes
them (alerts/lifecycle/writes.py): the first level above none opens an alert; rises, falls and
the clearing belong to it; an alert cleared for `quiet_s` of data time is resolved, and a later
rise opens a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from alerts.engine.rules import SCOPES, ChannelInfo, resolve, validate_override
from alerts.engine.tick import EngineState, Samples, build_setup, tick
from geowarn.errors import InvalidInput
from simulators.recorded import RecordedSeries

Overrides = dict[tuple[str, str], Mapping[str, Any]]


def load_rules_file(path: Path) -> Overrides:
    """A rule set as `geowarn engine rules-list` prints it, each entry validated as
    `geowarn engine rules-set` would."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"--compare-rules {path.name}: {exc}") from None
    if not isinstance(data, list):
        raise InvalidInput(f"--compare-rules {path.name}: expected a JSON list of "
                           "{scope, scope_id, params} (as `geowarn engine rules-list` prints)")
    out: Overrides = {}
    for i, entry in enumerate(data):
        where = f"--compare-rules {path.name}[{i}]"
        if not isinstance(entry, Mapping) or set(entry) - {"scope", "scope_id", "params"}:
            raise InvalidInput(f"{where}: expected an object with scope, scope_id, params")
        scope, scope_id, params = entry.get("scope"), entry.get("scope_id"), entry.get("params")
        if scope not in SCOPES or not isinstance(scope_id, str) or not isinstance(params,
                                                                                 Mapping):
            raise InvalidInput(f"{where}: scope must be one of {', '.join(SCOPES)}, scope_id "
                               "a string and params an object")
        try:
            validate_override(scope, scope_id, params)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        out[(scope, scope_id)] = params
    return out


@dataclass(frozen=True)
class CompareInput:
    channels: list[ChannelInfo]  # the replayed devices' channels
    samples: Samples  # channel index into `channels`
    last_time: float


def channels_and_samples(conn: psycopg.Connection, series_of: Sequence[tuple[str, RecordedSeries]]
                         ) -> CompareInput:
    """The registry's channels of the replayed devices and the series as engine samples."""
    from alerts.engine.data import load_channels

    devices = {d for d, _ in series_of}
    channels = [c for c in load_channels(conn) if c.device_id in devices]
    keys = {(str(d), str(k)): int(cid) for cid, d, k in conn.execute(
        "SELECT channel_id, device_id, channel FROM channels WHERE device_id = ANY(%s)",
        (sorted(devices),))}
    index = {c.channel_id: i for i, c in enumerate(channels)}
    ch: list[np.ndarray] = []
    t: list[np.ndarray] = []
    v: list[np.ndarray] = []
    times = {id(s): np.array([x.timestamp() for x in s.times]) for _, s in series_of}
    for device_id, series in series_of:
        for name, values in series.values.items():
            cid = keys.get((device_id, name))
            if cid is None or cid not in index:
                raise InvalidInput(f"device {device_id} has no channel {name!r} in the "
                                   "registry (register the device first)")
            keep = ~np.isnan(values)
            ch.append(np.full(int(keep.sum()), index[cid], np.int64))
            t.append(times[id(series)][keep])
            v.append(np.asarray(values, np.float64)[keep])
    if not ch:
        raise InvalidInput("nothing to compare: no readings")
    c, tt, vv = np.concatenate(ch), np.concatenate(t), np.concatenate(v)
    order = np.lexsort((tt, c))
    samples = Samples(c[order], tt[order], vv[order], np.zeros(order.size, np.int8))
    return CompareInput(channels, samples, float(tt.max()))


@dataclass
class SimAlert:
    """One alert as the lifecycle would have kept it."""

    target: str  # "hazard:HP-1"
    hazard_kind: str
    opened: datetime
    peak_level: int
    peak_at: datetime
    cleared: datetime | None = None
    resolved: datetime | None = None
    changes: list[tuple[datetime, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("opened", "peak_at", "cleared", "resolved"):
            d[k] = d[k].isoformat() if d[k] else None
        d["changes"] = [[when.isoformat(), level] for when, level in self.changes]
        return d


def alerts_of(changes: Sequence[tuple[str, str, int, datetime]], quiet_s: float
              ) -> list[SimAlert]:
    """Level changes (target, hazard kind, level, data time) -> alerts (module docstring)."""
    quiet = timedelta(seconds=quiet_s)
    open_: dict[tuple[str, str], SimAlert] = {}
    out: list[SimAlert] = []
    for target, kind, level, when in sorted(changes, key=lambda c: c[3]):
        key = (target, kind)
        alert = open_.get(key)
        if alert is not None and alert.cleared is not None and when - alert.cleared >= quiet:
            alert.resolved = alert.cleared + quiet
            del open_[key]
            alert = None
        if alert is None:
            if level == 0:
                continue
            alert = SimAlert(target, kind, when, level, when)
            open_[key] = alert
            out.append(alert)
        elif alert.changes and alert.changes[-1][1] == level:
            continue
        alert.changes.append((when, level))
        alert.cleared = when if level == 0 else None
        if level > alert.peak_level:
            alert.peak_level, alert.peak_at = level, when
    return out


def judge(inp: CompareInput, overrides: Overrides, quiet_s: float) -> list[SimAlert]:
    """The alerts the series raise under `overrides`, judged in memory in data time."""
    setup = build_setup(inp.channels, resolve(inp.channels, overrides))
    state = EngineState.initial(setup)
    _, result = tick(setup, state, inp.samples, inp.last_time)
    found = [(f"{c.target_type}:{c.target_id}", c.hazard_kind, int(c.level), c.data_time)
             for c in result.changes]
    return alerts_of(found, quiet_s)


@dataclass(frozen=True)
class Comparison:
    current: list[SimAlert]
    other: list[SimAlert]
    other_name: str

    def targets(self) -> list[str]:
        return sorted({a.target for a in (*self.current, *self.other)})

    def as_json(self) -> dict[str, Any]:
        return {"rules": {"current": "engine_rules", "compared": self.other_name},
                "targets": {t: {"current": [a.as_json() for a in self.current if a.target == t],
                                "compared": [a.as_json() for a in self.other if a.target == t]}
                            for t in self.targets()}}


def compare(inp: CompareInput, current: Overrides, other: Overrides, other_name: str,
            quiet_s: float) -> Comparison:
    return Comparison(judge(inp, current, quiet_s), judge(inp, other, quiet_s), other_name)


def _t(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if when else "-"


def format_table(cmp: Comparison, level_names: Mapping[int, str]) -> list[str]:
    """Per target: each alert of each rule set (opened, peak, when, cleared), data time UTC."""
    def name(level: int) -> str:
        return level_names.get(level, str(level)) if level else "none"

    lines = [f"alerts in data time (UTC): 'current' = the rules in force, "
             f"'compared' = {cmp.other_name}"]
    header = (f"  {'rules':<9} {'kind':<12} {'opened':<17} {'peak':<13} {'peak at':<17} "
              f"{'cleared':<17}")
    for target in cmp.targets():
        lines += ["", target, header]
        for label, alerts in (("current", cmp.current), ("compared", cmp.other)):
            mine = [a for a in alerts if a.target == target]
            if not mine:
                lines.append(f"  {label:<9} (no alerts)")
            for a in mine:
                lines.append(f"  {label:<9} {a.hazard_kind:<12} {_t(a.opened):<17} "
                             f"{name(a.peak_level):<13} {_t(a.peak_at):<17} {_t(a.cleared):<17}")
        cur = [a for a in cmp.current if a.target == target]
        oth = [a for a in cmp.other if a.target == target]
        lines.append(f"  {len(cur)} alert(s) under the current rules, {len(oth)} under "
                     f"{cmp.other_name}")
    if not cmp.targets():
        lines.append("no alerts under either rule set")
    return lines
