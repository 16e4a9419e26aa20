"""Ragged per-channel series packed CSR-style, and the vectorised searches the rules share.

The engine evaluates ~10,000 channels per tick and each channel has its own irregular
timestamps, so series are packed as one flat `times`/`values` pair plus `offsets` (channel c
owns `times[offsets[c]:offsets[c+1]]`, sorted ascending). Every rule works on the packed
arrays at once; nothing loops per channel.

Times are float seconds (POSIX epoch or any common origin): float64 keeps sub-millisecond
precision over centuries, and plain floats make the arithmetic cheap.

The one trick worth explaining: to binary-search a time in *each* channel in one call, the
times are made globally sorted by adding `channel * span` where `span` exceeds every
channel's time range plus the widest query offset (`composite_key`). A single
`np.searchsorted` on that key then answers per-channel queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from geowarn.errors import InvalidInput

# Inputs may be any float dtype (arithmetic on float64 arrays types as floating[Any]).
FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Ragged:
    """Per-channel series: channel c is `times[offsets[c]:offsets[c+1]]` (ascending)."""

    times: FloatArray
    values: FloatArray
    offsets: IntArray

    def __post_init__(self) -> None:
        t, v, o = self.times, self.values, self.offsets
        if t.ndim != 1 or v.ndim != 1 or o.ndim != 1:
            raise InvalidInput("ragged times, values and offsets must be 1-D arrays")
        if t.shape != v.shape:
            raise InvalidInput(f"ragged times {t.shape} and values {v.shape} differ in length")
        if o.size < 1 or o[0] != 0 or o[-1] != t.size:
            raise InvalidInput(
                f"ragged offsets must start at 0 and end at {t.size} (len(times)), got "
                f"{o[:1].tolist()}..{o[-1:].tolist()}"
            )
        if np.any(np.diff(o) < 0):
            raise InvalidInput("ragged offsets must be non-decreasing")
        if not np.all(np.isfinite(t)):
            raise InvalidInput("ragged times must be finite")
        inner = np.ones(t.size, dtype=bool)
        inner[o[1:-1]] = False  # the first sample of a channel may go back in time
        if t.size and np.any((np.diff(t) < 0) & inner[1:]):
            raise InvalidInput("ragged times must be sorted ascending within each channel")

    @property
    def n_channels(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def counts(self) -> IntArray:
        return np.diff(self.offsets)

    def channel_of_sample(self) -> IntArray:
        """Channel index of every packed sample."""
        return np.repeat(np.arange(self.n_channels, dtype=np.int64), self.counts)

    @classmethod
    def from_lists(cls, times: list[FloatArray], values: list[FloatArray]) -> Ragged:
        """Pack per-channel arrays (convenience for tests and adapters, not the hot path)."""
        if len(times) != len(values):
            raise InvalidInput(f"{len(times)} time arrays but {len(values)} value arrays")
        counts = np.array([len(t) for t in times], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        cat = (lambda xs: np.concatenate(xs).astype(np.float64)) if times else (
            lambda xs: np.zeros(0))
        return cls(cat(times), cat(values), offsets)

    @classmethod
    def from_dense(cls, times: FloatArray, values: FloatArray) -> Ragged:
        """Pack a (channels, samples) grid; `times` is (samples,) or (channels, samples)."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise InvalidInput(f"dense values must be (channels, samples), got {values.shape}")
        t = np.broadcast_to(np.asarray(times, dtype=np.float64), values.shape)
        n_ch, n_s = values.shape
        offsets = np.arange(n_ch + 1, dtype=np.int64) * n_s
        return cls(np.ascontiguousarray(t).ravel(), values.ravel().copy(), offsets)


def composite_key(r: Ragged, reach: float) -> tuple[FloatArray, float, float]:
    """Globally sorted key for per-channel searches; `reach` is the widest query offset."""
    if r.times.size == 0:
        return r.times.copy(), 0.0, 1.0
    t0 = float(r.times.min())
    span = float(r.times.max()) - t0 + abs(reach) + 1.0
    key = (r.times - t0) + r.channel_of_sample() * span
    return key, t0, span


def search_per_channel(
    r: Ragged, at: FloatArray | float, side: str = "right", reach: float = 0.0
) -> IntArray:
    """Global index of the first sample in each channel with time > `at` (side="right") or
    >= `at` (side="left"); the result lies within [offsets[c], offsets[c+1]].

    `at` is a scalar or one time per channel; `reach` must bound |at - times| so the
    composite key keeps channels apart (queries are clipped into each channel's range).
    """
    n = r.n_channels
    at_arr = np.broadcast_to(np.asarray(at, dtype=np.float64), (n,))
    key, t0, span = composite_key(r, reach)
    lo_t = t0 - abs(reach)
    hi_t = t0 + span - 1.0
    q = np.clip(at_arr, lo_t, hi_t) - t0 + np.arange(n) * span
    idx = np.searchsorted(key, q, side=side)  # type: ignore[call-overload]
    return np.clip(idx, r.offsets[:-1], r.offsets[1:]).astype(np.int64)


def segment_sum(values: FloatArray, offsets: IntArray) -> FloatArray:
    """Sum of each CSR segment (empty segments give 0)."""
    c = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return c[offsets[1:]] - c[offsets[:-1]]
