"""Per-channel rule configuration for the engine: which method judges a channel (per sensor
kind and channel), the per-kind quality defaults, and how overrides per sensor kind, hazard
point, site or channel resolve into each channel's `RuleParams` (alerts/engine/rule_params.py:
the numbers, their validation and defaults). Later scopes win: kind → hazard point → site →
channel.

Mappings chosen here (no national number exists; documented so operators can argue with them):
- Water quality (GB 3838-2002): class ≤ IV no warning; class V blue; worse than V (劣V) yellow;
  at least 2× the class V limit orange; at least 4× red. Dissolved oxygen (a minimum): below
  2 mg/L yellow, below 1 orange, below 0.5 red. pH outside 6–9 yellow, outside 4–11 orange.
- Air quality (HJ 633-2012 IAQI of each pollutant, hourly values): IAQI > 200 (heavy) blue,
  > 300 (severe) yellow, > 400 orange, ≥ 500 red. China's heavy-pollution warnings are
  duration-based forecasts; a monitoring engine only has the present, so the persistence rule
  (n of the last m samples) stands in for duration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from alerts.engine.rule_params import (
    DEFAULT_RAIN_TABLE,
    FAMILY_OF_METHOD,
    RAIN_WINDOWS_H,
    Method,
    RuleParams,
    apply_overrides,
    maintenance_window,
)
from geowarn.errors import InvalidInput

# The rule_params names also importable from here (kept stable for callers written before the
# split; new code imports them from alerts/engine/rule_params.py).
__all__ = ["AQI_TABLE", "APPLIES_TO", "DEFAULT_RAIN_TABLE", "FAMILY_OF_METHOD", "GB3838_ITEM",
           "RAIN_WINDOWS_H", "SCOPES", "ChannelInfo", "Method", "RuleParams", "Scope",
           "apply_overrides", "check_applies", "default_params", "kind_methods",
           "maintenance_window", "resolution", "resolve", "validate_override"]

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
# catalogue water-quality channel → GB 3838 item; air-quality channel → HJ 633 table used for
# hourly values (PM has only 24 h breakpoints, which HJ 633's hourly report also uses).
GB3838_ITEM = {"ph": "ph", "do": "dissolved_oxygen", "codmn": "permanganate_index",
               "cod": "cod", "nh3n": "ammonia_nitrogen", "tp": "total_phosphorus"}
AQI_TABLE = {"pm25": "pm25_24h", "pm10": "pm10_24h", "so2": "so2_1h", "no2": "no2_1h",
             "o3": "o3_1h", "co": "co_1h"}


def default_params(kind: str, spec: str) -> RuleParams:
    return RuleParams(method=_METHODS.get((kind, spec), "none"))


# Sensor resolution (units of the catalogue) by kind.channel, then kind: the spike filter's
# minimum deviation defaults to 3 steps of it (docs/methods.md#data-quality; tipping buckets
# 0.1-0.5 mm and crack meters ~0.1 mm per warning-science.md, the rest typical instrument
# specifications).
RESOLUTION: dict[str, float] = {
    "rain_gauge": 0.2, "gnss": 0.1, "crack_meter": 0.1, "inclinometer": 0.1,
    "tilt_meter": 0.001, "accelerometer": 0.1, "water_level": 0.01, "groundwater_level": 0.01,
    "pore_pressure": 0.1, "soil_moisture": 0.1, "air_temperature": 0.1,
    "water_quality.ph": 0.01, "water_quality.do": 0.01, "water_quality.codmn": 0.01,
    "water_quality.cod": 0.1, "water_quality.nh3n": 0.01, "water_quality.tp": 0.001,
    "water_quality": 0.1, "air_quality.co": 0.01, "air_quality": 1.0}
# Identical values in a row that make a channel suspicious. Rain: one non-zero increment
# repeated for RAIN_STUCK_S ("for hours", warning-science.md; steady drizzle repeats one tip
# for a while), at least RAIN_STUCK_MIN samples (an hourly gauge repeating 25 mm for the 6
# samples that were the minimum reached orange at the 5th hour, before the hold: outside trial,
# issue 7); GNSS noise (mm) never repeats 6 fixes; gauges that may
# rest (stages, groundwater, cracks) need a longer run.
RAIN_STUCK_S = 7200.0
RAIN_STUCK_MIN = 3
STUCK_DEFAULT: dict[str, int] = {"gnss": 6, "water_quality": 12, "air_quality": 12}
STUCK_FALLBACK = 24
_JUDGED = frozenset({"rainfall", "displacement", "water_level", "water_quality",
                     "air_quality", "threshold"})
_SERIES = _JUDGED - {"rainfall"}  # methods whose values form a series (not increments)
# Which methods each parameter changes; a kind or channel override setting a parameter its
# method never reads is refused (accepted and ignored is worse than refused).
APPLIES_TO: dict[str, frozenset[str]] = {
    "method": frozenset(FAMILY_OF_METHOD), "offline_after_s": frozenset(FAMILY_OF_METHOD),
    "rain_table_mm": frozenset({"rainfall"}), "thresholds": frozenset({"threshold"}),
    "clear_ratio": frozenset({"rainfall", "displacement", "water_level", "threshold"}),
    "dwell_s": _JUDGED,
    **{f: frozenset({"displacement"}) for f in (
        "velocity_mm_per_day", "cumulative_mm", "baseline", "reference_rate_mm_per_day",
        "sign", "velocity_scales_h", "accel_z", "accel_min_pairs", "accel_persist_h",
        "accel_strong_z", "accel_strong_persist_h", "accel_strong_interval_s", "reference_days",
        "reference_gap_h", "reference_min_days", "reference_floor_mm_per_day", "tangent_angle_deg",
        "step_confirm_h", "step_z", "step_min_mm", "forecast_pre_h", "forecast_max_h",
        "forecast_refresh_s", "forecast_confidence", "forecast_lead_h", "update_interval_s",
        "maintenance_from", "maintenance_until")},
    **{f: frozenset({"water_level"}) for f in (
        "warning_m", "guaranteed_m", "historical_max_m", "approach_margin_m",
        "rise_rate_m_per_h", "onset_max_rate_per_h", "onset_fast_confirm_samples")},
    "persist_n": frozenset({"water_quality", "air_quality"}),
    "persist_m": frozenset({"water_quality", "air_quality"}),
    **{f: _SERIES for f in ("hampel_k", "hampel_min_deviation", "onset_confirm_samples",
                            "implausible_rate_per_h")},
    **{f: _JUDGED for f in ("implausible_min", "implausible_max", "stuck_count",
                            "suspicious_max_level", "corroborate_within_m",
                            "quality_hold_s")},
    "rain_implausible_mm_10min": frozenset({"rainfall"}),
    "rain_implausible_mm_1h": frozenset({"rainfall"}),
    **{f: _JUDGED for f in ("fusion_mode", "fusion_k", "fusion_rain_at_least",
                            "fusion_deformation_at_least", "field_report_minor",
                            "field_report_moderate", "field_report_severe",
                            "field_report_hold_h")},
}


def resolution(kind: str, spec: str) -> float:
    return RESOLUTION.get(f"{kind}.{spec}", RESOLUTION.get(kind, 0.0))


def _kind_defaults(p: RuleParams, ch: ChannelInfo) -> RuleParams:
    """Fill the per-kind quality defaults a rule left open (NaN / -1)."""
    if math.isnan(p.offline_after_s):
        p = replace(p, offline_after_s=max(3.0 * ch.reporting_interval_s, 900.0))
    if math.isnan(p.hampel_min_deviation):
        p = replace(p, hampel_min_deviation=3.0 * resolution(ch.kind, ch.spec))
    if p.stuck_count == -1:
        if p.method == "rainfall":
            n = max(RAIN_STUCK_MIN, math.ceil(RAIN_STUCK_S / max(ch.reporting_interval_s, 1.0)))
        else:
            n = STUCK_DEFAULT.get(ch.kind, STUCK_DEFAULT.get(p.method, STUCK_FALLBACK))
        p = replace(p, stuck_count=n)
    return p


def check_applies(methods: Sequence[str], params: Mapping[str, Any], where: str) -> None:
    """Refuse parameters none of `methods` reads (a kind's channels, or one channel)."""
    if "method" in params:
        methods = [str(params["method"])]
    dead = sorted(k for k in params if k in APPLIES_TO and not APPLIES_TO[k] & set(methods))
    if dead:
        raise InvalidInput(
            f"engine rule {where}: {dead} would have no effect: its channels are judged by "
            f"method(s) {sorted(set(methods))}; parameters per method are listed in "
            f"docs/methods.md and alerts/engine/rules.py APPLIES_TO")


def kind_methods(scope_id: str) -> list[str]:
    """Methods of the channels a kind scope id ("kind" or "kind.channel") covers."""
    kind, _, spec = scope_id.partition(".")
    found: list[str] = [m for (k, c), m in _METHODS.items()
                        if k == kind and (not spec or c == spec)]
    return found + (["none"] if not spec or not found else [])


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
    lon: float | None = None  # where the device stands (neighbours corroborate each other)
    lat: float | None = None

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
        out.append(_kind_defaults(p, ch))
    return out


def validate_override(scope: str, scope_id: str, params: Mapping[str, Any],
                      channel_method: str | None = None) -> None:
    """Check one override before it is stored (so a bad row never reaches the engine):
    known parameters with valid values, and, for a kind or a channel (whose (kind, channel)
    the caller resolved the method of), only parameters its method reads."""
    if scope not in SCOPES:
        raise InvalidInput(f"rule scope must be one of {SCOPES}, got {scope!r}")
    if not scope_id:
        raise InvalidInput("rule scope id must not be empty")
    if scope == "channel" and not scope_id.isdigit():
        raise InvalidInput(f"channel scope ids are channel ids (digits), got {scope_id!r}")
    apply_overrides(RuleParams(), params, f"{scope} {scope_id!r}")
    if scope == "kind":
        check_applies(kind_methods(scope_id), params, f"kind {scope_id!r}")
    elif scope == "channel" and channel_method is not None:
        check_applies([channel_method], params, f"channel {scope_id}")
