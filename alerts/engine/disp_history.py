"""Displacement history per channel: hourly medians of the raw readings over HISTORY_DAYS,
offset-corrected, bounded in memory whatever the sampling interval.

Why hourly medians: velocities over 6 h to 7 d and a 30-day reference rate need weeks of
history; at 1-minute sampling that is ~65,000 raw readings per channel, at hourly one bin
each. A median per hour keeps what the methods need (the trend), drops isolated outliers,
and costs 4 bytes per hour (float32 suffices: bins are offset-corrected and below ±10⁶ mm).
The readings of the hour still open are kept raw (at most OPEN_K; a faster sensor keeps its
newest OPEN_K of the hour) until a reading of a later hour closes it.

Bin times: each bin also keeps the mean time of the readings its median was taken from, as
whole seconds into the hour (`sec`, int16; 2 bytes an hour). The failure forecast fits
displacement against time, and hourly GNSS solutions come at the top of the hour, not at its
middle: timing the bin at mid-hour put every bin 30 minutes late, an error of 6–12 % of the
remaining time when the data end 4–8 h before failure (bench/warning_skill.py). A restart
gets the same seconds from the store (geowarn/readings_bulk.hourly_middles `sec`).

Layout: `bins[r, h % H]` holds hour h of row r (`sec[r, h % H]` its readings' mean second);
`last_hour[r]` is the newest closed hour. Hours skipped by a gap are cleared when the next
bin closes, so a window read back holds NaN there. Offsets: `offset[r]` is the sum of the
offsets removed so far; it is subtracted from every new reading, and a new offset is
subtracted from the bins it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.ragged import FloatArray, IntArray
from alerts.methods.velocity import nanmedian_last

HOUR = 3600.0
HISTORY_DAYS = 45
H = HISTORY_DAYS * 24
OPEN_K = 64
MID_SEC = 1800  # a bin's time when its readings' is unknown (bins written directly)


def mean_second(offsets: FloatArray) -> IntArray:
    """Whole second of the hour nearest the mean of `offsets` (seconds into the hour, NaN
    where none) per row: what a bin's time is, here and from the store alike."""
    ok = np.isfinite(offsets)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(ok, offsets, 0.0).sum(axis=-1) / n
    m = np.where(n > 0, m, MID_SEC)
    return np.clip(np.floor(m + 0.5), 0, 3599).astype(np.int16)



def middle_times(mean_t: FloatArray) -> FloatArray:
    """Where a restart puts an hour's two middle values from the store (alerts/engine/data.py
    disp_hours): both at the whole second `mean_second` makes of the hour's mean reading
    time `mean_t` (seconds since the epoch), so the bin gets the live median and time."""
    start = np.floor(mean_t / HOUR) * HOUR
    return start + np.clip(np.floor(mean_t - start + 0.5), 0, 3599)


@dataclass
class DispHistory:
    bins: np.ndarray  # (rows, H) float32
    sec: np.ndarray  # (rows, H) int16: mean second of the hour of each bin's readings
    last_hour: IntArray  # (rows,) newest closed hour, -1 when none
    open_hour: IntArray  # (rows,) hour of the open bin, -1 when none
    open_vals: FloatArray  # (rows, OPEN_K) raw (sign-applied, offset-removed) values
    open_sec: FloatArray  # (rows, OPEN_K) their seconds into the hour
    open_n: IntArray  # readings seen in the open hour
    offset: FloatArray  # (rows,) offsets removed so far

    @classmethod
    def empty(cls, rows: int) -> DispHistory:
        return cls(np.full((rows, H), np.nan, np.float32), np.full((rows, H), MID_SEC, np.int16),
                   np.full(rows, -1, np.int64), np.full(rows, -1, np.int64),
                   np.full((rows, OPEN_K), np.nan), np.full((rows, OPEN_K), np.nan),
                   np.zeros(rows, np.int64), np.zeros(rows))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.bins, self.sec, self.last_hour, self.open_hour,
                                      self.open_vals, self.open_sec, self.open_n, self.offset))

    def add(self, rows: IntArray, t: FloatArray, v: FloatArray) -> IntArray:
        """One reading per row (rows unique, newer than that row's readings so far; v
        already sign-applied). Returns the rows whose open hour closed (to be evaluated)."""
        h = np.floor(t / HOUR).astype(np.int64)
        closing = (self.open_hour[rows] >= 0) & (h > self.open_hour[rows])
        closed = rows[closing]
        if closed.size:
            self._close(closed)
        new = rows[self.open_hour[rows] != h]
        self.open_hour[new] = h[self.open_hour[rows] != h]
        self.open_vals[new] = np.nan
        self.open_sec[new] = np.nan
        self.open_n[new] = 0
        slot = self.open_n[rows] % OPEN_K
        self.open_vals[rows, slot] = v - self.offset[rows]
        self.open_sec[rows, slot] = t - h * HOUR
        self.open_n[rows] += 1
        return closed

    def _close(self, rows: IntArray) -> None:
        med = nanmedian_last(self.open_vals[rows])
        sec = mean_second(self.open_sec[rows])
        hour = self.open_hour[rows]
        prev = self.last_hour[rows]
        gap = np.where(prev >= 0, hour - prev - 1, H)
        age = (hour[:, None] - np.arange(H)[None, :]) % H  # hours back from `hour`
        clear = (age >= 1) & (age <= np.minimum(gap, H)[:, None])
        sub = self.bins[rows]
        sub[clear] = np.nan
        sub[np.arange(rows.size), hour % H] = med
        self.bins[rows] = sub
        self.sec[rows, hour % H] = sec
        self.last_hour[rows] = hour

    def window(self, rows: IntArray, n: int, end_back: int = 0) -> FloatArray:
        """(rows, n) float64 bins for hours last_hour − end_back − n + 1 … last_hour −
        end_back; NaN before a row's first bin."""
        end = self.last_hour[rows] - end_back
        hours = end[:, None] - np.arange(n - 1, -1, -1)[None, :]
        out = self.bins[rows[:, None], hours % H].astype(np.float64)
        valid = (hours >= 0) & (hours > self.last_hour[rows][:, None] - H) & (end[:, None]
                                                                            >= 0)
        return np.where(valid, out, np.nan)

    def window_times(self, rows: IntArray, n: int) -> FloatArray:
        """(rows, n) seconds of the bins `window(rows, n)` returns: each hour's start plus
        its readings' mean second."""
        hours = self.last_hour[rows][:, None] - np.arange(n - 1, -1, -1)[None, :]
        return hours * HOUR + self.sec[rows[:, None], hours % H]

    def remove_offset(self, rows: IntArray, jump: FloatArray, from_back: int) -> None:
        """Subtract `jump` from the newest `from_back` closed bins, the open bin and every
        later reading of each row."""
        cols = (self.last_hour[rows][:, None] - np.arange(from_back)[None, :]) % H
        r2 = np.repeat(rows, from_back).reshape(rows.size, from_back)
        self.bins[r2, cols] -= jump[:, None].astype(np.float32)
        self.open_vals[rows] -= jump[:, None]
        self.offset[rows] += jump
