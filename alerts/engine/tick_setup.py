"""The engine tick's data: its constants, the immutable `Setup` (channels, rules and
per-channel parameter arrays, rebuilt when the registry or rules change), the mutable
`EngineState` (levels, dwell clocks, watermarks, displacement episodes, emitted target levels and
the sample rings) and the data-quality memory. alerts/engine/tick_quality.py refills the rings
after a restart (`fill_memory`).

Split from alerts/engine/tick.py, which holds the evaluation itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np

from alerts.engine import disp_restart
from alerts.engine.disp_history import HISTORY_DAYS
from alerts.engine.displacement import DispState, StepEvent
from alerts.engine.ring import RainWindows, Ring
from alerts.engine.rule_params import (
    FAMILY_OF_METHOD,
    RAIN_WINDOWS_H,
    RuleParams,
    maintenance_window,
)
from alerts.engine.rules import ChannelInfo
from alerts.methods.levels import LEVEL_DTYPE, Level, LevelArray
from alerts.methods.quality import ScreenState
from alerts.methods.ragged import FloatArray, IntArray
from geowarn.errors import InvalidInput

KINDS = ("rainfall", "deformation", "water_level", "water_quality", "air_quality",
         "combined")
N_FAM = 5
COMBINED = 5
GROUPS = ("rainfall", "displacement", "water_level", "water_quality", "air_quality",
          "threshold")
# Displacement keeps a short raw ring for the data-quality screen; its judgement runs on the
# hourly history (DispState).
RING_K = {"displacement": 16, "water_level": 16, "water_quality": 16, "air_quality": 16,
          "threshold": 16}
_KIND_FAMILY = {"water_level": 2, "water_quality": 3, "air_quality": 4}
DISP_FLOAT_PARAMS = ("velocity_scales_h", "accel_z", "accel_persist_h", "accel_strong_z",
                     "accel_strong_persist_h", "accel_strong_interval_s", "reference_days",
                     "reference_gap_h", "reference_min_days", "reference_floor_mm_per_day",
                     "tangent_angle_deg", "step_confirm_h", "step_z", "step_min_mm",
                     "forecast_pre_h", "forecast_max_h", "forecast_refresh_s",
                     "forecast_confidence", "forecast_lead_h", "update_interval_s")
DISP_MEMORY_S = HISTORY_DAYS * 86400.0  # the readings a restart reloads for displacement


@dataclass(frozen=True)
class Change:
    """Fields of alerts.lifecycle.writes.LevelChange (the service converts)."""

    target_type: str
    target_id: str
    hazard_kind: str
    level: Level
    data_time: datetime
    evidence: dict[str, Any]
    update_every_s: float | None = None  # an update at the same level (alerts/engine/updates.py)


@dataclass(frozen=True)
class Samples:
    """New readings: channel index (into Setup.channels), time (s), value, quality; sorted by
    channel, then time."""

    ch: IntArray
    t: FloatArray
    v: FloatArray
    q: np.ndarray

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8))


@dataclass(frozen=True)
class Setup:
    channels: tuple[ChannelInfo, ...]
    params: tuple[RuleParams, ...]
    family: IntArray  # (C,) 0..4
    target: IntArray  # (C,) index into targets
    targets: tuple[tuple[str, str], ...]
    fusion_k: IntArray  # (T,) 1 = maximum
    device: IntArray  # (C,) index into devices
    devices: tuple[str, ...]
    group_rows: dict[str, IntArray]  # method group -> channel indices
    row_in_group: IntArray  # (C,) row of each channel inside its group
    p: dict[str, np.ndarray]  # per-channel parameter arrays
    fusion_at_least: IntArray  # (T, 2) rain, deformation minimum levels of the +1 rule
    neighbours: tuple[IntArray, IntArray]  # CSR (offsets (C+1,), channel indices)

    @property
    def n(self) -> int:
        return len(self.channels)

    @cached_property
    def index(self) -> dict[int, int]:
        """Channel id -> row (built once per setup: a step must not pay for the registry)."""
        return {c.channel_id: i for i, c in enumerate(self.channels)}

    def rows_of(self, channel_ids: np.ndarray) -> IntArray:
        """Rows of channel ids the setup knows (InvalidInput for one it does not)."""
        ids = np.asarray(channel_ids, np.int64)
        order = self._id_order
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, max(self.n - 1, 0))
        if self.n == 0 or not np.array_equal(self._sorted_ids[pos], ids):
            raise InvalidInput("channel ids outside the engine setup")
        return np.asarray(order[pos], np.int64)

    # Lookups a step uses to touch only what changed (built once per setup).
    @cached_property
    def group_of(self) -> IntArray:
        """(C,) index into GROUPS of each channel's method group."""
        out = np.full(self.n, -1, np.int64)
        for gi, g in enumerate(GROUPS):
            out[self.group_rows[g]] = gi
        return out

    @cached_property
    def is_hazard(self) -> np.ndarray:
        return np.array([t[0] == "hazard" for t in self.targets], bool)

    @cached_property
    def target_members(self) -> tuple[IntArray, IntArray]:
        """CSR (offsets (T+1,), channel rows ascending) of each target's channels."""
        return _csr(self.target, len(self.targets))

    @cached_property
    def device_members(self) -> tuple[IntArray, IntArray]:
        """CSR (offsets (D+1,), channel rows ascending) of each device's channels."""
        return _csr(self.device, len(self.devices))

    @cached_property
    def _id_order(self) -> IntArray:
        return np.argsort(np.array([c.channel_id for c in self.channels], np.int64),
                          kind="stable")

    @cached_property
    def _sorted_ids(self) -> IntArray:
        return np.array([c.channel_id for c in self.channels], np.int64)[self._id_order]


def _csr(key: IntArray, n_keys: int) -> tuple[IntArray, IntArray]:
    order = np.argsort(key, kind="stable")
    return np.searchsorted(key[order], np.arange(n_keys + 1)).astype(np.int64), order


def gather(csr: tuple[IntArray, IntArray], keys: IntArray) -> tuple[IntArray, IntArray]:
    """Members of the given keys, concatenated in key order, and the start of each key's
    run in that concatenation (for np.*.reduceat; every key has at least one member)."""
    off, members = csr
    lengths = off[keys + 1] - off[keys]
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64) if keys.size else \
        np.zeros(0, np.int64)
    pos = np.arange(int(lengths.sum())) - np.repeat(starts - off[keys], lengths)
    return members[pos], starts


def build_setup(channels: list[ChannelInfo], params: list[RuleParams],
                rain_ring_max: int = 4096,
                windows: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> Setup:
    """`windows`: maintenance windows (from, until seconds) per device id (devices/
    maintenance.py), on top of each rule's maintenance_from/until."""
    if len(channels) != len(params):
        raise InvalidInput(f"{len(channels)} channels but {len(params)} rules")
    ids = [c.channel_id for c in channels]
    if len(set(ids)) != len(ids):
        raise InvalidInput("duplicate channel ids in the engine setup")
    fam_names = list(KINDS[:N_FAM])
    family = []
    for c, p in zip(channels, params, strict=True):
        f = FAMILY_OF_METHOD[p.method]
        # Generic thresholds go with the kind's own family; slope precursors (groundwater,
        # pore pressure, soil moisture, tilt) with deformation.
        family.append(fam_names.index(f) if f != "other" else _KIND_FAMILY.get(c.kind, 1))
    tkeys = sorted({c.target for c in channels})
    tindex = {k: i for i, k in enumerate(tkeys)}
    devs = sorted({c.device_id for c in channels})
    dindex = {d: i for i, d in enumerate(devs)}
    # Fusion settings are read from a target's rule (hazard point or site scope, so all its
    # channels agree); where channel overrides disagree, the strictest wins.
    k = np.ones(len(tkeys), np.int64)
    at_least = np.ones((len(tkeys), 2), np.int64)
    for c, p in zip(channels, params, strict=True):
        ti = tindex[c.target]
        if p.fusion_mode == "k_of_n":
            k[ti] = max(k[ti], p.fusion_k)
        at_least[ti] = np.maximum(at_least[ti], (p.fusion_rain_at_least,
                                                 p.fusion_deformation_at_least))
    methods = np.array([p.method for p in params])
    group_rows = {g: np.flatnonzero(methods == g) for g in GROUPS}
    row = np.full(len(channels), -1, np.int64)
    for rows in group_rows.values():
        row[rows] = np.arange(rows.size)
    rain_k = [min(rain_ring_max, int(np.ceil(max(RAIN_WINDOWS_H) * 3600.0 / max(
        channels[i].reporting_interval_s, 1.0))) + 16) for i in group_rows["rainfall"]]

    def arr(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.array([getattr(p, name) for p in params], dtype=dtype).reshape(
            (len(params),) + np.shape(getattr(RuleParams(), name)))

    p_arrays = {name: arr(name) for name in (
        "rain_table_mm", "thresholds", "clear_ratio", "dwell_s", "offline_after_s",
        "velocity_mm_per_day", "cumulative_mm", "baseline", "reference_rate_mm_per_day",
        "sign", "warning_m", "guaranteed_m", "historical_max_m",
        "approach_margin_m", "rise_rate_m_per_h", "hampel_k", "hampel_min_deviation",
        "implausible_min", "implausible_max", "implausible_rate_per_h",
        "rain_implausible_mm_10min", "rain_implausible_mm_1h", "corroborate_within_m",
        "quality_hold_s", "onset_max_rate_per_h", *DISP_FLOAT_PARAMS)}
    for name in ("persist_n", "persist_m", "stuck_count", "onset_confirm_samples",
                 "onset_fast_confirm_samples", "suspicious_max_level", "accel_min_pairs"):
        p_arrays[name] = arr(name, np.int64)
    p_arrays["maint_from"], p_arrays["maint_until"] = _maintenance(channels, params,
                                                                   windows or {})
    p_arrays["rain_ring_k"] = np.array([max(rain_k, default=16)], np.int64)
    p_arrays["interval_s"] = np.array([c.reporting_interval_s for c in channels], np.float64)
    device = np.array([dindex[c.device_id] for c in channels], np.int64)
    return Setup(tuple(channels), tuple(params), np.array(family, np.int64),
                 np.array([tindex[c.target] for c in channels], np.int64), tuple(tkeys), k,
                 device, tuple(devs), group_rows, row, p_arrays, at_least,
                 neighbours(channels, methods, device, p_arrays["corroborate_within_m"]))


def _maintenance(channels: list[ChannelInfo], params: list[RuleParams],
                 windows: Mapping[str, Sequence[tuple[float, float]]]
                 ) -> tuple[FloatArray, FloatArray]:
    """(C, K) window bounds per channel: its rule's window, then its device's windows
    (an empty slot is (inf, -inf), which contains nothing)."""
    k = 1 + max((len(windows.get(c.device_id, ())) for c in channels), default=0)
    lo, hi = np.full((len(channels), k), np.inf), np.full((len(channels), k), -np.inf)
    for i, (c, q) in enumerate(zip(channels, params, strict=True)):
        rows = [maintenance_window(q.maintenance_from, q.maintenance_until),
                *windows.get(c.device_id, ())]
        lo[i, :len(rows)] = [a for a, _ in rows]
        hi[i, :len(rows)] = [b for _, b in rows]
    return lo, hi


def neighbours(channels: list[ChannelInfo], methods: np.ndarray, device: IntArray,
               within_m: FloatArray) -> tuple[IntArray, IntArray]:
    """For each channel, the channels of the same method on other devices within its
    corroborate_within_m (devices without a position have none), as CSR arrays."""
    n = len(channels)
    pos = np.array([(c.lon, c.lat) if c.lon is not None and c.lat is not None
                    else (np.nan, np.nan) for c in channels], np.float64).reshape(n, 2)
    placed = np.flatnonzero(np.isfinite(pos[:, 0]) & (within_m > 0))
    pairs: list[tuple[int, int]] = []
    if placed.size > 1:
        from scipy.spatial import cKDTree

        # Local metres (equirectangular): exact enough at gauge-network distances.
        lat0 = np.radians(np.nanmean(pos[placed, 1]))
        xy = np.c_[pos[placed, 0] * 111_320.0 * np.cos(lat0), pos[placed, 1] * 110_540.0]
        tree = cKDTree(xy)
        for a, b in tree.query_pairs(float(within_m[placed].max()), output_type="ndarray"):
            i, j = int(placed[a]), int(placed[b])
            if methods[i] != methods[j] or device[i] == device[j]:
                continue
            d = float(np.hypot(*(xy[a] - xy[b])))
            if d <= within_m[i]:
                pairs.append((i, j))
            if d <= within_m[j]:
                pairs.append((j, i))
    pairs.sort()
    src = np.array([p[0] for p in pairs], np.int64)
    dst = np.array([p[1] for p in pairs], np.int64)
    offsets = np.searchsorted(src, np.arange(n + 1)).astype(np.int64)
    return offsets, dst


_SAVED = ("level", "lower_since", "changed_at", "watermark", "first_watch", "clean_raise",
          "clean_hold", "suspicious", "finding_t", "finding_code", "finding_value",
          "finding_limit")
DEVICE_ARRAYS = ("maintenance", "quality")


@dataclass
class EngineState:
    level: LevelArray
    lower_since: FloatArray
    changed_at: FloatArray
    watermark: FloatArray  # newest sample time processed per channel
    first_watch: FloatArray  # engine clock when the channel was first watched
    clean_raise: LevelArray
    clean_hold: LevelArray
    emitted: LevelArray  # (T, 6)
    maintenance: LevelArray  # (D,)
    # data quality: the screen's memory, whether the newest sample is a suspicious pattern,
    # and the newest finding per channel (code 1 implausible, 2 repeating; time, value,
    # the limit crossed) behind the device's data-quality level
    screen: ScreenState
    suspicious: np.ndarray
    finding_t: FloatArray
    finding_code: FloatArray
    finding_value: FloatArray
    finding_limit: FloatArray
    quality: LevelArray  # (D,)
    rings: dict[str, Ring] = field(default_factory=dict)
    rain: RainWindows | None = None
    disp: DispState | None = None
    disp_findings: list[StepEvent] = field(default_factory=list)
    evidence: dict[str, FloatArray] = field(default_factory=dict)
    # Working caches, never saved, rebuilt whole when None: each device's silent_from
    # (alerts/engine/silence.py), and the regional floors the emitted levels were fused with.
    silent_at: FloatArray | None = None
    fused_regional: LevelArray | None = None

    @classmethod
    def initial(cls, setup: Setup) -> EngineState:
        n = setup.n

        def nan() -> FloatArray:
            return np.full(n, np.nan)

        def zero() -> LevelArray:
            return np.zeros(n, LEVEL_DTYPE)

        st = cls(zero(), nan(), nan(), nan(), nan(), zero(), zero(),
                 np.zeros((len(setup.targets), len(KINDS)), LEVEL_DTYPE),
                 np.zeros(len(setup.devices), LEVEL_DTYPE), ScreenState.initial(n),
                 np.zeros(n, bool), nan(), np.zeros(n), nan(), nan(),
                 np.zeros(len(setup.devices), LEVEL_DTYPE))
        st.reset_memory(setup)
        return st

    def array(self, name: str) -> np.ndarray:
        """A saved array by its saved name (the screen's arrays are "screen_<field>")."""
        if name.startswith("screen_"):
            out: np.ndarray = getattr(self.screen, name.removeprefix("screen_"))
            return out
        mine: np.ndarray = getattr(self, name)
        return mine

    def reset_memory(self, setup: Setup) -> None:
        """Fresh rings (after a restart they are refilled from the readings store)."""
        for g, k in RING_K.items():
            self.rings[g] = Ring.empty(setup.group_rows[g].size, k)
        nr = setup.group_rows["rainfall"].size
        self.rings["rainfall"] = Ring.empty(nr, int(setup.p["rain_ring_k"][0]))
        self.rain = RainWindows.empty(nr, np.asarray(RAIN_WINDOWS_H) * 3600.0)
        self.disp = DispState.empty(setup.group_rows["displacement"].size)
        self.evidence = {}

    def saved_arrays(self) -> dict[str, np.ndarray]:
        assert self.disp is not None
        return {**{name: getattr(self, name) for name in (*_SAVED, "emitted",
                                                          *DEVICE_ARRAYS)},
                **self.screen.arrays(), **self.disp.saved_arrays()}


@dataclass(frozen=True)
class TickResult:
    changes: list[Change]
    updated: IntArray  # channel indices evaluated this tick
    raise_level: LevelArray  # (len(updated),) before hysteresis
    silent_devices: list[str]
    # scope ("channel", "target", "device") -> the only rows whose saved state this tick can
    # have changed (alerts/engine/state.py `save` compares just these)
    touched: dict[str, IntArray] = field(default_factory=dict)


def refill_displacement(setup: Setup, state: EngineState, ch: IntArray, t: FloatArray,
                         v: FloatArray, q: np.ndarray) -> None:
    """Rebuild the displacement history from stored readings (all of a channel's reloaded
    readings, in one call) through the same code the tick runs, and put the saved
    displacement state back (alerts/engine/disp_restart.py)."""
    assert state.disp is not None
    disp_restart.refill(state.disp, setup.p, ch, setup.row_in_group, t, v, q)
