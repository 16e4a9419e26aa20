"""Is a refreshed failure forecast news for the officers? (pure)

While a slope stays red, the engine refreshes its inverse-velocity forecast every time data
arrive, and the lifecycle records an "updated" event at most once per `update_interval_s`
(alerts/engine/updates.py): the history, the API and its live stream show every one. An SMS
is another matter: officers who get 预报更新 every hour of a two-day red learn to ignore
it. So an update is texted only when its forecast differs MATERIALLY from the forecast the
officers were last texted (the baseline, notify/context.py), i.e. when:

- a forecast appears where none was told (the first one after the warning: the warning SMS
  itself carries no forecast), or the told one is withdrawn;
- the forecast time moved by more than max(`min_shift_s`, `shift_fraction` x the time still
  to go), the time to go being from the event's data time to the earlier of the two
  forecasts: a forecast a week out may wander by a day, one due in 3 hours not by one;
- the band (upper - lower) narrowed or widened by more than max(`min_shift_s`,
  `band_fraction` x the told band).

The baseline is what was told, not the previous refresh, so a slow drift adds up until it is
material. Defaults 0.2, 1 h and 0.5; the routing file sets them ("forecast_updates",
notify/routing.py), since who is texted what is the notifier's decision, not the engine's.

Of several channels' forecasts the earliest is the alert's: the one that decides when to be
gone. Forecasts are read from the evidence as the engine writes them
({time, lower, upper, issued_at}, ISO 8601 UTC); a malformed one counts as none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from geowarn.errors import ConfigurationError

NewsKind = Literal["issued", "withdrawn", "earlier", "later", "narrower", "wider"]


@dataclass(frozen=True)
class ForecastPolicy:
    shift_fraction: float = 0.2
    min_shift_s: float = 3600.0
    band_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("shift_fraction", "min_shift_s", "band_fraction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"routing forecast_updates.{name}: need a number "
                                         f">= 0, got {value!r}")


@dataclass(frozen=True)
class Forecast:
    time: datetime
    lower: datetime | None = None
    upper: datetime | None = None

    @property
    def band(self) -> timedelta | None:
        if self.lower is None or self.upper is None:
            return None
        return self.upper - self.lower


@dataclass(frozen=True)
class News:
    kind: NewsKind
    by: timedelta = timedelta(0)  # how far the time moved or the band changed


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def parse(raw: Any) -> Forecast | None:
    """One evidence forecast ({time, lower, upper, ...}); None when absent or malformed."""
    if not isinstance(raw, Mapping):
        return None
    time = _time(raw.get("time"))
    if time is None:
        return None
    lower, upper = _time(raw.get("lower")), _time(raw.get("upper"))
    if lower is None or upper is None or not lower <= upper:
        lower = upper = None
    return Forecast(time, lower, upper)


def forecast_of(evidence: Mapping[str, Any]) -> Forecast | None:
    """The alert's forecast in an event's evidence: the earliest of its channels'."""
    channels = evidence.get("channels", ())
    if not isinstance(channels, list | tuple):
        return None
    found = [f for ch in channels if isinstance(ch, Mapping)
             if (f := parse(ch.get("forecast"))) is not None]
    return min(found, key=lambda f: f.time) if found else None


def news(told: Forecast | None, new: Forecast | None, at: datetime,
         policy: ForecastPolicy | None = None) -> News | None:
    """What changed from the `told` forecast to the `new` one, judged at data time `at`;
    None when nothing material did (module docstring)."""
    p = policy or ForecastPolicy()
    if new is None:
        return None if told is None else News("withdrawn")
    if told is None:
        return News("issued")
    floor = timedelta(seconds=p.min_shift_s)
    to_go = max(min(told.time, new.time) - at, timedelta(0))
    moved = new.time - told.time
    if abs(moved) > max(floor, to_go * p.shift_fraction):
        return News("earlier" if moved < timedelta(0) else "later", abs(moved))
    before, after = told.band, new.band
    if before is not None and after is not None:
        change = after - before
        if abs(change) > max(floor, before * p.band_fraction):
            return News("narrower" if change < timedelta(0) else "wider", abs(change))
    return None


def _span(span: timedelta, language: str) -> str:
    """Rounded as an officer reads it: 1天3小时 / 5小时 / 40分钟 (1 d 3 h / 5 h / 40 min)."""
    minutes = max(1, round(span.total_seconds() / 60))
    days, hours = divmod(round(minutes / 60), 24)
    zh = language == "zh"
    if minutes < 60:
        return f"{minutes}分钟" if zh else f"{minutes} min"
    if days == 0:
        return f"{hours}小时" if zh else f"{hours} h"
    if hours == 0:
        return f"{days}天" if zh else f"{days} d"
    return f"{days}天{hours}小时" if zh else f"{days} d {hours} h"


def words(item: News, language: str) -> str:
    """The change, as the 预报更新 SMS says it."""
    by = _span(item.by, language)
    zh = {"issued": "首次预报", "withdrawn": "预报已撤销", "earlier": f"较上次通知提前{by}",
          "later": f"较上次通知推迟{by}", "narrower": f"预测区间缩小{by}",
          "wider": f"预测区间扩大{by}"}
    en = {"issued": "first forecast", "withdrawn": "forecast withdrawn",
          "earlier": f"{by} earlier than last told", "later": f"{by} later than last told",
          "narrower": f"band {by} narrower", "wider": f"band {by} wider"}
    return (zh if language == "zh" else en)[item.kind]
