"""Fusing channel levels into one level per hazard point.

Rules, in order:
1. Per point, either the maximum channel level (`mode="max"`) or the highest level that at
   least k of the point's channels reach (`mode="k_of_n"`; a point with fewer than k
   channels needs all of them), so one faulty sensor cannot raise a multi-sensor site.
2. Rainfall and deformation agreeing raises the point by one level (capped at RED): when its
   rainfall level and its deformation level both reach their configured minimum. Rain
   explains why the slope moves, so the two together are stronger evidence than either.
3. The result is floored by the regional warning level (e.g. a provincial geohazard
   warning covering the point's area, supplied by gis/).
The minimum levels for rule 2 and k for rule 1 are our defaults; tune per site.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np

from alerts.methods.levels import LEVEL_DTYPE, Level, LevelArray
from alerts.methods.ragged import IntArray
from geowarn.errors import InvalidInput


class Family(IntEnum):
    """What a channel measures, as far as fusion cares."""

    OTHER = 0
    RAINFALL = 1
    DEFORMATION = 2


@dataclass(frozen=True)
class FusionConfig:
    mode: Literal["max", "k_of_n"] = "max"
    k: int = 2
    rain_at_least: Level = Level.YELLOW
    deformation_at_least: Level = Level.BLUE

    def __post_init__(self) -> None:
        if self.mode not in ("max", "k_of_n"):
            raise InvalidInput(f"fusion mode must be 'max' or 'k_of_n', got {self.mode!r}")
        if self.k < 1:
            raise InvalidInput(f"k must be >= 1, got {self.k}")
        if self.rain_at_least == Level.NONE or self.deformation_at_least == Level.NONE:
            raise InvalidInput("the rain+deformation raise needs minimum levels above NONE")


def _group_max(levels: LevelArray, point: IntArray, n_points: int) -> LevelArray:
    out = np.zeros(n_points, dtype=LEVEL_DTYPE)
    np.maximum.at(out, point, levels)
    return out


def fuse(levels: LevelArray, point: IntArray, family: IntArray, n_points: int,
         cfg: FusionConfig = FusionConfig(),  # noqa: B008 - frozen
         regional: LevelArray | None = None) -> LevelArray:
    """Level per hazard point from channel levels; `point` maps each channel to its point
    (0..n_points-1), `family` gives each channel's Family; `regional` is (n_points,)."""
    lv = np.asarray(levels, dtype=LEVEL_DTYPE)
    pt = np.asarray(point, dtype=np.int64)
    fam = np.asarray(family, dtype=np.int64)
    if not lv.shape == pt.shape == fam.shape or lv.ndim != 1:
        raise InvalidInput("levels, point and family must be 1-D arrays of equal length")
    if pt.size and (pt.min() < 0 or pt.max() >= n_points):
        raise InvalidInput(f"point indices must lie in [0, {n_points})")
    if np.any((lv < 0) | (lv > 4)):
        raise InvalidInput("channel levels must lie in 0..4")
    if cfg.mode == "max":
        fused = _group_max(lv, pt, n_points)
    else:
        n_ch = np.bincount(pt, minlength=n_points)
        need = np.minimum(cfg.k, np.maximum(n_ch, 1))
        fused = np.zeros(n_points, dtype=LEVEL_DTYPE)
        for level in range(1, 5):  # four levels, each one bincount over all channels
            reach = np.bincount(pt, weights=(lv >= level).astype(np.float64),
                                minlength=n_points)
            fused = np.where(reach >= need, level, fused).astype(LEVEL_DTYPE)
    rain = _group_max(np.where(fam == Family.RAINFALL, lv, 0).astype(LEVEL_DTYPE), pt, n_points)
    deform = _group_max(np.where(fam == Family.DEFORMATION, lv, 0).astype(LEVEL_DTYPE), pt,
                        n_points)
    both = (rain >= cfg.rain_at_least) & (deform >= cfg.deformation_at_least)
    fused = np.where(both, np.minimum(fused + 1, int(Level.RED)), fused)
    if regional is not None:
        reg = np.asarray(regional, dtype=LEVEL_DTYPE)
        if reg.shape != (n_points,):
            raise InvalidInput(f"regional levels must have shape ({n_points},), got {reg.shape}")
        fused = np.maximum(fused, reg)
    return fused.astype(LEVEL_DTYPE)
