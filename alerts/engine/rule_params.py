"""The numbers of one channel's rule (`RuleParams`), their validation, and how one scope's
JSON override is applied to them (`apply_overrides`); which rule a channel gets, per kind and
scope, is alerts/engine/rules.py.

Defaults and their sources are in docs/methods.md (its "Data quality" section for the
data-quality settings); where the reference gives no number (water-level stages,
displacement velocities and cumulative limits are per site) the default is NaN, meaning
"that criterion is off until someone configures it". Overrides live in the `engine_rules`
table (migration 0045) as flat JSON objects whose keys are the fields of `RuleParams`.

Displacement: the tangent-angle level counts only while acceleration is established; steady
creep at α ≈ 45° is the normal state of a creeping slope and raises nothing on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Literal

from geowarn.errors import InvalidInput

Method = Literal["rainfall", "displacement", "water_level", "water_quality", "air_quality",
                 "threshold", "none"]
Family = Literal["rainfall", "deformation", "water_level", "water_quality", "air_quality",
                 "other"]
NAN4 = (math.nan, math.nan, math.nan, math.nan)
DEFAULT_SCALES_H = (6.0, 24.0, 72.0, 168.0)
MAX_SCALE_H = 336.0
RAIN_WINDOWS_H = (1.0, 3.0, 6.0, 12.0, 24.0, 72.0)
# The county example table (blue, yellow, orange, red mm) for 1/3/6/24 h; 12 h and 72 h are
# computed and shown as evidence but carry no thresholds until a site sets them.
DEFAULT_RAIN_TABLE = ((35.0, 45.0, 60.0, 80.0), (55.0, 75.0, 100.0, 120.0),
                      (70.0, 95.0, 120.0, 150.0), NAN4, (100.0, 130.0, 160.0, 200.0), NAN4)

FAMILY_OF_METHOD: dict[str, Family] = {
    "rainfall": "rainfall", "displacement": "deformation", "water_level": "water_level",
    "water_quality": "water_quality", "air_quality": "air_quality", "threshold": "other",
    "none": "other"}


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
    sign: float = 1.0  # −1 for a sensor whose readings fall as the slope moves
    # Displacement: every window a duration (docs/methods.md gives the sources and why).
    velocity_scales_h: tuple[float, float, float, float] = DEFAULT_SCALES_H
    accel_z: float = 2.0  # standard errors by which a shorter scale must be faster
    accel_min_pairs: int = 2  # adjacent scale pairs that must agree
    accel_persist_h: float = 12.0  # acceleration seen this long before it is established
    # ... or this long where the scales from the daily one up are each accel_strong_z errors
    # apart (1 d > 3 d > 7 d): strong, consistent evidence justifies less waiting; only on
    # channels reporting every accel_strong_interval_s or less often (hourly GNSS)
    accel_strong_z: float = 2.5
    accel_strong_persist_h: float = 6.0
    accel_strong_interval_s: float = 3600.0
    reference_rate_mm_per_day: float = math.nan  # v̄ set by the engineer; NaN: baseline
    reference_days: float = 30.0  # baseline window for v̄, ending reference_gap_h before
    reference_gap_h: float = 48.0  # ... the time acceleration was first seen
    reference_min_days: float = 2.0  # shorter baselines give no v̄ (and no tangent angle)
    reference_floor_mm_per_day: float = 0.05  # v̄ below this (a stable point) counts as this
    tangent_angle_deg: tuple[float, float, float, float] = (40.0, 50.0, 80.0, 85.0)
    step_confirm_h: float = 6.0  # plateau needed after a jump before it is an offset
    step_z: float = 4.0
    step_min_mm: float = 1.0
    forecast_pre_h: float = 24.0  # tertiary fit starts this long before acceleration seen
    forecast_max_h: float = 168.0  # ... but at most this far back
    forecast_refresh_s: float = 3600.0  # a new forecast replaces the shown one at most this
    forecast_confidence: float = 0.95
    # Levels from the issued forecast: (blue, yellow, orange, red) when the forecast failure
    # is at most this many hours away (NaN: that level not from the forecast).
    forecast_lead_h: tuple[float, float, float, float] = (math.nan, math.nan, 72.0, 24.0)
    # A forecast refreshed while the level holds is an alert "updated" event (alert history,
    # outbox, API stream; officers told, residents not) at most this often per alert.
    update_interval_s: float = 3600.0
    maintenance_from: str = ""  # ISO 8601 window in which readings raise nothing and
    maintenance_until: str = ""  # offsets are expected (device work)
    # water level (m) and rate of rise (m/h)
    warning_m: float = math.nan
    guaranteed_m: float = math.nan
    historical_max_m: float = math.nan
    approach_margin_m: float = 0.5
    rise_rate_m_per_h: tuple[float, float, float, float] = NAN4
    # pollution persistence: a level needs n of the last m samples
    persist_n: int = 2
    persist_m: int = 3
    # data quality (docs/methods.md, "Data quality"): spikes and onsets (not for rain increments)
    hampel_k: float = 3.0
    hampel_min_deviation: float = math.nan  # sensor units; NaN: 3 resolution steps
    onset_confirm_samples: int = 1  # following samples that confirm a jump as an onset
    # water level: a jump faster than this (m/h: off the trailing median, over the time since
    # the previous sample) is faster than any recorded flood rise (docs/methods.md), and
    # needs onset_fast_confirm_samples following samples staying up (NaN: no such limit)
    onset_max_rate_per_h: float = 15.0
    onset_fast_confirm_samples: int = 3
    # implausible values: outside [min, max], or changing faster than rate (units per hour)
    implausible_min: float = math.nan
    implausible_max: float = math.nan
    implausible_rate_per_h: float = math.nan
    # rain: the largest plausible increment, through the 10-minute and 1-hour records
    rain_implausible_mm_10min: float = 50.0
    rain_implausible_mm_1h: float = 201.9
    # suspicious patterns: `stuck_count` identical values in a row (rain: non-zero ones;
    # 0 = off; -1 = the kind's default) are held at `suspicious_max_level` until a
    # neighbouring channel within `corroborate_within_m` or a regional warning agrees
    stuck_count: int = -1
    suspicious_max_level: int = 2
    corroborate_within_m: float = 5000.0
    quality_hold_s: float = 3600.0  # a finding keeps the device's data-quality alert this long
    # fusion (read from the target's rule: hazard point or site scope)
    fusion_mode: Literal["max", "k_of_n"] = "max"
    fusion_k: int = 2
    fusion_rain_at_least: int = 2  # rain ≥ yellow and deformation ≥ blue: combined + 1
    fusion_deformation_at_least: int = 1
    # field reports (宏观巡查, alerts/engine/field_reports.py): a monitor's observation at a
    # hazard point floors its combined level, per severity (0: no floor), for
    # field_report_hold_h after it was observed. Our defaults: severe at least orange (a
    # slope showing movement to the eye), moderate blue (watch closely), minor nothing.
    field_report_minor: int = 0
    field_report_moderate: int = 1
    field_report_severe: int = 3
    field_report_hold_h: float = 24.0

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
        stages = [x for x in (self.warning_m, self.guaranteed_m, self.historical_max_m)
                  if not math.isnan(x)]
        if stages != sorted(stages) or not self.approach_margin_m >= 0:
            raise InvalidInput("water-level stages must rise warning_m <= guaranteed_m <= "
                               "historical_max_m, with approach_margin_m >= 0")
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
        if not self.hampel_k > 0:
            raise InvalidInput("need hampel_k > 0")
        if self.stuck_count not in (-1, 0) and self.stuck_count < 2:
            raise InvalidInput(f"stuck_count must be >= 2, 0 (off) or -1 (the kind's "
                               f"default), got {self.stuck_count}")
        if not 0 <= self.onset_confirm_samples <= 8:
            raise InvalidInput(f"onset_confirm_samples must be 0..8, got "
                               f"{self.onset_confirm_samples}")
        if not 0 <= self.onset_fast_confirm_samples <= 8:
            raise InvalidInput(f"onset_fast_confirm_samples must be 0..8, got "
                               f"{self.onset_fast_confirm_samples}")
        if not (self.onset_max_rate_per_h > 0 or math.isnan(self.onset_max_rate_per_h)):
            raise InvalidInput(f"onset_max_rate_per_h must be > 0 (m/h; null: no limit), got "
                               f"{self.onset_max_rate_per_h}")
        if not 1 <= self.suspicious_max_level <= 4:
            raise InvalidInput(f"suspicious_max_level must be 1..4 (blue..red), got "
                               f"{self.suspicious_max_level}")
        for name in ("hampel_min_deviation", "implausible_rate_per_h"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.implausible_min > self.implausible_max:
            raise InvalidInput("implausible_min must not exceed implausible_max")
        if not (0 < self.rain_implausible_mm_10min < self.rain_implausible_mm_1h):
            raise InvalidInput("need 0 < rain_implausible_mm_10min < rain_implausible_mm_1h")
        if not (self.corroborate_within_m >= 0 and self.quality_hold_s >= 0):
            raise InvalidInput("corroborate_within_m and quality_hold_s must be >= 0")
        if not 1 <= self.fusion_rain_at_least <= 4 or not 1 <= \
                self.fusion_deformation_at_least <= 4:
            raise InvalidInput("fusion_rain_at_least and fusion_deformation_at_least must be "
                               "1..4 (blue..red)")
        reports = (self.field_report_minor, self.field_report_moderate,
                   self.field_report_severe)
        if not all(0 <= x <= 4 for x in reports) or list(reports) != sorted(reports):
            raise InvalidInput("field_report_minor <= field_report_moderate <= "
                               "field_report_severe, each 0..4 (none..red)")
        if not 0 < self.field_report_hold_h <= 24 * 30:
            raise InvalidInput("field_report_hold_h must be in (0, 720] hours")
        self._check_displacement()

    def _check_displacement(self) -> None:
        sc = self.velocity_scales_h
        if (len(sc) != 4 or list(sc) != sorted(set(sc)) or sc[0] < 4 or sc[-1] > MAX_SCALE_H
                or 24.0 not in sc or any(x != int(x) for x in sc)):
            raise InvalidInput(f"velocity_scales_h: need 4 rising whole hours in [4, "
                               f"{MAX_SCALE_H:g}] including 24 (the tangent angle is daily): "
                               f"{sc}")
        ta = self.tangent_angle_deg
        if len(ta) != 4 or list(ta) != sorted(ta) or not all(0 <= a < 90 for a in ta):
            raise InvalidInput(f"tangent_angle_deg: need 4 rising angles in [0, 90): {ta}")
        if not (self.accel_z > 0 and self.step_z > 0 and 1 <= self.accel_min_pairs <= 3):
            raise InvalidInput("need accel_z > 0, step_z > 0 and accel_min_pairs in 1..3")
        if not (2 <= self.step_confirm_h <= 48 and self.step_min_mm >= 0):
            raise InvalidInput("need step_confirm_h in [2, 48] and step_min_mm >= 0")
        if not (0 <= self.accel_persist_h <= 240 and self.reference_floor_mm_per_day > 0):
            raise InvalidInput("need accel_persist_h in [0, 240] and "
                               "reference_floor_mm_per_day > 0")
        if not (self.accel_strong_z > 0 and 0 <= self.accel_strong_persist_h <= 240
                and self.accel_strong_interval_s > 0):
            raise InvalidInput("need accel_strong_z > 0, accel_strong_persist_h in [0, 240] "
                               "and accel_strong_interval_s > 0")
        if not (0 < self.reference_min_days <= self.reference_days
                and self.reference_days + self.reference_gap_h / 24.0 <= 40.0
                and self.reference_gap_h >= 0):
            raise InvalidInput("need 0 < reference_min_days <= reference_days and "
                               "reference_days + reference_gap_h/24 <= 40 (the engine keeps "
                               "45 days)")
        if not (self.reference_rate_mm_per_day > 0 or math.isnan(
                self.reference_rate_mm_per_day)):
            raise InvalidInput("reference_rate_mm_per_day must be > 0 (or null: baseline)")
        if not (0 < self.forecast_pre_h <= self.forecast_max_h <= 720
                and self.forecast_refresh_s >= 0 and 0.5 <= self.forecast_confidence < 1):
            raise InvalidInput("need 0 < forecast_pre_h <= forecast_max_h <= 720, "
                               "forecast_refresh_s >= 0, forecast_confidence in [0.5, 1)")
        lead = [x for x in self.forecast_lead_h if not math.isnan(x)]
        if len(self.forecast_lead_h) != 4 or lead != sorted(lead, reverse=True) or any(
                x <= 0 for x in lead):
            raise InvalidInput(f"forecast_lead_h: need 4 positive hours falling from blue to "
                               f"red (null: off): {self.forecast_lead_h}")
        if not self.update_interval_s >= 0:
            raise InvalidInput(f"update_interval_s must be >= 0 (seconds), got "
                               f"{self.update_interval_s}")
        window = maintenance_window(self.maintenance_from, self.maintenance_until)
        if (self.maintenance_from or self.maintenance_until) and window[1] < window[0]:
            raise InvalidInput("maintenance_until is before maintenance_from")


def maintenance_window(start: str, until: str) -> tuple[float, float]:
    """(from, until) in seconds; an empty bound is open (−inf / +inf); both empty: none."""
    if not start and not until:
        return (math.inf, -math.inf)
    out = []
    for name, text, open_end in (("maintenance_from", start, -math.inf),
                                 ("maintenance_until", until, math.inf)):
        if not text:
            out.append(open_end)
            continue
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{name}: {text!r} is not an ISO 8601 time") from None
        if dt.tzinfo is None:
            raise InvalidInput(f"{name}: {text!r} needs a time zone (e.g. +08:00 or Z)")
        out.append(dt.timestamp())
    return (out[0], out[1])


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
