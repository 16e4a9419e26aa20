"""Per-channel rule configuration for the engine: which method judges a channel, with which
numbers, and how they are overridden per sensor kind, hazard point, site or channel.

Defaults come from /work/shared/reference/warning-science.md; where the reference gives no
number (water-level stages, displacement velocities and cumulative limits are per site) the
default is NaN, meaning "that criterion is off until someone configures it". Overrides live
in the `engine_rules` table (migration 0045) as flat JSON objects whose keys are the fields of
`RuleParams`; later scopes win: kind → hazard point → site → channel.

Mappings chosen here (no national number exists; documented so operators can argue with them):
- Water quality (GB 3838-2002): class ≤ IV no warning; class V blue; worse than V (劣V) yellow;
  at least 2× the class V limit orange; at least 4× red. Dissolved oxygen (a minimum): below
  2 mg/L yellow, below 1 orange, below 0.5 red. pH outside 6–9 yellow, outside 4–11 orange.
- Air quality (HJ 633-2012 IAQI of each pollutant, hourly values): IAQI > 200 (heavy) blue,
  > 300 (severe) yellow, > 400 orange, ≥ 500 red. China's heavy-pollution warnings are
  duration-based forecasts; a monitoring engine only has the present, so the persistence rule
  (n of the last m samples) stands in for duration.
- Displacement: the tangent-angle level counts only while acceleration is established; steady
  creep at α ≈ 45° is the normal state of a creeping slope and raises nothing on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from geowarn.errors import InvalidInput

Method = Literal["rainfall", "displacement", "water_level", "water_quality", "air_quality",
                 "threshold", "none"]
Family = Literal["rainfall", "deformation", "water_level", "water_quality", "air_quality",
                 "other"]
NAN4 = (math.nan, math.nan, math.nan, math.nan)
RAIN_WINDOWS_H = (1.0, 3.0, 6.0, 12.0, 24.0, 72.0)
# The county example table (blue, yellow, orange, red mm) for 1/3/6/24 h; 12 h and 72 h are
# computed and shown as evidence but carry no thresholds until a site sets them.
DEFAULT_RAIN_TABLE = ((35.0, 45.0, 60.0, 80.0), (55.0, 75.0, 100.0, 120.0),
                      (70.0, 95.0, 120.0, 150.0), NAN4, (100.0, 130.0, 160.0, 200.0), NAN4)

# catalogue (kind, channel) → method; anything else is "none" (quality and silence only).
_METHODS: dict[tuple[str, str], Method] = {
    ("rain_gauge", "rain"): "rainfall",
    ("gnss", "disp_x"): "displacement", ("gnss", "disp_y"): "displacement",
    ("crack_meter", "opening"): "displacement",
    ("inclinometer", "disp_a"): "displacement", ("inclinometer", "disp_b"): "displacement",
    ("water_level", "level"): "water_level",
    **{("water_quality", c): "water_quality" for c in ("ph", "do", "codmn", "cod", "nh3n",
                                                       "tp")},
    **{("air_quality", c): "air_quality" for c in ("pm25", "pm10", "so2", "no2", "o3", "co")},
}
FAMILY_OF_METHOD: dict[str, Family] = {
    "rainfall": "rainfall", "displacement": "deformation", "water_level": "water_level",
    "water_quality": "water_quality", "air_quality": "air_quality", "threshold": "other",
    "none": "other"}
# catalogue water-quality channel → GB 3838 item; air-quality channel → HJ 633 table used for
# hourly values (PM has only 24 h breakpoints, which HJ 633's hourly report also uses).
GB3838_ITEM = {"ph": "ph", "do": "dissolved_oxygen", "codmn": "permanganate_index",
               "cod": "cod", "nh3n": "ammonia_nitrogen", "tp": "total_phosphorus"}
AQI_TABLE = {"pm25": "pm25_24h", "pm10": "pm10_24h", "so2": "so2_1h", "no2": "no2_1h",
             "o3": "o3_1h", "co": "co_1h"}


@dataclass(frozen=True)
class RuleParams:
    """Every tunable number of one channel's rule (units in the field names)."""

    method: Method = "none"
    rain_table_mm: tuple[tuple[float, float, float, float], ...] = DEFAULT_RAIN_TABLE
    thresholds: tuple[float, float, float, float] = NAN4  # method "threshold", value units
    clear_ratio: float = 0.9  # clear threshold = raise threshold × this (maxima)
    dwell_s: float = 3600.0
    offline_after_s: float = math.nan  # NaN: 3 reporting intervals, at least 15 minutes
    # displacement
    velocity_mm_per_day: tuple[float, float, float, float] = NAN4
    cumulative_mm: tuple[float, float, float, float] = NAN4
    baseline: float = math.nan  # NaN: the first value the engine sees
    reference_rate_mm_per_day: float = math.nan  # v̄; NaN: learnt from the first hours
    reference_hours: float = 24.0
    sign: float = 1.0  # −1 for a sensor whose readings fall as the slope moves
    # water level (m) and rate of rise (m/h)
    warning_m: float = math.nan
    guaranteed_m: float = math.nan
    historical_max_m: float = math.nan
    approach_margin_m: float = 0.5
    rise_rate_m_per_h: tuple[float, float, float, float] = NAN4
    # pollution persistence: a level needs n of the last m samples
    persist_n: int = 2
    persist_m: int = 3
    # quality
    hampel_k: float = 3.0
    hampel_min_deviation: float = 0.0
    stuck_count: int = 6
    # fusion (read from the target's rule: hazard point or site scope)
    fusion_mode: Literal["max", "k_of_n"] = "max"
    fusion_k: int = 2

    def __post_init__(self) -> None:
        if self.method not in FAMILY_OF_METHOD:
            raise InvalidInput(f"unknown rule method {self.method!r}")
        if len(self.rain_table_mm) != len(RAIN_WINDOWS_H) or any(
                len(row) != 4 for row in self.rain_table_mm):
            raise InvalidInput(f"rain_table_mm needs {len(RAIN_WINDOWS_H)} rows (windows "
                               f"{RAIN_WINDOWS_H} h) of 4 thresholds")
        rows = {"thresholds": self.thresholds, "velocity_mm_per_day": self.velocity_mm_per_day,
                "cumulative_mm": self.cumulative_mm, "rise_rate_m_per_h": self.rise_rate_m_per_h,
                **{f"rain_table_mm[{i}]": r for i, r in enumerate(self.rain_table_mm)}}
        for name, row in rows.items():
            finite = [x for x in row if not math.isnan(x)]
            if len(row) != 4 or finite != sorted(finite):
                raise InvalidInput(f"{name}: need 4 thresholds rising from blue to red: {row}")
        if not 0 < self.clear_ratio <= 1:
            raise InvalidInput(f"clear_ratio must be in (0, 1], got {self.clear_ratio}")
        if not self.dwell_s >= 0:
            raise InvalidInput(f"dwell_s must be >= 0, got {self.dwell_s}")
        if not 1 <= self.persist_n <= self.persist_m <= 16:
            raise InvalidInput(f"need 1 <= persist_n <= persist_m <= 16, got "
                               f"{self.persist_n}/{self.persist_m}")
        if self.sign not in (1.0, -1.0):
            raise InvalidInput(f"sign must be 1 or -1, got {self.sign}")
        if self.fusion_mode not in ("max", "k_of_n") or self.fusion_k < 1:
            raise InvalidInput(f"fusion must be max or k_of_n with k >= 1, got "
                               f"{self.fusion_mode}/{self.fusion_k}")
        if self.stuck_count < 2 or not self.hampel_k > 0 or not self.reference_hours > 0:
            raise InvalidInput("need stuck_count >= 2, hampel_k > 0 and reference_hours > 0")


_FIELDS = {f.name: f for f in fields(RuleParams)}


def _coerce(name: str, value: Any) -> Any:
    default = getattr(RuleParams(), name)
    try:
        if name == "rain_table_mm":
            return tuple(tuple(float("nan") if x is None else float(x) for x in row)
                         for row in value)
        if isinstance(default, tuple):
            return tuple(float("nan") if x is None else float(x) for x in value)
        if isinstance(default, bool):
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, bool) or int(value) != value:
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return float("nan") if value is None else float(value)
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError):
        raise InvalidInput(f"rule parameter {name}: {value!r} is not a valid "
                           f"{type(default).__name__}") from None


def apply_overrides(base: RuleParams, overrides: Mapping[str, Any], where: str) -> RuleParams:
    """`base` with the JSON `overrides` of one scope applied; unknown keys are errors."""
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"engine rule {where}: unknown parameter(s) {unknown}; known: "
                           f"{sorted(_FIELDS)}")
    values = {k: _coerce(k, v) for k, v in overrides.items()}
    try:
        return replace(base, **values)
    except InvalidInput as exc:
        raise InvalidInput(f"engine rule {where}: {exc}") from None


def default_params(kind: str, spec: str) -> RuleParams:
    return RuleParams(method=_METHODS.get((kind, spec), "none"))


@dataclass(frozen=True)
class ChannelInfo:
    """What the rules need to know about one channel (loaded by engine_data)."""

    channel_id: int
    device_id: str
    kind: str
    spec: str
    hazard_id: str | None
    site_id: str | None
    reporting_interval_s: float

    @property
    def target(self) -> tuple[Literal["hazard", "site", "device"], str]:
        """Where the channel's warnings land: its hazard point, else its site, else itself."""
        if self.hazard_id:
            return "hazard", self.hazard_id
        if self.site_id:
            return "site", self.site_id
        return "device", self.device_id


Scope = Literal["kind", "hazard", "site", "channel"]
SCOPES: tuple[Scope, ...] = ("kind", "hazard", "site", "channel")


def resolve(channels: Sequence[ChannelInfo],
            overrides: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[RuleParams]:
    """The effective rule of every channel. `overrides` maps (scope, scope id) to JSON; kind
    scope ids are "kind" or "kind.channel" (the latter applied after the former)."""
    out = []
    for ch in channels:
        p = default_params(ch.kind, ch.spec)
        keys: list[tuple[str, str]] = [("kind", ch.kind), ("kind", f"{ch.kind}.{ch.spec}")]
        if ch.hazard_id:
            keys.append(("hazard", ch.hazard_id))
        if ch.site_id:
            keys.append(("site", ch.site_id))
        keys.append(("channel", str(ch.channel_id)))
        for key in keys:
            if key in overrides:
                p = apply_overrides(p, overrides[key], f"{key[0]} {key[1]!r}")
        if math.isnan(p.offline_after_s):
            p = replace(p, offline_after_s=max(3.0 * ch.reporting_interval_s, 900.0))
        out.append(p)
    return out


def validate_override(scope: str, scope_id: str, params: Mapping[str, Any]) -> None:
    """Check one override before it is stored (so a bad row never reaches the engine)."""
    if scope not in SCOPES:
        raise InvalidInput(f"rule scope must be one of {SCOPES}, got {scope!r}")
    if not scope_id:
        raise InvalidInput("rule scope id must not be empty")
    if scope == "channel" and not scope_id.isdigit():
        raise InvalidInput(f"channel scope ids are channel ids (digits), got {scope_id!r}")
    apply_overrides(RuleParams(), params, f"{scope} {scope_id!r}")
