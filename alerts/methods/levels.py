"""Warning levels shared by every rule, and the threshold→level step they all use.

China's four-colour scheme (GB/T 27962-2011 style): blue = level IV (lowest), yellow = III,
orange = II, red = I (highest). NONE means no warning. Levels are stored as int8 arrays so a
tick over 10,000 channels stays one vector.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

from geowarn.errors import InvalidInput

LEVEL_DTYPE = np.int8
LevelArray = npt.NDArray[np.int8]


class Level(IntEnum):
    NONE = 0
    BLUE = 1  # IV
    YELLOW = 2  # III
    ORANGE = 3  # II
    RED = 4  # I

    @property
    def english(self) -> str:
        return _ENGLISH[self]

    @property
    def chinese(self) -> str:
        return _CHINESE[self]

    @property
    def grade(self) -> str:
        """Roman grade as printed on Chinese warnings ("IV" for blue); "" for NONE."""
        return _GRADE[self]

    @property
    def colour(self) -> str:
        """Display colour as #rrggbb."""
        return _COLOUR[self]


_ENGLISH = {
    Level.NONE: "no warning",
    Level.BLUE: "blue warning (IV)",
    Level.YELLOW: "yellow warning (III)",
    Level.ORANGE: "orange warning (II)",
    Level.RED: "red warning (I)",
}
_CHINESE = {
    Level.NONE: "无预警",
    Level.BLUE: "蓝色预警(IV级)",
    Level.YELLOW: "黄色预警(III级)",
    Level.ORANGE: "橙色预警(II级)",
    Level.RED: "红色预警(I级)",
}
_GRADE = {Level.NONE: "", Level.BLUE: "IV", Level.YELLOW: "III", Level.ORANGE: "II",
          Level.RED: "I"}
_COLOUR = {
    Level.NONE: "#9e9e9e",
    Level.BLUE: "#0000ff",
    Level.YELLOW: "#ffff00",
    Level.ORANGE: "#ff7e00",
    Level.RED: "#ff0000",
}


def check_thresholds(thresholds: tuple[float, ...] | npt.ArrayLike, what: str) -> None:
    """Thresholds for BLUE..RED must be 4 values, non-decreasing along the last axis (NaN =
    that level is not used)."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape[-1:] != (4,):
        raise InvalidInput(f"{what}: need 4 thresholds (blue, yellow, orange, red), got "
                           f"shape {t.shape}")
    running_max = np.maximum.accumulate(np.where(np.isnan(t), -np.inf, t), axis=-1)
    if np.any(t[..., 1:] < running_max[..., :-1]):
        raise InvalidInput(f"{what}: thresholds must be non-decreasing from blue to red: "
                           f"{t.tolist()}")


def classify(
    values: npt.ArrayLike, thresholds: npt.ArrayLike, *, inclusive: bool = True
) -> LevelArray:
    """Level per value: the highest of the thresholds (blue, yellow, orange, red) reached.

    `thresholds` is (4,) or broadcastable to values.shape + (4,) for per-channel tables;
    NaN thresholds are never reached; NaN values give NONE. `inclusive` says whether
    reaching a threshold exactly counts (value >= t) or only exceeding it (value > t).
    """
    v = np.asarray(values, dtype=np.float64)[..., None]
    t = np.asarray(thresholds, dtype=np.float64)
    check_thresholds(t, "classify")
    with np.errstate(invalid="ignore"):
        hit = (v >= t) if inclusive else (v > t)
    # The highest level reached, not the count: a per-site table may leave a level unused (NaN).
    return (hit * np.arange(1, 5)).max(axis=-1).astype(LEVEL_DTYPE)
