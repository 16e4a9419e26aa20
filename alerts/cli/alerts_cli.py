"""`geowarn alerts ...`: list, show, acknowledge and resolve alerts.

Levels print as the Roman grade, the colour and its Chinese name ("III yellow 黄色"); JSON
output uses the colour names alone ("yellow"), as alerts/lifecycle/queries.py documents.
`list` shows unresolved alerts (open and acknowledged) unless --status says otherwise.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from alerts.lifecycle import writes as lifecycle
from alerts.lifecycle.queries import (
    HAZARD_KINDS,
    Alert,
    AlertDetail,
    detail_json,
    parse_level,
    with_history,
)
from alerts.methods.levels import Level
from geowarn.db import connect
from geowarn.errors import InvalidInput
from geowarn.timeargs import time_arg

_COLOUR_ZH = {Level.NONE: "", Level.BLUE: "蓝色", Level.YELLOW: "黄色", Level.ORANGE: "橙色",
              Level.RED: "红色"}
_STATUS_CHOICES = ("active", "open", "acknowledged", "resolved", "all")


def register(sub: argparse._SubParsersAction) -> None:
    al = sub.add_parser("alerts", help="alerts: list, show, acknowledge, resolve")
    asub = al.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    ls = asub.add_parser("list", help="list alerts, most urgent first")
    ls.add_argument("--status", choices=_STATUS_CHOICES, default="active",
                    help="active = open or acknowledged (default)")
    ls.add_argument("--target", metavar="ID", help="hazard point, site or device id")
    ls.add_argument("--kind", choices=HAZARD_KINDS, help="hazard kind")
    ls.add_argument("--min-level", type=_level_arg, metavar="LEVEL",
                    help="blue, yellow, orange or red: current level at least this")
    ls.add_argument("--since", type=time_arg, metavar="T",
                    help="alerts changed or resolved at or after T (ISO 8601 with offset)")
    ls.add_argument("--exercise", metavar="NAME", help="only the drills of this exercise")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="JSON with level history and audit")
    ls.set_defaults(func=_list)

    sh = asub.add_parser("show", help="one alert: level history with evidence, audit trail")
    sh.add_argument("alert_id", type=int, metavar="ID")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)

    ack = asub.add_parser("ack", help="acknowledge an open alert")
    ack.add_argument("alert_id", type=int, metavar="ID")
    ack.add_argument("--user", required=True)
    ack.add_argument("--note")
    ack.set_defaults(func=_ack)

    rs = asub.add_parser("resolve", help="resolve an open or acknowledged alert")
    rs.add_argument("alert_id", type=int, metavar="ID")
    rs.add_argument("--user", required=True)
    rs.add_argument("--reason", required=True)
    rs.set_defaults(func=_resolve)


def _level_arg(text: str) -> Level:
    try:
        level = parse_level(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if level == Level.NONE:
        raise argparse.ArgumentTypeError("--min-level takes blue, yellow, orange or red")
    return level


def level_label(level: Level) -> str:
    """ "III yellow 黄色"; "none" for Level.NONE."""
    if level == Level.NONE:
        return "none"
    return f"{level.grade} {level.name.lower()} {_COLOUR_ZH[level]}"


def drill_label(alert: Alert) -> str:
    """ "[DRILL 演练 NAME] " for an exercise's alert, "" for a live one: a drill must never
    read as a live warning."""
    return f"[DRILL 演练 {alert.exercise}] " if alert.exercise is not None else ""


def target_label(alert: Alert) -> str:
    if alert.target_type != "hazard":
        return f"{alert.target_type} {alert.target_id}"
    if alert.target_name is None:
        return f"hazard {alert.target_id}"
    return f"hazard {alert.target_id} {alert.target_name} ({alert.county_code})"


def _time(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)
                  ).rstrip() for row in rows)


def _list(args: argparse.Namespace) -> int:
    status: list[str] | None = {"active": ["open", "acknowledged"], "all": None}.get(
        args.status, [args.status])
    with connect(autocommit=True) as conn:
        alerts = lifecycle.list_alerts(conn, status=status, target_id=args.target,
                                       hazard_kind=args.kind, min_level=args.min_level,
                                       since=args.since, exercise=args.exercise,
                                       limit=args.limit)
        if args.json:
            print(json.dumps([detail_json(d) for d in with_history(conn, alerts)],
                             ensure_ascii=False, indent=2))
            return 0
    if not alerts:
        print("no alerts")
        return 0
    rows = [("ID", "STATUS", "LEVEL", "PEAK", "KIND", "TARGET", "OPENED", "LAST CHANGE")]
    rows += [(str(a.alert_id), a.status, level_label(a.level), level_label(a.peak_level),
              a.hazard_kind, drill_label(a) + target_label(a), _time(a.opened_at),
              _time(a.last_data_time))
             for a in alerts]
    print(_table(rows))
    return 0


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _empty(value: Any) -> bool:
    """Nothing worth a line: None, {}, [] or a list of Nones."""
    if value is None:
        return True
    if isinstance(value, Mapping | list):
        return all(_empty(v) for v in (value.values() if isinstance(value, Mapping) else value))
    return False


def _inline(value: Mapping[str, Any]) -> str | None:
    """A mapping of scalars (or of {mm_per_day, se} pairs) on one line, else None."""
    parts = []
    for k, v in value.items():
        if _empty(v):
            continue
        if isinstance(v, Mapping) and set(v) == {"mm_per_day", "se"}:
            parts.append(f"{k} {_scalar(v['mm_per_day'])} ± {_scalar(v['se'])}")
        elif isinstance(v, Mapping | list) and not (
                isinstance(v, list) and all(not isinstance(x, Mapping | list) for x in v)):
            return None
        else:
            parts.append(f"{k} {_scalar(v)}")
    return ", ".join(parts)


def render_evidence(evidence: Mapping[str, Any], indent: str = "      ") -> list[str]:
    """Evidence as a person reads it: the sentences first, then one line per fact; nothing
    for empty values; each channel its own block."""
    out = [f"{indent}{evidence[k]}" for k in ("summary_en", "summary_zh") if k in evidence]
    for key, value in evidence.items():
        if key in ("summary_en", "summary_zh") or _empty(value):
            continue
        if key == "channels" and isinstance(value, list) and all(
                isinstance(ch, Mapping) for ch in value):
            for ch in value:
                head = " ".join(str(ch[k]) for k in ("device_id", "sensor") if k in ch)
                level = ch.get("level")
                lv = f": {level_label(Level(level))}" if isinstance(level, int) else ""
                out.append(f"{indent}channel {head}{lv}")
                rest = {k: v for k, v in ch.items() if k not in ("device_id", "sensor", "level")}
                out += render_evidence(rest, indent + "  ")
        elif isinstance(value, Mapping):
            line = _inline(value)
            if line is not None:
                out.append(f"{indent}{key}: {line}")
            else:
                out.append(f"{indent}{key}:")
                out += render_evidence(value, indent + "  ")
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            for item in value:
                line = _inline(item)
                out.append(f"{indent}{key}: {line}")
        else:
            out.append(f"{indent}{key}: {_scalar(value)}")
    return out


def render_detail(detail: AlertDetail) -> str:
    a = detail.alert
    out = [f"{drill_label(a)}Alert {a.alert_id}: {a.hazard_kind} at {target_label(a)}"]
    if a.exercise is not None:
        out.append(f"  exercise:    {a.exercise} (a drill, 演练: not a live warning)")
    if a.threatened_people is not None:
        out.append(f"  threatened:  {a.threatened_households} households, "
                   f"{a.threatened_people} people")
    out += [f"  status:      {a.status}",
            f"  level:       {level_label(a.level)} (peak {level_label(a.peak_level)})",
            f"  opened:      {_time(a.opened_at)} (data time), by {a.engine}",
            f"  last change: {_time(a.last_data_time)} (data time)"]
    if a.acknowledged_by:
        note = f": {a.ack_note}" if a.ack_note else ""
        out.append(f"  acknowledged by {a.acknowledged_by} at {_time(a.acknowledged_at)}{note}")
    if a.resolved_by:
        out.append(f"  resolved by {a.resolved_by} at {_time(a.resolved_at)}: "
                   f"{a.resolve_reason}")
    out.append("Level history:")
    for e in detail.events:
        out.append(f"  {_time(e.data_time)}  {e.kind:<8} {level_label(e.previous_level)} -> "
                   f"{level_label(e.level)}  (by {e.actor}, recorded {_time(e.recorded_at)})")
        out += render_evidence(e.evidence)
    out.append("Audit trail:")
    for entry in detail.audit:
        extra = json.dumps(dict(entry.detail), ensure_ascii=False, default=str)
        out.append(f"  {_time(entry.at)}  {entry.actor}  {entry.action}  {extra}")
    return "\n".join(out)


def _show(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        detail = lifecycle.get_alert(conn, args.alert_id)
    if args.json:
        print(json.dumps(detail_json(detail), ensure_ascii=False, indent=2))
    else:
        print(render_detail(detail))
    return 0


def _ack(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        alert = lifecycle.acknowledge(conn, args.alert_id, user=args.user, note=args.note)
    print(f"{drill_label(alert)}alert {alert.alert_id} acknowledged by {alert.acknowledged_by} "
          f"({level_label(alert.level)}, {alert.hazard_kind} at {target_label(alert)})")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        alert = lifecycle.resolve(conn, args.alert_id, user=args.user, reason=args.reason)
    print(f"{drill_label(alert)}alert {alert.alert_id} resolved by {alert.resolved_by}: "
          f"{alert.resolve_reason}")
    return 0
