"""Level state machine per channel (or hazard point): raise at once, lower only after the
value has stayed below the *clear* threshold for a minimum dwell time.

Why: a value oscillating around a threshold would otherwise issue and cancel a warning on
every tick. With separate raise and clear thresholds (clear below raise) and a dwell time
before any lowering, such a value yields one change, not a storm.

The state is three arrays (level, the time the channel first qualified for a lower level,
the time of the last change) so the engine can save it to the database after a tick and
restore it before the next one (`HysteresisState.to_arrays` / `from_arrays`). Everything is
vectorised across channels; only time advances step by step.

For hazards where *low* is bad (dissolved oxygen), pass the negated value and negated
thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.levels import LEVEL_DTYPE, LevelArray, check_thresholds, classify
from alerts.methods.ragged import FloatArray
from geowarn.errors import InvalidInput


@dataclass(frozen=True)
class HysteresisConfig:
    """raise_at / clear_at: (4,) or (channels, 4) thresholds for BLUE..RED; clear ≤ raise."""

    raise_at: FloatArray
    clear_at: FloatArray
    min_dwell_s: float = 3600.0  # our default: an hour below the clear line before lowering

    def __post_init__(self) -> None:
        check_thresholds(self.raise_at, "raise thresholds")
        check_thresholds(self.clear_at, "clear thresholds")
        r, c = np.asarray(self.raise_at), np.asarray(self.clear_at)
        if np.any(c > r):
            raise InvalidInput("clear thresholds must not exceed raise thresholds")
        if not self.min_dwell_s >= 0:
            raise InvalidInput(f"min_dwell_s must be >= 0, got {self.min_dwell_s}")


@dataclass(frozen=True)
class HysteresisState:
    level: LevelArray  # (channels,)
    lower_since: FloatArray  # when the channel first qualified for a lower level; NaN = not
    changed_at: FloatArray  # time of the last level change; NaN = never

    @classmethod
    def initial(cls, n: int) -> HysteresisState:
        return cls(np.zeros(n, dtype=LEVEL_DTYPE), np.full(n, np.nan), np.full(n, np.nan))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"level": self.level.copy(), "lower_since": self.lower_since.copy(),
                "changed_at": self.changed_at.copy()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> HysteresisState:
        try:
            lv = np.asarray(arrays["level"], dtype=LEVEL_DTYPE)
            ls = np.asarray(arrays["lower_since"], dtype=np.float64)
            ca = np.asarray(arrays["changed_at"], dtype=np.float64)
        except KeyError as e:
            raise InvalidInput(f"hysteresis state lacks array {e}") from None
        if not lv.shape == ls.shape == ca.shape or lv.ndim != 1:
            raise InvalidInput("hysteresis state arrays must be 1-D and of equal length")
        if np.any((lv < 0) | (lv > 4)):
            raise InvalidInput("hysteresis state holds a level outside 0..4")
        return cls(lv, ls, ca)


def step_levels(state: HysteresisState, raise_level: LevelArray, hold_level: LevelArray,
                now: float | FloatArray, min_dwell_s: float | FloatArray
                ) -> tuple[HysteresisState, np.ndarray]:
    """One tick from precomputed levels: `raise_level` is what the value reaches against the
    raise thresholds, `hold_level` what it still holds against the clear thresholds
    (hold ≥ raise). `now` and `min_dwell_s` are scalars or per channel (the engine judges
    each channel in its own data time). Returns the new state and a bool array of channels
    that changed."""
    cur = state.level
    up = raise_level > cur
    wants_down = hold_level < cur
    since = np.where(wants_down & np.isnan(state.lower_since), now, state.lower_since)
    since = np.where(wants_down, since, np.nan)
    down = wants_down & (now - since >= min_dwell_s)
    new = np.where(up, raise_level, np.where(down, hold_level, cur)).astype(LEVEL_DTYPE)
    changed = new != cur
    since = np.where(changed, np.nan, since)
    return HysteresisState(new, since, np.where(changed, now, state.changed_at)), changed


def step(state: HysteresisState, values: FloatArray, now: float, cfg: HysteresisConfig
         ) -> tuple[HysteresisState, np.ndarray]:
    """One tick from raw values (channels,); NaN values hold the current level (no data is
    not a reason to clear)."""
    v = np.asarray(values, dtype=np.float64)
    raise_level = classify(v, cfg.raise_at)
    hold_level = np.maximum(classify(v, cfg.clear_at), raise_level)
    missing = np.isnan(v)
    hold_level = np.where(missing, state.level, hold_level)
    return step_levels(state, raise_level, hold_level, now, cfg.min_dwell_s)


def run(values: FloatArray, times: FloatArray, cfg: HysteresisConfig,
        state: HysteresisState | None = None) -> tuple[LevelArray, HysteresisState, np.ndarray]:
    """Replay a (channels, samples) block tick by tick: returns levels (channels, samples),
    the final state, and the number of level changes per channel."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    t = np.asarray(times, dtype=np.float64)
    if t.shape != v.shape[-1:]:
        raise InvalidInput(f"times {t.shape} do not match samples of values {v.shape}")
    st = state or HysteresisState.initial(v.shape[0])
    out = np.empty(v.shape, dtype=LEVEL_DTYPE)
    changes = np.zeros(v.shape[0], dtype=np.int64)
    for i in range(v.shape[-1]):  # time is sequential; channels stay one vector
        st, ch = step(st, v[:, i], float(t[i]), cfg)
        out[:, i] = st.level
        changes += ch
    return out, st, changes
