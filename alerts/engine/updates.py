"""Alert updates from the engine: a failure forecast refreshed while a target's deformation
level holds is news for the duty officer (a new time and band), but not a level change. The
tick emits it as a `Change` at the same level with `update_every_s` set (the smallest
`update_interval_s` of the channels that refreshed); the lifecycle writes it as an "updated"
event (alert history, outbox, API stream) at most once per that interval of data time after
the alert's newest event (alerts/lifecycle/writes.py), and notify tells the officers, not the
residents (notify/planner.py).

A round whose level changes already cover the target carries the new forecast in that change's
evidence: no separate update. A forecast withdrawn (acceleration stopped) is no update either:
the level falls with it, or the evidence of the next change shows it gone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine.tick_setup import KINDS, Change, EngineState, Setup
from alerts.methods.levels import Level
from alerts.methods.ragged import FloatArray

DEFORMATION = KINDS.index("deformation")


def forecast_updates(setup: Setup, state: EngineState, issued_before: FloatArray,
                     changes: list[Change], evidence: Callable[[int], dict[str, Any]]
                     ) -> list[Change]:
    """Updates for the targets whose displacement channels issued a new forecast since
    `issued_before` (the forecasts' issue times before the round), where the round's
    `changes` did not already change their deformation level. `evidence(c)`: a channel's."""
    assert state.disp is not None
    issued = state.disp.fc[:, 3]
    rows = np.flatnonzero(np.isfinite(issued) & (issued != issued_before))
    if rows.size == 0:
        return []
    chans = setup.group_rows["displacement"][rows]
    changed = {(c.target_type, c.target_id) for c in changes
               if c.hazard_kind == KINDS[DEFORMATION]}
    out = []
    for ti in np.unique(setup.target[chans]).tolist():
        level = int(state.emitted[ti, DEFORMATION])
        ttype, tid = setup.targets[ti]
        if level == 0 or (ttype, tid) in changed:
            continue
        mine = chans[setup.target[chans] == ti]
        members = np.flatnonzero((setup.target == ti) & (setup.family == DEFORMATION))
        shown = [int(c) for c in members if state.level[c] > 0 or c in mine]
        every = float(setup.p["update_interval_s"][mine].min())
        when = float(np.max(state.watermark[mine]))
        out.append(Change(ttype, tid, KINDS[DEFORMATION], Level(level),
                          datetime.fromtimestamp(when, UTC),
                          {"update": "forecast refreshed", "previous_level": level,
                           "channels": [evidence(c) for c in shown]}, every))
    return out
