"""Field reports (宏观巡查) in the fusion of a hazard point, entering as regional warnings do:
a floor per target under the combined level (alerts/methods/fusion.py, rule 3).

A monitor's observation (stored by the API, api/routers/reports.py) floors its hazard
point's combined level at the rule's level for its severity (`field_report_minor`,
`_moderate`, `_severe`, alerts/engine/rule_params.py) from the time it was observed until
`field_report_hold_h` later. The floor is judged at the engine's clock (data time in a
replay, never the wall clock), like the regional floor, so an expired report lets the level
fall on the next tick; the combined level's event names the reports holding its floor
(evidence `field_reports`: id, kind, severity, observed_at). Where a target's channels carry
different rules, the strictest wins (highest level, longest hold). Dynaslope lets field
observers' "manifestations of movement" raise the alert level alongside sensor triggers
(../shared/reference/warning-science.md); the levels themselves are our defaults. Only
hazard points the engine watches (with at least one channel) are targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from alerts.engine.tick_setup import Setup
from alerts.lifecycle.writes import LevelChange
from alerts.methods.levels import LEVEL_DTYPE, LevelArray
from alerts.methods.ragged import FloatArray, IntArray

SEVERITIES = ("minor", "moderate", "severe")


@dataclass(frozen=True)
class ReportRule:
    levels: IntArray  # (T, 3) floor per target and severity (0: none)
    hold_s: FloatArray  # (T,) how long a report holds its floor


def target_rules(setup: Setup) -> ReportRule:
    n = len(setup.targets)
    levels = np.zeros((n, len(SEVERITIES)), np.int64)
    hold = np.zeros(n, np.float64)
    for c, p in enumerate(setup.params):
        ti = int(setup.target[c])
        levels[ti] = np.maximum(levels[ti], (p.field_report_minor, p.field_report_moderate,
                                             p.field_report_severe))
        hold[ti] = max(hold[ti], p.field_report_hold_h * 3600.0)
    return ReportRule(levels, hold)


def floor_levels(rule: ReportRule, target: IntArray, severity: IntArray, observed: FloatArray,
                 at: float) -> LevelArray:
    """(T,) the highest floor of the reports (target index, severity index, observed time
    in seconds) that hold at `at` (pure)."""
    out = np.zeros(rule.hold_s.size, LEVEL_DTYPE)
    holding = (observed <= at) & (at < observed + rule.hold_s[target])
    ti, si = target[holding], severity[holding]
    np.maximum.at(out, ti, rule.levels[ti, si].astype(LEVEL_DTYPE))
    return out


class FieldReportFloors:
    """The floors at a clock, from the field_reports table (one indexed query per step)."""

    def __init__(self) -> None:
        self._setup: Setup | None = None
        self._rule = ReportRule(np.zeros((0, 3), np.int64), np.zeros(0))
        self._hazards: dict[str, int] = {}
        self._holding: dict[str, list[dict[str, Any]]] = {}

    def levels(self, conn: psycopg.Connection, setup: Setup, at: float) -> LevelArray:
        if setup is not self._setup:
            self._setup, self._rule = setup, target_rules(setup)
            self._hazards = {tid: i for i, (t, tid) in enumerate(setup.targets)
                             if t == "hazard"}
        if not self._hazards:
            return np.zeros(len(setup.targets), LEVEL_DTYPE)
        when = datetime.fromtimestamp(at, UTC)
        longest = timedelta(seconds=float(self._rule.hold_s.max()))
        rows = conn.execute(
            "SELECT hazard_id, severity, extract(epoch FROM observed_at)::float8, report_id, "
            "kind, observed_at FROM field_reports WHERE hazard_id = ANY(%s) "
            "AND observed_at <= %s AND observed_at > %s ORDER BY report_id",
            (list(self._hazards), when, when - longest)).fetchall()
        self._holding = {}
        if not rows:
            return np.zeros(len(setup.targets), LEVEL_DTYPE)
        target = np.array([self._hazards[r[0]] for r in rows], np.int64)
        severity = np.array([SEVERITIES.index(r[1]) for r in rows], np.int64)
        observed = np.array([r[2] for r in rows], np.float64)
        holds = (observed <= at) & (at < observed + self._rule.hold_s[target])
        holds &= self._rule.levels[target, severity] > 0
        for r, h in zip(rows, holds, strict=True):
            if h:
                self._holding.setdefault(r[0], []).append(
                    {"id": r[3], "kind": r[4], "severity": r[1],
                     "observed_at": r[5].isoformat()})
        return floor_levels(self._rule, target, severity, observed, at)

    def annotate(self, changes: Sequence[LevelChange]) -> list[LevelChange]:
        """The combined changes of points with reports holding a floor, naming them."""
        return [replace(c, evidence={**c.evidence, "field_reports": self._holding[c.target_id]})
                if c.target_type == "hazard" and c.hazard_kind == "combined"
                and c.target_id in self._holding else c for c in changes]
