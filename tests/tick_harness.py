"""Living through series with the pure engine tick, and reading its changes (for the quality
and settings tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, build_setup, tick
from tests.quality_cases import Series

LON, LAT = 120.05, 28.65
KM_LON = 1.0 / (111.32 * np.cos(np.radians(LAT)))  # degrees of longitude per km here


def run(channels: Sequence[ChannelInfo], series: Sequence[Series],
        overrides: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        regional: Sequence[int] | None = None) -> list[Change]:
    """Live through the series: one tick per distinct sample time, clock = that time."""
    setup = build_setup(list(channels), resolve(list(channels), overrides or {}))
    pts = sorted((float(s.t(i)), c, float(s.t(i)), float(s.values[i]))
                 for c, s in enumerate(series) for i in range(s.n) if np.isfinite(s.values[i]))
    reg = None
    if regional is not None:
        reg = np.array([regional[[c.target for c in channels].index(t)]
                        for t in setup.targets], np.int8)
    return tick_through(setup, pts, reg)


def tick_through(setup: Any, pts: Sequence[tuple[float, int, float, float]],
                 regional: np.ndarray | None = None) -> list[Change]:
    """Feed (clock, channel, data time, value) points, sorted by clock, to the pure tick: one
    tick per distinct clock holding every point of it (by channel, then data time, as the
    store returns them)."""
    state = EngineState.initial(setup)
    out: list[Change] = []
    i = 0
    while i < len(pts):
        j = i
        while j < len(pts) and pts[j][0] == pts[i][0]:
            j += 1
        batch = sorted(pts[i:j], key=lambda p: (p[1], p[2]))
        s = Samples(np.array([p[1] for p in batch], np.int64),
                    np.array([p[2] for p in batch]), np.array([p[3] for p in batch]),
                    np.zeros(len(batch), np.int8))
        state, res = tick(setup, state, s, pts[i][0], regional)
        out += res.changes
        i = j
    return out


def levels_of(changes: Sequence[Change], target: str, kind: str) -> list[tuple[float, int]]:
    return [(c.data_time.timestamp(), int(c.level)) for c in changes
            if c.target_id == target and c.hazard_kind == kind]


def first_time(changes: Sequence[Change], target: str, kind: str, level: int) -> float | None:
    return next((t for t, lv in levels_of(changes, target, kind) if lv >= level), None)


def peak(changes: Sequence[Change], target: str, kind: str) -> int:
    return max((lv for _, lv in levels_of(changes, target, kind)), default=0)


def gauge(cid: int, dev: str, hazard: str, step: float, km_east: float = 0.0
          ) -> ChannelInfo:
    return ChannelInfo(cid, dev, "rain_gauge", "rain", hazard, None, step,
                       lon=LON + km_east * KM_LON, lat=LAT)
