"""Silent devices in data time: the "maintenance" changes of an engine tick.

A device is silent from the moment all its channels have been quiet longer than their
offline_after_s: silent_from = max over its channels of (last sample + offline_after_s),
over the channels it has reported on (a device never heard from counts from the engine clock
at which it was first watched). The
change is stamped with that moment, and "reporting again" with the first sample after it,
whichever tick notices them: a tick living through the silence (the clock passes
silent_from) and a replay that finds the gap inside a backlog (a device's next sample lies
beyond silent_from) give the same events. Silence never feeds a hazard level.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine.tick_setup import Change, EngineState, Samples, Setup
from alerts.methods.levels import LEVEL_DTYPE, Level
from alerts.methods.ragged import FloatArray


def silent_from(setup: Setup, state: EngineState) -> FloatArray:
    """(devices,) the data time each device is (or would become) silent."""
    off = setup.p["offline_after_s"]
    n_dev = len(setup.devices)
    heard = np.full(n_dev, -np.inf)
    np.maximum.at(heard, setup.device, np.where(np.isnan(state.watermark), -np.inf,
                                                state.watermark + off))
    watched = np.full(n_dev, -np.inf)
    np.maximum.at(watched, setup.device, np.where(np.isnan(state.first_watch), -np.inf,
                                                  state.first_watch + off))
    # A channel the device never reports on (an unused sensor) does not keep it "alive"
    # or "silent": once any channel has spoken, only spoken channels count.
    return np.where(np.isfinite(heard), heard, watched)


def returns(setup: Setup, state: EngineState, s: Samples) -> list[Change]:
    """Changes for devices that report in round `s` (before it updates the watermarks):
    back from a silence the engine saw, or from one that lies inside the backlog."""
    if s.ch.size == 0:
        return []
    dev = setup.device[s.ch]
    first = np.full(len(setup.devices), np.inf)
    np.minimum.at(first, dev, s.t)
    since = silent_from(setup, state)
    devs = np.unique(dev)
    was_all = state.maintenance[devs] > 0
    out: list[Change] = []
    for d in devs[was_all | (first[devs] > since[devs])]:  # few: silences are rare
        was = state.maintenance[d] > 0
        if not was:
            out.append(_change(setup, state, int(d), Level.BLUE, float(since[d])))
        out.append(_change(setup, state, int(d), Level.NONE, float(first[d])))
        state.maintenance[d] = 0
    return out


def at_clock(setup: Setup, state: EngineState, now: float) -> tuple[list[Change], list[str]]:
    """Devices silent at engine clock `now`: the changes of those newly silent, and the ids
    of all silent devices."""
    since = silent_from(setup, state)
    silent = now > since
    new = np.where(silent, int(Level.BLUE), 0).astype(LEVEL_DTYPE)
    out = [_change(setup, state, int(d), Level.BLUE, float(since[d]))
           for d in np.flatnonzero(silent & (state.maintenance == 0))]
    state.maintenance = np.maximum(state.maintenance, new).astype(LEVEL_DTYPE)
    return out, [setup.devices[d] for d in np.flatnonzero(silent)]


def _change(setup: Setup, state: EngineState, d: int, level: Level, when: float) -> Change:
    members = np.flatnonzero(setup.device == d)
    wm = state.watermark[members]
    last = float(np.nanmax(wm)) if np.isfinite(wm).any() else None
    ev: dict[str, Any] = {"reason": "silent" if level else "reporting again",
                          "last_reading": _iso(last),
                          "offline_after_s": float(np.max(
                              setup.p["offline_after_s"][members]))}
    return Change("device", setup.devices[d], "maintenance", level,
                  datetime.fromtimestamp(when, UTC), ev)


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()
