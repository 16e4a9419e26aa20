"""Who hears what: the routing table per level and audience (pure).

Defaults (see docs in the README's Notifications section), each county may override them in a
JSON file (GEOWARN_NOTIFY_ROUTING_FILE); the most specific code wins (county over city over
province, GB/T 2260 prefixes):

    blue    monitors
    yellow  + township duty officer (+ the point's responsible person)
    orange  + county duty officer, residents told to prepare
    red     + city duty officer, residents told to evacuate now

A level falling (or clearing) informs the officers who had been told. The resolution sends
the all-clear (解除) to the residents who were told to prepare or evacuate, and to the others
who had been told. Regional-warning floors and maintenance alerts go to officers (and for a
device, its maintainer) only, never to residents: a floor is a forecast for a region, not
evidence at this slope.

A refreshed failure forecast (an "updated" event) is texted to the officers who had been told
only when it changed materially since the one they were last texted; "forecast_updates" in
the file sets what is material (notify/forecast_news.py).

Escalation (notify/escalation.py) climbs OFFICER_LADDER past the officers a level already
reaches, one tier per `escalate_after_min[level]` minutes without acknowledgement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geowarn.errors import ConfigurationError
from notify.forecast_news import ForecastPolicy

AUDIENCES = ("monitor", "responsible", "township_officer", "county_officer", "city_officer",
             "residents_prepare", "residents_evacuate", "maintainer", "expert")
OFFICERS = ("township_officer", "county_officer", "city_officer", "expert")
RESIDENTS = ("residents_prepare", "residents_evacuate")
OFFICER_LADDER = ("township_officer", "county_officer", "city_officer")
CHANNELS = ("file", "sms", "voice", "webhook", "push")

_DEFAULT_LEVELS: dict[int, tuple[str, ...]] = {
    1: ("monitor",),
    2: ("monitor", "responsible", "township_officer"),
    3: ("monitor", "responsible", "township_officer", "county_officer", "residents_prepare"),
    4: ("monitor", "responsible", "township_officer", "county_officer", "city_officer",
        "residents_evacuate"),
}
# Red warnings are also read aloud by phone to residents and monitors (people may sleep
# through an SMS at night).
_DEFAULT_VOICE = {4: ("monitor", "residents_evacuate")}
_DEFAULT_ESCALATE_MIN = {1: 60.0, 2: 30.0, 3: 15.0, 4: 10.0}


@dataclass(frozen=True)
class Route:
    audiences: tuple[str, ...]
    voice_audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingTable:
    levels: Mapping[int, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_LEVELS))
    voice: Mapping[int, tuple[str, ...]] = field(default_factory=lambda: dict(_DEFAULT_VOICE))
    escalate_after_min: Mapping[int, float] = field(
        default_factory=lambda: dict(_DEFAULT_ESCALATE_MIN))
    # county/city/province code -> {level: audiences}
    overrides: Mapping[str, Mapping[int, tuple[str, ...]]] = field(default_factory=dict)
    sms_channel: str = "sms"  # "file" when no SMS provider is configured
    # Also post what officers are told to the duty room's group robot (channel "webhook").
    duty_room_webhook: bool = False
    # Also push what officers are told to their console (channel "push"), for those who
    # subscribed.
    web_push: bool = False
    # When a refreshed forecast is worth an SMS (notify/forecast_news.py).
    forecast_updates: ForecastPolicy = field(default_factory=ForecastPolicy)

    def _override(self, county_code: str, level: int) -> tuple[str, ...] | None:
        # Most specific first: 331122, 331100, 330000.
        for code in (county_code, county_code[:4] + "00", county_code[:2] + "0000"):
            table = self.overrides.get(code)
            if table is not None and level in table:
                return table[level]
        return None

    def warning(self, county_code: str, level: int) -> Route:
        """Audiences of a warning at `level` (1..4) for a hazard point in `county_code`."""
        if level not in (1, 2, 3, 4):
            return Route(())
        audiences = self._override(county_code, level)
        if audiences is None:
            audiences = self.levels.get(level, ())
        voice = tuple(a for a in self.voice.get(level, ()) if a in audiences)
        return Route(tuple(audiences), voice)

    def officers_only(self, county_code: str, level: int) -> Route:
        """For floors, falls and maintenance: the officers the level would reach (at least
        the county duty officer, so that someone is always told)."""
        officers = tuple(a for a in self.warning(county_code, max(level, 1)).audiences
                         if a in OFFICERS)
        return Route(officers or ("county_officer",))

    def next_tier(self, county_code: str, level: int, tier: int) -> str | None:
        """The officer role reached by escalation step `tier` (1, 2, ...), or None when the
        ladder is exhausted."""
        reached = set(self.warning(county_code, level).audiences)
        above = [r for r in OFFICER_LADDER if r not in reached]
        return above[tier - 1] if 1 <= tier <= len(above) else None


def _levels(obj: Any, where: str) -> dict[int, tuple[str, ...]]:
    if not isinstance(obj, Mapping):
        raise ConfigurationError(f"routing {where}: expected an object of level -> audiences")
    out: dict[int, tuple[str, ...]] = {}
    names = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}
    for key, value in obj.items():
        level = names.get(str(key).lower()) or (int(key) if str(key).isdigit() else 0)
        if level not in (1, 2, 3, 4):
            raise ConfigurationError(f"routing {where}: {key!r} is not a level (blue..red, 1..4)")
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigurationError(f"routing {where}.{key}: expected a list of audiences")
        bad = [a for a in value if a not in AUDIENCES]
        if bad:
            raise ConfigurationError(f"routing {where}.{key}: unknown audience(s) {bad} "
                                     f"(known: {', '.join(AUDIENCES)})")
        out[level] = tuple(value)
    return out


def load_routing(path: Path | None, *, sms_channel: str = "sms") -> RoutingTable:
    """The default table, with the levels/voice/escalation/county overrides of a JSON file:
    {"levels": {...}, "voice": {...}, "escalate_after_min": {"red": 5},
     "counties": {"331122": {"orange": [...]}},
     "forecast_updates": {"shift_fraction": 0.2, "min_shift_min": 60, "band_fraction": 0.5}}."""
    if path is None:
        return RoutingTable(sms_channel=sms_channel)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"routing file {path.name}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"routing file {path.name}: expected a JSON object")
    base = RoutingTable(sms_channel=sms_channel)
    levels = {**base.levels, **_levels(data.get("levels", {}), "levels")}
    voice = {**base.voice, **_levels(data.get("voice", {}), "voice")}
    escalate = dict(base.escalate_after_min)
    for key, minutes in dict(data.get("escalate_after_min", {})).items():
        level = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}.get(str(key), 0) or int(key)
        if not isinstance(minutes, int | float) or minutes <= 0:
            raise ConfigurationError(f"routing escalate_after_min.{key}: need minutes > 0")
        escalate[level] = float(minutes)
    counties = {}
    for code, table in dict(data.get("counties", {})).items():
        if not (len(code) == 6 and code.isdigit()):
            raise ConfigurationError(f"routing counties: {code!r} is not a 6-digit code")
        counties[code] = _levels(table, f"counties.{code}")
    return RoutingTable(levels, voice, escalate, counties, sms_channel,
                        forecast_updates=_forecast_policy(data.get("forecast_updates", {})))


def _forecast_policy(obj: Any) -> ForecastPolicy:
    """{"shift_fraction": 0.2, "min_shift_min": 60, "band_fraction": 0.5}, each optional."""
    known = ("shift_fraction", "min_shift_min", "band_fraction")
    if not isinstance(obj, Mapping):
        raise ConfigurationError("routing forecast_updates: expected an object")
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise ConfigurationError(f"routing forecast_updates: unknown setting(s) {unknown} "
                                 f"(known: {', '.join(known)})")
    base = ForecastPolicy()
    minutes = obj.get("min_shift_min", base.min_shift_s / 60.0)
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not minutes >= 0:
        raise ConfigurationError(f"routing forecast_updates.min_shift_min: need minutes >= 0, "
                                 f"got {minutes!r}")
    return ForecastPolicy(obj.get("shift_fraction", base.shift_fraction), minutes * 60.0,
                          obj.get("band_fraction", base.band_fraction))
