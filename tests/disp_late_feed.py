"""Feeding displacement readings to the pure tick as the service does, with a store: each
hourly commit brings the readings that arrived in it, and a late backlog brings with it the
stored readings `disp_late.plan` asks for (alerts/engine/service.py `step`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alerts.engine import disp_late
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, Setup, build_setup, tick
from simulators.displacement_scenarios import HOUR, Series


@dataclass
class Store:
    setup: Setup
    ch: np.ndarray
    t: np.ndarray
    v: np.ndarray
    arrival: np.ndarray  # seconds: when each reading reaches the store
    edges: np.ndarray  # commit times

    def arrived(self, lo: float, hi: float) -> np.ndarray:
        i = np.flatnonzero((self.arrival > lo) & (self.arrival <= hi))
        return i[np.lexsort((self.t[i], self.ch[i]))]

    def samples(self, i: np.ndarray) -> Samples:
        return Samples(self.ch[i], self.t[i], self.v[i], np.zeros(i.size, np.int8))

    def span(self, c: int, lo: float, hi: float, now: float) -> np.ndarray:
        """Stored readings of channel c with lo <= t <= hi that arrived by `now`."""
        return np.flatnonzero((self.ch == c) & (self.t >= lo) & (self.t <= hi)
                              & (self.arrival <= now))


def store(series: list[Series], arrival: list[np.ndarray] | None = None,
          kind: str = "gnss", spec: str = "disp_x") -> Store:
    chans = [ChannelInfo(i + 1, f"GNSS-{i:02d}", kind, spec, None, None, s.step_s)
             for i, s in enumerate(series)]
    setup = build_setup(chans, resolve(chans, {}))
    ch = np.concatenate([np.full(s.t.size, i, np.int64) for i, s in enumerate(series)])
    t = np.round(np.concatenate([s.t for s in series]))  # whole seconds, as stored
    v = np.concatenate([s.v for s in series])
    arr = t.copy() if arrival is None else np.round(np.concatenate(arrival))
    start = float(t.min())
    edges = np.arange(start - start % HOUR, float(arr.max()) + HOUR, HOUR)  # hourly commits
    return Store(setup, ch, t, v, arr, edges)


@dataclass
class Lived:
    state: EngineState
    changes: list[Change] = field(default_factory=list)
    states: dict[int, EngineState] = field(default_factory=dict)


def live(s: Store, until: int | None = None, state: EngineState | None = None,
         start: int = 1) -> Lived:
    """Commit by commit from `start` to `until` (an index into s.edges), as the service
    steps: the readings arrived, plus the stored span plan() asks for."""
    out = Lived(EngineState.initial(s.setup) if state is None else state)
    end = s.edges.size if until is None else until
    for k in range(start, end):
        now = float(s.edges[k])
        i = s.arrived(float(s.edges[k - 1]), now)
        batch = s.samples(i)
        ids, lo, hi = disp_late.plan(s.setup, out.state, batch)
        more = [s.span(c, a, b, now) for c, a, b in zip(ids, lo, hi, strict=True)]
        if more:
            j = np.unique(np.r_[i, np.concatenate(more)])
            batch = s.samples(j[np.lexsort((s.t[j], s.ch[j]))])
        out.state, res = tick(s.setup, out.state, batch, now)
        out.changes += res.changes
    return out
