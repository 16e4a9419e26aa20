"""What the demo prints about its story: the alert timeline, the messages that went out (read
back from the notifier's file channel, which is the record of what was sent), and the alerts
open at the end. Times are shown as the county reads them, China Standard Time (UTC+8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

import psycopg

from alerts.lifecycle.queries import list_alerts
from alerts.lifecycle.writes import AlertEvent
from alerts.methods.levels import Level
from demo.story import Acked
from notify.messages import tag_of

CST = timezone(timedelta(hours=8), "CST")
LEVEL_ZH = {0: "无", 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}
KIND_ZH = {"rainfall": "降雨", "deformation": "变形", "maintenance": "设备运维",
           "data_quality": "数据质量", "combined": "综合"}
AUDIENCE = {"monitor": "monitors", "responsible": "responsible person",
            "township_officer": "township duty officer", "county_officer": "county duty officer",
            "city_officer": "city duty officer", "residents_prepare": "households (prepare)",
            "residents_evacuate": "households (evacuate)"}


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def cst(t: datetime) -> str:
    return t.astimezone(CST).strftime("%m-%d %H:%M")


def level_name(level: int) -> str:
    return Level(level).name.lower()


def forecast_of(evidence: Mapping[str, Any]) -> dict[str, str] | None:
    for ch in evidence.get("channels") or []:
        if isinstance(ch, dict) and isinstance(ch.get("forecast"), dict):
            return dict(ch["forecast"])
    return None


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def hazard_names(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT hazard_id, name FROM hazard_points").fetchall())


def timeline_line(e: AlertEvent, names: dict[str, str]) -> list[str]:
    """One line per level change, and the forecast under a red one."""
    name = names.get(e.target_id, "")
    lines = [f"    {cst(e.data_time)}  {e.target_id} {name}  {e.hazard_kind} "
             f"({KIND_ZH.get(e.hazard_kind, '')}): {level_name(e.previous_level)} -> "
             f"{level_name(e.level)} ({e.kind})"]
    fc = forecast_of(e.evidence) if e.level >= 3 else None
    if fc:
        at, lower, upper = (parse_time(fc[k]) for k in ("time", "lower", "upper"))
        ahead = (at - e.data_time).total_seconds() / 3600
        lines.append(f"                 failure forecast {cst(at)} CST (band {cst(lower)} to "
                     f"{cst(upper)}), {ahead:.1f} h after this reading")
    return lines


@dataclass(frozen=True)
class Sent:
    at: datetime
    text: str
    masked_to: str
    recipient: str
    name: str
    audience: str
    channel: str
    purpose: str = "warning"


def sent_messages(conn: psycopg.Connection, path: Path) -> list[Sent]:
    """Every line of the file channel, with who it was for (from the notifier's deliveries)."""
    if not path.exists():
        return []
    by_tag = {tag_of(int(r[0])): r[1:] for r in conn.execute(
        "SELECT delivery_id, recipient_name, audience, channel, purpose FROM deliveries"
    ).fetchall()}
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        name, audience, channel, purpose = by_tag.get(d["tag"], ("?", "?", "?", "?"))
        text = d["text"].removesuffix(f" #{d['tag']}")
        out.append(Sent(parse_time(d["at"]), text, d["to"], d["recipient"], name, audience,
                        channel, purpose))
    return out


def report_messages(sent: Sequence[Sent], path: Path, out: TextIO, *, shown: str) -> None:
    """Messages grouped by time and text: the text once, then who got it."""
    groups: dict[tuple[datetime, str, str], list[Sent]] = {}
    updates = [s for s in sent if s.purpose == "update"]
    for s in sent:
        if s.purpose != "update":
            groups.setdefault((s.at, s.channel, s.text), []).append(s)
    sms = sum(1 for s in sent if s.channel in ("sms", "file"))
    _say(out, f"  {len(sent)} messages ({sms} SMS, {len(sent) - sms} voice calls) written by "
              f"the file channel to {shown}, one JSON line each (phones masked):")
    for (at, channel, text), who in sorted(groups.items(), key=lambda kv: kv[0][0]):
        kind = "voice call" if channel == "voice" else "SMS"
        _say(out, f"    {cst(at)}  {kind} x{len(who)}: {text}")
        _say(out, f"                 to {_who(who)}")
    if updates:
        first, last = min(updates, key=lambda s: s.at), max(updates, key=lambda s: s.at)
        _say(out, f"    {cst(first.at)} to {cst(last.at)}  {len(updates)} forecast updates "
                  f"(SMS), the latest: {last.text}")
        _say(out, f"                 to {_who(updates)}")


def _who(who: Sequence[Sent]) -> str:
    """The audiences, then up to four recipients (name and masked number)."""
    people = list(dict.fromkeys(f"{w.name} {w.masked_to}" for w in who))
    shown = ", ".join(people[:4]) + (f" and {len(people) - 4} more" if len(people) > 4 else "")
    audiences = sorted({AUDIENCE.get(w.audience, w.audience) for w in who})
    return f"{', '.join(audiences)}: {shown}"


class Timeline:
    """Level changes as they come, one line each (and the forecast under an orange or red);
    a refreshed forecast at the same level ('updated', hourly at most) is counted and shown
    once, before the target's next change and at the end."""

    def __init__(self, names: dict[str, str], out: TextIO) -> None:
        self.names, self.out = names, out
        self.updates: dict[tuple[str, str], list[AlertEvent]] = {}

    def add(self, events: Sequence[AlertEvent]) -> None:
        for e in events:
            key = (e.target_id, e.hazard_kind)
            if e.kind == "updated":
                self.updates.setdefault(key, []).append(e)
                continue
            self._flush(key)
            for line in timeline_line(e, self.names):
                _say(self.out, line)

    def acknowledged(self, a: Acked) -> None:
        """An acknowledgement in the story, and what it did to the escalation (read back)."""
        minutes = (a.at - a.raised_at).total_seconds() / 60
        _say(self.out, f"    {cst(a.at)}  {a.target_id} {self.names.get(a.target_id, '')}  "
                       f"{a.hazard_kind}: {level_name(a.level)} acknowledged by {a.user} "
                       f"{minutes:.0f} min after it was raised (as POST /api/alerts/"
                       f"{a.alert_id}/ack does)")
        if a.stopped_at is not None:
            climbed = (f"after {a.tier} escalation tier(s)" if a.tier else
                       "before its first escalation")
            _say(self.out, f"                 escalation stopped at {cst(a.stopped_at)} by "
                           f"{a.stopped_by}, {climbed}: no further officer paged")
        else:
            _say(self.out, "                 escalation still running (not stopped)")

    def close(self) -> None:
        for key in list(self.updates):
            self._flush(key)

    def _flush(self, key: tuple[str, str]) -> None:
        ups = self.updates.pop(key, [])
        if not ups:
            return
        last = ups[-1]
        fc = forecast_of(last.evidence)
        latest = f"; the latest, {cst(last.data_time)}: failure forecast " \
                 f"{cst(parse_time(fc['time']))} CST" if fc else ""
        _say(self.out, f"    {cst(ups[0].data_time)} to {cst(last.data_time)}  {key[0]} "
                       f"{self.names.get(key[0], '')}  forecast refreshed {len(ups)} times at "
                       f"{level_name(last.level)}{latest}")


def report_open_alerts(conn: psycopg.Connection, names: dict[str, str], out: TextIO
                       ) -> list[Any]:
    alerts = [a for a in list_alerts(conn, limit=200) if a.status != "resolved"]
    _say(out, f"  {len(alerts)} alerts open:")
    for a in alerts:
        _say(out, f"    #{a.alert_id} {a.target_id} {names.get(a.target_id, '')} "
                  f"{a.hazard_kind}: {level_name(a.level)} ({LEVEL_ZH[int(a.level)]}预警), "
                  f"{a.status}")
    return alerts
