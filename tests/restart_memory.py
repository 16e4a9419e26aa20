"""What an engine restart holds, for tests that compare it with the engine that lived through
the same readings: the saved arrays of the live state and its memory refilled from the
readings it is made of (alerts/engine/data.py memory_ranges; the service reads the older hours
of them as two middle values an hour, which give the same history:
tests/test_engine_history_load.py)."""

from __future__ import annotations

import numpy as np

from alerts.engine.data import memory_ranges
from alerts.engine.tick import EngineState, Samples, Setup
from alerts.engine.tick_quality import fill_memory


def restarted(setup: Setup, ch: np.ndarray, t: np.ndarray, v: np.ndarray,
              live: EngineState) -> EngineState:
    """A fresh state holding `live`'s saved arrays, its memory refilled from the readings
    (ch, t, v) that lie inside each channel's memory range."""
    st = EngineState.initial(setup)
    saved = live.saved_arrays()
    for name, a in st.saved_arrays().items():
        a[...] = saved[name]
    ids, lo, hi = memory_ranges(setup, st)
    keep = np.zeros(t.size, bool)
    for cid, lo_t, hi_t in zip(ids, lo, hi, strict=True):
        c = setup.index[cid]
        keep |= (ch == c) & (t > lo_t.timestamp()) & (t <= hi_t.timestamp())
    i = np.flatnonzero(keep)
    i = i[np.lexsort((t[i], ch[i]))]
    fill_memory(setup, st, Samples(ch[i], t[i], v[i], np.zeros(i.size, np.int8)))
    return st
