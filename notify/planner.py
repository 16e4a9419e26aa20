"""From one alert event to the deliveries it owes (pure): recipients, channel, text.

`plan(ctx)` takes an EventContext (everything loaded by notify/context.py) and returns the
Plan: one PlannedDelivery per (recipient, channel), plus the households left without a
shelter place, which the officers are told about in a delivery of their own.

Event kinds (alerts/lifecycle_queries.EventKind):
- opened / raised: the level's audiences (routing.RoutingTable.warning); residents get their
  assigned shelter (notify/allocation.py). A floor-only level (the regional warning, not this
  slope, sets it) and maintenance alerts go to officers (and the maintainer) only.
- lowered / cleared: the officers who had been told, with the new level.
- updated (a refreshed failure forecast at the same level): the officers who had been told,
  only when the forecast changed materially since the one they were last texted
  (notify/forecast_news.py, routing.forecast_updates); never residents.
- resolved: the all-clear to everyone told before for this alert (residents included when
  they had been told to prepare or evacuate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gis.model import HazardPoint, Household, Shelter
from notify import forecast_news, messages
from notify.allocation import Allocation, allocate
from notify.forecast_news import Forecast, News
from notify.people import Contact
from notify.phones import mask
from notify.routing import OFFICERS, RESIDENTS, RoutingTable


@dataclass(frozen=True)
class PlannedDelivery:
    recipient_id: str
    name: str
    phone: str | None  # full number, in memory only (never stored in deliveries)
    language: str
    audience: str
    channel: str
    purpose: str
    body: str
    shelter_id: str | None = None

    @property
    def masked_phone(self) -> str:
        return mask(self.phone)


@dataclass(frozen=True)
class Told:
    """Someone told before for this alert (from earlier deliveries)."""

    recipient_id: str
    name: str
    audience: str
    language: str


@dataclass(frozen=True)
class EventContext:
    event_id: int
    alert_id: int
    event_kind: str
    level: int
    previous_level: int
    hazard_kind: str
    data_time: datetime
    target_type: str
    target_id: str
    county_code: str
    hazard: HazardPoint | None
    contacts: Mapping[str, Sequence[Contact]]  # audience -> people (monitors, officers, ...)
    households: Sequence[Household] = ()
    shelters: Sequence[tuple[Shelter, float]] = ()
    told: Sequence[Told] = ()
    floor_only: bool = False
    reason: str = ""
    hotline: str = "12336"  # 国土资源违法举报/地灾 hotline; configurable
    place: str = ""
    lookup_phone: Mapping[str, str] = field(default_factory=dict)  # told recipient -> phone
    push_recipients: frozenset[str] = frozenset()  # people with a Web Push subscription
    forecast: Forecast | None = None  # "updated" events: the alert's forecast now,
    told_forecast: Forecast | None = None  # and the one the officers were last texted
    forecast_news: News | None = None  # what changed between them (set by `plan`)


@dataclass(frozen=True)
class Plan:
    deliveries: tuple[PlannedDelivery, ...]
    allocation: Allocation | None = None
    unplaced: tuple[Household, ...] = ()
    skipped: str = ""  # why an event that could notify sends nothing (for the log)


def _values(ctx: EventContext, language: str) -> dict[str, object]:
    name = ctx.hazard.name if ctx.hazard else ctx.target_id
    return {"hazard": name, "place": ctx.place or ctx.county_code,
            "level": messages.level_words(ctx.level, language),
            "previous_level": messages.level_words(ctx.previous_level, language),
            "kind": messages.kind_words(ctx.hazard_kind, language), "hotline": ctx.hotline,
            "device": ctx.target_id, "reason": ctx.reason or "-",
            "change": (forecast_news.words(ctx.forecast_news, language)
                       if ctx.forecast_news else "-"),
            "minutes": 0}


def _sms(recipient: Contact | Told, phone: str | None, audience: str, purpose: str,
         body: str, channel: str, shelter_id: str | None = None) -> PlannedDelivery:
    return PlannedDelivery(recipient_id=recipient.recipient_id, name=recipient.name, phone=phone,
                           language=recipient.language, audience=audience, channel=channel,
                           purpose=purpose, body=body, shelter_id=shelter_id)


def plan(ctx: EventContext, routing: RoutingTable,
         templates: messages.Templates | None = None) -> Plan:
    tpl = templates or messages.Templates()
    if ctx.event_kind in ("opened", "raised"):
        result = _warning(ctx, routing, tpl)
    elif ctx.event_kind in ("lowered", "cleared"):
        result = _officers_told(ctx, routing, tpl, "level_down", "update")
    elif ctx.event_kind == "updated":  # a refreshed forecast: officers, never re-page residents
        found = forecast_news.news(ctx.told_forecast, ctx.forecast, ctx.data_time,
                                   routing.forecast_updates)
        if found is None:
            return Plan((), skipped="the refreshed forecast is not materially different from "
                        "the one last texted")
        ctx = dataclasses.replace(ctx, forecast_news=found)
        result = _officers_told(ctx, routing, tpl, "forecast_updated", "update")
    elif ctx.event_kind == "resolved":
        result = _all_clear(ctx, tpl, routing)
    else:
        return Plan(())
    # Texts first, calls after: the sender takes rows in this order, and a call takes
    # longer than an SMS to reach everyone.
    ordered = sorted(result.deliveries, key=lambda d: d.channel == "voice")
    if routing.duty_room_webhook:
        ordered += _duty_room(ordered)
    if routing.web_push:
        ordered += [dataclasses.replace(d, channel="push") for d in ordered
                    if d.channel in ("sms", routing.sms_channel)
                    and d.recipient_id in ctx.push_recipients]
    return Plan(tuple(ordered), result.allocation, result.unplaced)


def _duty_room(planned: list[PlannedDelivery]) -> list[PlannedDelivery]:
    """One post to the duty room's robot per purpose, with what the officers were told."""
    out = []
    for purpose in dict.fromkeys(d.purpose for d in planned):
        told = [d for d in planned if d.purpose == purpose and d.audience in OFFICERS]
        if told:
            zh = next((d for d in told if d.language == "zh"), told[0])
            out.append(PlannedDelivery("webhook:duty-room", "duty room", None, zh.language,
                                       "duty_room", "webhook", purpose, zh.body))
    return out


def _warning(ctx: EventContext, routing: RoutingTable, tpl: messages.Templates) -> Plan:
    # Device alerts (silent: maintenance; bad data: data_quality) are for the maintainer.
    device_alert = ctx.hazard_kind in ("maintenance", "data_quality")
    if ctx.floor_only or device_alert:
        template = "maintenance" if device_alert else "floor_officer"
        route = routing.officers_only(ctx.county_code, ctx.level)
        audiences = (*route.audiences, "maintainer") if device_alert else route.audiences
        return Plan(tuple(_to_people(ctx, audiences, template, "warning", routing, tpl)))
    route = routing.warning(ctx.county_code, ctx.level)
    out: list[PlannedDelivery] = []
    people_audiences = [a for a in route.audiences if a not in RESIDENTS]
    for audience in people_audiences:
        template = "warning_officer" if audience in OFFICERS else "warning_monitor"
        out += _to_people(ctx, (audience,), template, "warning", routing, tpl)
        if audience in route.voice_audiences:
            out += [_voice(d, ctx, tpl, "voice_monitor", None) for d in
                    _to_people(ctx, (audience,), template, "warning", routing, tpl)]
    residents = [a for a in route.audiences if a in RESIDENTS]
    if not residents:
        return Plan(tuple(out))
    audience = residents[-1]  # evacuate wins over prepare when a table lists both
    allocation = allocate(ctx.households, ctx.shelters)
    voice = audience in route.voice_audiences
    for h in ctx.households:
        placement = allocation.for_household(h.household_id)
        resident = Contact(f"household:{h.household_id}", h.head, h.phone, "zh", ("resident",),
                           ctx.county_code)
        values = _values(ctx, "zh")
        kind = "evacuate" if audience == "residents_evacuate" else "prepare"
        if placement is not None:
            s = placement.shelter
            values.update(shelter=s.name,
                          distance=messages.distance_words(placement.distance_m, "zh"),
                          shelter_phone=(s.contact.phone if s.contact and s.contact.phone
                                         else ctx.hotline))
            body = tpl.render_sms(f"resident_{kind}", "zh", values)
        else:
            body = tpl.render_sms(f"resident_{kind}_no_shelter", "zh", values)
        sid = placement.shelter.shelter_id if placement else None
        sms = _sms(resident, h.phone, audience, "warning", body, routing.sms_channel, sid)
        out.append(sms)
        if voice:
            out.append(_voice(sms, ctx, tpl, "voice_evacuate", placement.shelter.name
                              if placement else None))
    if allocation.unplaced:
        values = _values(ctx, "zh")
        values.update(households=len(allocation.unplaced),
                      people=sum(h.members for h in allocation.unplaced))
        officers = [a for a in route.audiences if a in OFFICERS] or ["county_officer"]
        for d in _to_people(ctx, officers, "unplaced_officer", "unplaced", routing, tpl,
                            values):
            out.append(d)
    return Plan(tuple(out), allocation, allocation.unplaced)


def _voice(sms: PlannedDelivery, ctx: EventContext, tpl: messages.Templates, template: str,
           shelter: str | None) -> PlannedDelivery:
    values = _values(ctx, sms.language)
    values["shelter"] = shelter or ("安全地带" if sms.language == "zh" else "safe ground")
    if shelter is None and template == "voice_evacuate":
        values["shelter"] = "安全地带" if sms.language == "zh" else "safe ground"
    body = tpl.render(template, sms.language, values)
    return PlannedDelivery(sms.recipient_id, sms.name, sms.phone, sms.language, sms.audience,
                           "voice", sms.purpose, body, sms.shelter_id)


def _to_people(ctx: EventContext, audiences: Sequence[str], template: str, purpose: str,
               routing: RoutingTable, tpl: messages.Templates,
               values: Mapping[str, object] | None = None) -> list[PlannedDelivery]:
    out = []
    seen: set[str] = set()
    for audience in audiences:
        for person in ctx.contacts.get(audience, ()):
            if person.recipient_id in seen:
                continue  # one message per person even if they hold two roles
            seen.add(person.recipient_id)
            v = dict(values) if values is not None else _values(ctx, person.language)
            if values is not None and person.language != "zh":
                v.update(level=messages.level_words(ctx.level, person.language))
            body = tpl.render_sms(template, person.language, v)
            out.append(_sms(person, person.phone, audience, purpose, body,
                            routing.sms_channel))
    return out


def _officers_told(ctx: EventContext, routing: RoutingTable, tpl: messages.Templates,
                   template: str, purpose: str) -> Plan:
    told = [t for t in ctx.told if t.audience in OFFICERS or t.audience == "monitor"]
    if not told:  # nobody recorded (e.g. deliveries purged): the level's officers
        return Plan(tuple(_to_people(ctx, routing.officers_only(ctx.county_code,
                    ctx.previous_level).audiences, template, purpose, routing, tpl)))
    return Plan(tuple(_told(ctx, told, template, purpose, routing, tpl)))


def _told(ctx: EventContext, told: Sequence[Told], template: str, purpose: str,
          routing: RoutingTable, tpl: messages.Templates) -> list[PlannedDelivery]:
    out = []
    for t in told:
        body = tpl.render_sms(template, t.language, _values(ctx, t.language))
        out.append(_sms(t, ctx.lookup_phone.get(t.recipient_id), t.audience, purpose, body,
                        routing.sms_channel))
    return out


def _all_clear(ctx: EventContext, tpl: messages.Templates, routing: RoutingTable) -> Plan:
    residents = [t for t in ctx.told if t.audience in RESIDENTS]
    others = [t for t in ctx.told if t.audience not in RESIDENTS]
    out = _told(ctx, residents, "all_clear", "all_clear", routing, tpl)
    out += _told(ctx, others, "resolved_officer", "all_clear", routing, tpl)
    return Plan(tuple(out))
