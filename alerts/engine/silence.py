"""Silent devices in data time: the "maintenance" changes of an engine tick.

A device is silent from the moment all its channels have been quiet longer than their
offline_after_s: silent_from = max over its channels of (last sample + offline_after_s),
over the channels it has reported on (a device never heard from counts from the engine clock
at which it was first watched). The
change is stamped with that moment, and "reporting again" with the first sample after it,
whichever tick notices them: a tick living through the silence (the clock passes
silent_from) and a replay that finds the gap inside a backlog (a device's next sample lies
beyond silent_from) give the same events. Silence never feeds a hazard level.

Maintenance: a device whose silence would begin inside one of its maintenance windows (the
device's, devices/maintenance.py, or a rule window of any of its channels) is not silent
then: its silence clock restarts at the window's end, so it is silent from the window's end
+ its offline_after_s (later still if that moment falls in another window) unless it reports
before. A silence that began before a window is reported at its start as always.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine.tick_setup import Change, EngineState, Samples, Setup, gather
from alerts.methods.levels import Level
from alerts.methods.ragged import FloatArray, IntArray


def silent_from(setup: Setup, state: EngineState, devs: IntArray | None = None
                ) -> FloatArray:
    """(devices,) the data time each device is (or would become) silent; of `devs` only,
    in that order, when given (a step computes only the devices it touched)."""
    if devs is None:
        devs = np.arange(len(setup.devices))
    if devs.size == 0:
        return np.zeros(0)
    members, starts = gather(setup.device_members, devs)
    off = setup.p["offline_after_s"][members]
    wm, fw = state.watermark[members], state.first_watch[members]
    heard = np.maximum.reduceat(np.where(np.isnan(wm), -np.inf, wm + off), starts)
    watched = np.maximum.reduceat(np.where(np.isnan(fw), -np.inf, fw + off), starts)
    # A channel the device never reports on (an unused sensor) does not keep it "alive"
    # or "silent": once any channel has spoken, only spoken channels count.
    spoken = np.isfinite(heard)
    since = np.where(spoken, heard, watched)
    counts = np.where(np.repeat(spoken, np.diff(np.r_[starts, members.size])),
                      ~np.isnan(wm), ~np.isnan(fw))
    restart = np.maximum.reduceat(np.where(counts, off, -np.inf), starts)
    return _after_windows(setup, members, starts, since, restart)


def _after_windows(setup: Setup, members: IntArray, starts: IntArray, since: FloatArray,
                   restart: FloatArray) -> FloatArray:
    """`since` moved past the maintenance windows it falls in: to the window's end +
    `restart` (the device's offline_after_s), repeated while that lands in a window."""
    lo, hi = setup.p["maint_from"][members], setup.p["maint_until"][members]  # (M, K)
    if not (lo <= hi).any():  # no windows (an empty slot is (inf, -inf))
        return since
    lengths = np.diff(np.r_[starts, members.size])
    restart = np.where(np.isfinite(restart), restart, 0.0)
    for _ in range(lo.size):  # a pass leaves every window it hit behind for good
        t = np.repeat(since, lengths)[:, None]
        end = np.maximum.reduceat(np.where((lo <= t) & (t <= hi), hi, -np.inf).max(axis=1),
                                  starts)
        moved = (end > -np.inf) & (end < np.inf)
        since = np.where(end == np.inf, np.inf, np.where(moved, end + restart, since))
        if not moved.any():
            break
    return np.asarray(since)


def cached(setup: Setup, state: EngineState) -> FloatArray:
    """Every device's silent_from, kept in the state and brought up to date by `touch`."""
    if state.silent_at is None or state.silent_at.shape != (len(setup.devices),):
        state.silent_at = silent_from(setup, state)
    return state.silent_at


def touch(setup: Setup, state: EngineState, ch: IntArray) -> None:
    """Channels `ch` moved their watermark: recompute their devices' silent_from only."""
    if state.silent_at is not None and ch.size:
        devs = np.unique(setup.device[ch])
        state.silent_at[devs] = silent_from(setup, state, devs)


def returns(setup: Setup, state: EngineState, s: Samples) -> list[Change]:
    """Changes for devices that report in round `s` (before it updates the watermarks):
    back from a silence the engine saw, or from one that lies inside the backlog."""
    if s.ch.size == 0:
        return []
    dev = setup.device[s.ch]
    devs, inverse = np.unique(dev, return_inverse=True)
    first = np.full(devs.size, np.inf)
    np.minimum.at(first, inverse, s.t)
    since = cached(setup, state)[devs]
    was_all = state.maintenance[devs] > 0
    out: list[Change] = []
    for i in np.flatnonzero(was_all | (first > since)):  # few: silences are rare
        d = int(devs[i])
        was = state.maintenance[d] > 0
        if not was:
            out.append(_change(setup, state, d, Level.BLUE, float(since[i])))
        out.append(_change(setup, state, d, Level.NONE, float(first[i])))
        state.maintenance[d] = 0
    return out


def at_clock(setup: Setup, state: EngineState, now: float) -> tuple[list[Change], list[str]]:
    """Devices silent at engine clock `now`: the changes of those newly silent, and the ids
    of all silent devices."""
    since = cached(setup, state)
    silent = now > since
    newly = np.flatnonzero(silent & (state.maintenance == 0))
    out = [_change(setup, state, int(d), Level.BLUE, float(since[d])) for d in newly]
    state.maintenance[newly] = int(Level.BLUE)
    return out, [setup.devices[d] for d in np.flatnonzero(silent)]


def _change(setup: Setup, state: EngineState, d: int, level: Level, when: float) -> Change:
    members, _ = gather(setup.device_members, np.array([d]))
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
