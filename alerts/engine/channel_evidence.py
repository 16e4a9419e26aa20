"""The evidence of one channel in a level change or forecast update: what a duty officer
reads per contributing channel (its sensor and method, level and data time, the values the
rule judged, any quality hold and the thresholds it compared with), built from the tick's
state. Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine.disp_evidence import describe
from alerts.engine.rule_params import RAIN_WINDOWS_H
from alerts.engine.tick_setup import EngineState, Setup
from alerts.methods.levels import Level


def channel_evidence(setup: Setup, state: EngineState, c: int) -> dict[str, Any]:
    """Channel row c's evidence: what it is, its level and data time, the tick's evidence
    columns (rounded to what they mean: NaN is absent), a quality hold, and the thresholds
    its rule compared with (displacement: alerts/engine/disp_evidence.py)."""
    info, p = setup.channels[c], setup.params[c]
    ev: dict[str, Any] = {"channel_id": info.channel_id, "device_id": info.device_id,
                          "sensor": f"{info.kind}.{info.spec}", "method": p.method,
                          "level": int(state.level[c]), "data_time": _iso(state.watermark[c])}
    for name, col in state.evidence.items():
        x = col[c]
        if np.ndim(x) == 0 and np.isnan(x):
            continue
        if name in ("failure_time", "time_to_crossing"):
            ev[name] = [_iso(v) for v in np.atleast_1d(x)]
        elif name == "accumulations_mm":
            ev[name] = {f"{w:g}h": _num(v) for w, v in zip(RAIN_WINDOWS_H, x, strict=True)}
        else:
            ev[name] = _num(x) if np.ndim(x) == 0 else [_num(v) for v in x]
    if state.suspicious[c]:
        ev["quality"] = (f"repeating values, held at most "
                         f"{Level(int(setup.p['suspicious_max_level'][c])).name.lower()} "
                         f"until corroborated")
    if p.method == "rainfall":
        ev["thresholds_mm"] = {f"{w:g}h": [_num(v) for v in row] for w, row in
                               zip(RAIN_WINDOWS_H, p.rain_table_mm, strict=True)}
    elif p.method == "water_level":
        ev["stages_m"] = {"warning": _num(p.warning_m), "guaranteed": _num(p.guaranteed_m),
                          "historical_max": _num(p.historical_max_m)}
    elif p.method == "displacement":
        assert state.disp is not None
        ev.pop("value", None)
        ev.update(describe(state.disp, setup.p, int(setup.row_in_group[c]), c,
                           f"{info.device_id} {info.spec}"))
    elif p.method == "threshold":
        ev["thresholds"] = [_num(v) for v in p.thresholds]
    return ev


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _iso(seconds: Any) -> str | None:
    if seconds is None or not np.isfinite(seconds):
        return None
    return datetime.fromtimestamp(float(seconds), UTC).isoformat()
