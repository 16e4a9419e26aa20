"""Drills (演练): what an exercise alert may send, and to whom (pure).

An alert of an exercise (alerts.exercise, notify/exercises.py) is planned like any other
(notify/planner.py), then `drill_plan` applies the exercise's rule:

- every text says it is a drill: the templates are read through `DrillTemplates`, which puts
  【演练】 (zh) or [DRILL] (en) before every template, SMS and voice alike; `render_sms` then
  shortens names, as it always does, so that prefix + text + tag still fits the SMS budget;
- a participant of the exercise (recipient ids as deliveries name them) gets the drill on the
  channel the live plan chose (SMS, voice, push);
- anyone else is written to the file channel only, once per purpose: the drill's record shows
  who a real warning would have reached, and no provider is ever asked to reach them;
- the duty room's group robot is a real group of real people: a drill never posts there;
- its CAP messages say status Exercise (notify/cap_feed.py), apart from the live feed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from notify import messages
from notify.planner import EventContext, Plan, PlannedDelivery, plan
from notify.routing import RoutingTable

PREFIX = {"zh": "【演练】", "en": "[DRILL] "}
FILE_CHANNEL = "file"


@dataclass(frozen=True)
class Drill:
    exercise: str
    participants: frozenset[str]  # recipient ids
    title: str = ""


@dataclass(frozen=True)
class DrillTemplates(messages.Templates):
    """The same template files, each text preceded by the drill prefix of its language."""

    def source(self, name: str, language: str) -> str:
        text = super().source(name, language)
        # A template missing in `language` falls back to zh: prefix in the text's language.
        found = language if (self.directory / language / f"{name}.txt").is_file() else "zh"
        return PREFIX.get(found, PREFIX["zh"]) + text


def is_drill_text(body: str) -> bool:
    return body.startswith(tuple(PREFIX.values()))


def drill_plan(ctx: EventContext, routing: RoutingTable, templates: messages.Templates,
               drill: Drill) -> Plan:
    """The live plan of `ctx` restricted to the drill's rule (module docstring)."""
    tpl = DrillTemplates(templates.directory)
    live = plan(ctx, dataclasses.replace(routing, duty_room_webhook=False), tpl)
    out: list[PlannedDelivery] = []
    recorded: set[tuple[str, str]] = set()
    for d in live.deliveries:
        if d.recipient_id in drill.participants:
            out.append(d)
        elif d.channel != "webhook" and (d.recipient_id, d.purpose) not in recorded:
            recorded.add((d.recipient_id, d.purpose))
            out.append(dataclasses.replace(d, channel=FILE_CHANNEL))
    return Plan(tuple(out), live.allocation, live.unplaced)
