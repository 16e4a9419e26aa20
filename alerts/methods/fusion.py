"""Fusing channel levels into the levels of a target (hazard point, site or device): the one
implementation the engine's tick runs.

Rules, in order:
1. Per target and hazard kind (rainfall, deformation, water level, water quality, air
   quality), either the maximum channel level (`mode="max"`) or the highest level that at
   least k of that kind's channels reach (`mode="k_of_n"`; a target with fewer than k
   channels of the kind needs all of them), so one faulty sensor cannot raise a multi-sensor
   point. k counts within a kind: a rain gauge and a crack meter measure different things,
   so they cannot outvote each other.
2. Combined: the highest kind level, raised by one (capped at RED) when the rainfall level
   and the deformation level both reach their configured minimum (rain explains why the
   slope moves, so the two together are stronger evidence than either).
3. The combined level is floored by the regional warning level (a provincial geohazard
   warning covering the point, supplied by gis/).
The minimum levels for rule 2 and k for rule 1 are our defaults; they are rule parameters
(`fusion_*`, alerts/engine/rule_params.py), per hazard point or site.
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
    """The hazard kind a channel's level belongs to (the engine's kinds, in its order)."""

    RAINFALL = 0
    DEFORMATION = 1
    WATER_LEVEL = 2
    WATER_QUALITY = 3
    AIR_QUALITY = 4


N_FAMILIES = len(Family)


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


def kind_levels(levels: LevelArray, target: IntArray, family: IntArray, n_targets: int,
                k: IntArray) -> LevelArray:
    """(n_targets, N_FAMILIES) levels: per target and kind, the highest level at least
    min(k[target], channels of that kind) channels reach (k = 1 is the maximum)."""
    grp = np.asarray(target, np.int64) * N_FAMILIES + np.asarray(family, np.int64)
    size = n_targets * N_FAMILIES
    n_ch = np.bincount(grp, minlength=size)
    need = np.minimum(np.repeat(np.asarray(k, np.int64), N_FAMILIES), np.maximum(n_ch, 1))
    out = np.zeros(size, LEVEL_DTYPE)
    for lv in range(1, 5):  # four levels, each one bincount over all channels
        reach = np.bincount(grp, weights=(levels >= lv).astype(np.float64), minlength=size)
        out = np.where((reach >= need) & (n_ch > 0), lv, out).astype(LEVEL_DTYPE)
    return out.reshape(n_targets, N_FAMILIES)


def combine(kinds: LevelArray, rain_at_least: IntArray, deformation_at_least: IntArray,
            regional: LevelArray | None = None) -> tuple[LevelArray, np.ndarray]:
    """Combined level per target from its kind levels (rules 2 and 3), and whether the
    rain-and-deformation raise applied."""
    best = kinds.max(axis=1)
    both = ((kinds[:, Family.RAINFALL] >= rain_at_least)
            & (kinds[:, Family.DEFORMATION] >= deformation_at_least))
    fused = np.where(both, np.minimum(best + 1, int(Level.RED)), best)
    if regional is not None:
        reg = np.asarray(regional, dtype=LEVEL_DTYPE)
        if reg.shape != best.shape:
            raise InvalidInput(f"regional levels must have shape {best.shape}, got "
                               f"{reg.shape}")
        fused = np.maximum(fused, reg)
    return fused.astype(LEVEL_DTYPE), both


def fuse(levels: LevelArray, point: IntArray, family: IntArray, n_points: int,
         cfg: FusionConfig = FusionConfig(),  # noqa: B008 - frozen
         regional: LevelArray | None = None) -> LevelArray:
    """Combined level per point from channel levels; `point` maps each channel to its point
    (0..n_points-1), `family` gives each channel's Family; `regional` is (n_points,)."""
    lv = np.asarray(levels, dtype=LEVEL_DTYPE)
    pt = np.asarray(point, dtype=np.int64)
    fam = np.asarray(family, dtype=np.int64)
    if not lv.shape == pt.shape == fam.shape or lv.ndim != 1:
        raise InvalidInput("levels, point and family must be 1-D arrays of equal length")
    if pt.size and (pt.min() < 0 or pt.max() >= n_points):
        raise InvalidInput(f"point indices must lie in [0, {n_points})")
    if fam.size and (fam.min() < 0 or fam.max() >= N_FAMILIES):
        raise InvalidInput(f"families must lie in [0, {N_FAMILIES})")
    if np.any((lv < 0) | (lv > 4)):
        raise InvalidInput("channel levels must lie in 0..4")
    k = np.full(n_points, cfg.k if cfg.mode == "k_of_n" else 1, np.int64)
    kinds = kind_levels(lv, pt, fam, n_points, k)
    fused, _ = combine(kinds, np.full(n_points, int(cfg.rain_at_least)),
                       np.full(n_points, int(cfg.deformation_at_least)), regional)
    return fused
