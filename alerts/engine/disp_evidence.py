"""Evidence of one displacement channel, as a duty officer reads it: the rule and threshold
that decided, velocities per scale with their errors, the reference rate and its source,
the tangent angle with its thresholds, steps found, the forecast (absent when there is
none), and one sentence in Chinese and in English. Numbers are rounded to what they mean
(velocities to 2 significant digits, angles to whole degrees, times to the minute)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from alerts.engine.displacement import CRITERIA, REF_SOURCES, DispState

LEVEL_EN = ("none", "blue", "yellow", "orange", "red")
LEVEL_ZH = ("无", "蓝色", "黄色", "橙色", "红色")


def sig(x: float, digits: int = 2) -> float:
    """x rounded to `digits` significant digits (0.0123 -> 0.012, 1234 -> 1200)."""
    if not math.isfinite(x) or x == 0:
        return 0.0 if x == 0 else x
    return round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1)


def iso_minute(seconds: float) -> str:
    return datetime.fromtimestamp(round(seconds / 60.0) * 60.0, UTC).strftime(
        "%Y-%m-%dT%H:%MZ")


def describe(st: DispState, p: dict[str, np.ndarray], r: int, c: int, label: str
             ) -> dict[str, Any]:
    ev: dict[str, Any] = {}
    scales = [int(h) for h in p["velocity_scales_h"][c]]
    vel = {}
    for k, h in enumerate(scales):
        v, e = float(st.vel[r, k]), float(st.vel_se[r, k])
        if math.isfinite(v):
            vel[f"{h}h"] = {"mm_per_day": sig(v), "se": sig(e)}
    if vel:
        ev["velocity_mm_per_day"] = vel
    thr = [float(x) for x in p["tangent_angle_deg"][c]]
    ev["tangent_angle_thresholds_deg"] = dict(zip(LEVEL_EN[1:], thr, strict=True))
    angle = float(st.angle[r])
    if math.isfinite(angle):
        ev["tangent_angle_deg"] = round(angle)
    ev["accelerating"] = bool(st.established[r])
    if math.isfinite(st.accel_since[r]):
        ev["acceleration_seen_since"] = iso_minute(float(st.accel_since[r]))
    v_ref = float(st.v_ref_used[r])
    src = REF_SOURCES[int(st.ref_source[r])]
    if math.isfinite(v_ref):
        ev["reference_rate_mm_per_day"] = sig(v_ref)
        ref: dict[str, Any] = {"source": src}
        if src == "baseline before acceleration":
            ref["from"] = iso_minute(float(st.v_ref_from[r]))
            ref["to"] = iso_minute(float(st.v_ref_to[r]))
        ev["reference"] = ref
    crit = int(st.criterion[r])
    if crit >= 0:
        ev["rule"] = CRITERIA[crit]
        ev["threshold"] = _threshold(p, c, crit, st)
    cum = float(st.cumulative[r])
    if math.isfinite(cum):
        ev["cumulative_mm"] = sig(cum, 3)
    if steps := st.step_events(r):
        ev["steps"] = [{"time": iso_minute(s.time), "offset_mm": sig(s.jump_mm),
                        "kind": s.kind, **({"expected": True} if s.expected else {})}
                       for s in steps[-5:]]
    fc = st.fc[r]
    if np.isfinite(fc[0]):
        ev["forecast"] = {"time": iso_minute(fc[0]), "lower": iso_minute(fc[1]),
                          "upper": iso_minute(fc[2]), "issued_at": iso_minute(fc[3])}
    ev["summary_en"], ev["summary_zh"] = _sentences(ev, label, st, r)
    return ev


def _threshold(p: dict[str, np.ndarray], c: int, crit: int, st: DispState) -> dict[str, Any]:
    names = {0: ("tangent_angle_deg", "deg"), 1: ("velocity_mm_per_day", "mm/day"),
             2: ("cumulative_mm", "mm"), 3: ("forecast_lead_h", "hours to forecast failure")}
    field, unit = names[crit]
    row = [float(x) for x in p[field][c]]
    return {"unit": unit, **{LEVEL_EN[i + 1]: x for i, x in enumerate(row)
                             if math.isfinite(x)}}


def _sentences(ev: dict[str, Any], label: str, st: DispState, r: int) -> tuple[str, str]:
    en, zh = [], []
    v1 = ev.get("velocity_mm_per_day", {}).get("24h")
    if ev["accelerating"] and "acceleration_seen_since" in ev:
        days = max(float(st.accel_last[r] - st.accel_since[r]) / 86400.0, 0.0)
        en.append(f"{label} displacement accelerating for {days:.1f} days")
        zh.append(f"{label} 位移加速已 {days:.1f} 天")
    elif v1:
        en.append(f"{label} displacement moving at {v1['mm_per_day']:g} mm/day")
        zh.append(f"{label} 位移速率 {v1['mm_per_day']:g} 毫米/天")
    else:
        en.append(f"{label} displacement: not enough data for a velocity yet")
        zh.append(f"{label} 位移：数据不足，尚无速率")
    if "tangent_angle_deg" in ev:
        thr = ev["tangent_angle_thresholds_deg"]
        a = ev["tangent_angle_deg"]
        above = [k for k in ("red", "orange", "yellow") if a >= thr[k]]
        col = above[0] if above else "red"
        i = LEVEL_EN.index(col)
        en.append(f"tangent angle {a}° ({col} {'from' if above else 'at'} {thr[col]:g}°)")
        zh.append(f"改进切线角 {a}°（{LEVEL_ZH[i]}预警阈值 {thr[col]:g}°）")
    if "steps" in ev:
        s = ev["steps"][-1]
        en.append(f"step of {s['offset_mm']:g} mm at {s['time']} "
                  f"({'removed as an offset' if s['kind'] == 'offset' else 'kept: still moving'})")
        kept = "已作为偏移剔除" if s["kind"] == "offset" else "之后仍在移动，按位移处理"
        zh.append(f"{s['time']} 出现 {s['offset_mm']:g} 毫米阶跃（{kept}）")
    if "forecast" in ev:
        f = ev["forecast"]
        t = datetime.strptime(f["time"], "%Y-%m-%dT%H:%MZ")
        lo = datetime.strptime(f["lower"], "%Y-%m-%dT%H:%MZ")
        hi = datetime.strptime(f["upper"], "%Y-%m-%dT%H:%MZ")
        half = max((t - lo).total_seconds(), (hi - t).total_seconds()) / 3600.0
        en.append(f"failure forecast {t:%Y-%m-%d %H:%M} UTC ± {half:.1f} h")
        zh.append(f"预报破坏时间 {t:%Y-%m-%d %H:%M} UTC ± {half:.1f} 小时")
    return "; ".join(en), "；".join(zh)
