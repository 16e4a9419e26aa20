"""Fixed-capacity per-channel sample rings and incremental rain-window sums for the engine.

The engine keeps the recent samples of each method group in a (channels, K) ring so that a
steady-state tick costs O(new samples + the few samples each rule looks back on), not
O(everything held). Rain accumulations over 1…72 h are kept as running sums with one tail
pointer per window: a tick adds the new samples and subtracts those that slid out, so its
cost does not grow with the window. Sums are integers in micro-millimetres, so the running
sum equals a from-scratch sum bit for bit (float running sums drift, and a drift across a
threshold would make a replay disagree with a restart).

Rings are updated in place; they are working memory of the engine, rebuilt from the readings
store after a restart (alerts/engine/state.py persists only what cannot be rebuilt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.ragged import FloatArray, IntArray

MICRO = 1_000_000.0
REBUILD_ABOVE = 8  # more new samples than this in one tick: recount windows from the ring
# The rain ring is sized from the registered reporting intervals, but gauges report faster in
# heavy rain (5-minute reports from an hourly station) or are registered wrong: the ring then
# grows, up to what a 1-minute gauge would have been given (alerts/engine/tick_setup.py).
RAIN_RING_MAX = 4096


@dataclass
class Ring:
    """Recent samples of `n` channels; channel i holds its last min(total[i], K) samples."""

    t: FloatArray  # (n, K) times, seconds
    v: FloatArray  # (n, K) values
    q: np.ndarray  # (n, K) int8 stored quality
    total: IntArray  # (n,) samples ever appended

    @classmethod
    def empty(cls, n: int, k: int) -> Ring:
        return cls(np.full((n, k), np.nan), np.full((n, k), np.nan),
                   np.zeros((n, k), np.int8), np.zeros(n, np.int64))

    @property
    def k(self) -> int:
        return int(self.t.shape[1])

    def append(self, rows: IntArray, t: FloatArray, v: FloatArray, q: np.ndarray
               ) -> tuple[IntArray, IntArray, FloatArray]:
        """Append samples (rows sorted, times ascending within a row). Returns the rows that
        got data (unique), their new-sample counts, and the newest time that was pushed out
        of each such row's ring (NaN when nothing was)."""
        if rows.size < 2 or bool(np.all(rows[1:] > rows[:-1])):
            # One sample per row (every round of a replay): np.unique's sort is the cost.
            uniq, cnt = rows, np.ones(rows.size, np.int64)
            rank = np.zeros(rows.size, np.int64)
            keep = np.full(rows.size, self.k > 0)
        else:
            uniq, start, cnt = np.unique(rows, return_index=True, return_counts=True)
            rank = np.arange(rows.size) - np.repeat(start, cnt)
            keep = rank >= np.repeat(cnt, cnt) - self.k  # more than K new: only the last K fit
        absidx = self.total[rows] + rank
        k = self.k
        dropped = np.full(uniq.size, np.nan)
        # Times pushed out: old ring entries overwritten, and new samples that never fit.
        lost_t = np.where(keep & (absidx >= k), self.t[rows, absidx % k], np.nan)
        lost_t = np.where(keep, lost_t, t)
        grp = np.repeat(np.arange(uniq.size), cnt)
        with np.errstate(invalid="ignore"):
            np.fmax.at(dropped, grp, lost_t)
        r, p = rows[keep], absidx[keep] % k
        self.t[r, p] = t[keep]
        self.v[r, p] = v[keep]
        self.q[r, p] = q[keep]
        self.total[uniq] += cnt
        return uniq, cnt, dropped

    def last(self, rows: IntArray, n: int) -> tuple[FloatArray, FloatArray, np.ndarray]:
        """The last n samples of each row, oldest first, NaN-padded on the left: (rows, n)."""
        n = min(n, self.k)
        idx = self.total[rows, None] - n + np.arange(n)
        ok = idx >= 0
        pos = np.where(ok, idx, 0) % self.k
        rr = rows[:, None]
        return (np.where(ok, self.t[rr, pos], np.nan), np.where(ok, self.v[rr, pos], np.nan),
                np.where(ok, self.q[rr, pos], 0).astype(np.int8))

    def mark_last(self, rows: IntArray, quality: int) -> None:
        """Set the stored quality of each row's newest sample (the engine's own verdict, e.g.
        a spike, so later evaluations leave that value out)."""
        rows = rows[self.total[rows] > 0]
        self.q[rows, (self.total[rows] - 1) % self.k] = quality

    def reinstate(self, rows: IntArray, since: FloatArray, quality: FloatArray,
                  marked: int, back: int) -> None:
        """Give the samples of each row older than its newest, at or after since[row], among
        the last `back`, that carry the engine's mark `marked`, the quality `quality[row]`
        (a pending jump the next samples confirmed as an onset comes back)."""
        for j in range(2, min(back, self.k) + 1):
            ok = self.total[rows] >= j
            r = rows[ok]
            pos = (self.total[r] - j) % self.k
            hit = (self.t[r, pos] >= since[ok]) & (self.q[r, pos] == marked)
            self.q[r[hit], pos[hit]] = quality[ok][hit].astype(np.int8)

    def newest_time(self, rows: IntArray) -> FloatArray:
        pos = np.maximum(self.total[rows] - 1, 0) % self.k
        return np.where(self.total[rows] > 0, self.t[rows, pos], np.nan)

    def merge(self, row: int, t: FloatArray, v: FloatArray, q: np.ndarray, since: float
              ) -> tuple[int, float]:
        """Merge samples older than the row's newest into it in time order (a late backlog,
        alerts/engine/late.py). Left out: times the row holds already (and repeats among
        `t`), times at or before `since`, and, when the row is full, times before its oldest
        held sample (they would not fit). Returns how many were added and the newest time
        pushed out of the row to make room (NaN: none)."""
        k = self.k
        tot = int(self.total[row])
        m = min(tot, k)
        pos = (tot - m + np.arange(m)) % k
        ht, hv, hq = self.t[row, pos], self.v[row, pos], self.q[row, pos]
        ok = (t > since) & ~np.isin(t, ht)
        if tot >= k and m:
            ok &= t > ht.min()
        ok[1:] &= t[1:] != t[:-1]
        if not ok.any():
            return 0, float("nan")
        at, av, aq = np.r_[ht, t[ok]], np.r_[hv, v[ok]], np.r_[hq, q[ok]].astype(np.int8)
        order = np.argsort(at, kind="stable")
        at, av, aq = at[order], av[order], aq[order]
        lost = at[:-k] if at.size > k else at[:0]
        at, av, aq = at[-k:], av[-k:], aq[-k:]
        added = int(ok.sum())
        new_tot = tot + added
        p = (new_tot - at.size + np.arange(at.size)) % k
        self.t[row, p], self.v[row, p], self.q[row, p] = at, av, aq
        self.total[row] = new_tot
        return added, float(lost.max()) if lost.size else float("nan")

    def cut(self, row: int, since: float) -> tuple[FloatArray, FloatArray, np.ndarray]:
        """Remove the row's samples at or after `since` (to judge them again after a late
        one, alerts/engine/late_series.py) and return them oldest first. The older samples
        keep their absolute indices; the slots the removed ones leave are emptied (NaN), so
        `last` reads them as the padding before a row's first sample."""
        k, tot = self.k, int(self.total[row])
        m = min(tot, k)
        pos = (tot - m + np.arange(m)) % k
        gone = pos[self.t[row, pos] >= since]  # a suffix: a row's times ascend
        out = (self.t[row, gone].copy(), self.v[row, gone].copy(), self.q[row, gone].copy())
        self.t[row, gone], self.v[row, gone], self.q[row, gone] = np.nan, np.nan, 0
        self.total[row] = tot - gone.size
        return out

    def grow(self, k_new: int) -> None:
        """Widen every row to k_new slots, keeping each row's samples and their absolute
        indices (a sample with absolute index a sits at a % k)."""
        n, k = self.t.shape
        if k_new <= k:
            return
        absidx = self.total[:, None] - k + np.arange(k)[None, :]
        ok = absidx >= 0
        r = np.broadcast_to(np.arange(n)[:, None], absidx.shape)[ok]
        a = absidx[ok]
        t, v = np.full((n, k_new), np.nan), np.full((n, k_new), np.nan)
        q = np.zeros((n, k_new), np.int8)
        t[r, a % k_new], v[r, a % k_new], q[r, a % k_new] = (
            self.t[r, a % k], self.v[r, a % k], self.q[r, a % k])
        self.t, self.v, self.q = t, v, q


def rain_micro(v: FloatArray, q: np.ndarray) -> IntArray:
    """Rain as integer micro-mm; unreliable samples (quality 2) count as no rain."""
    finite = np.isfinite(v)
    # nan_to_num costs more than the rest; only a NaN or an infinity needs it.
    v = v if finite.all() else np.nan_to_num(v)
    return np.where(q >= 2, 0, np.rint(v * MICRO)).astype(np.int64)


@dataclass
class RainWindows:
    """Running sums over (t_last − w, t_last] for each row of a rain ring and each window."""

    windows_s: FloatArray  # (W,)
    acc: IntArray  # (n, W) micro-mm
    tail: IntArray  # (n, W) absolute index of the oldest sample inside the window
    dropped_t: FloatArray  # (n,) newest time pushed out of the ring (NaN: none)

    @classmethod
    def empty(cls, n: int, windows_s: FloatArray) -> RainWindows:
        w = np.asarray(windows_s, dtype=np.float64)
        return cls(w, np.zeros((n, w.size), np.int64), np.zeros((n, w.size), np.int64),
                   np.full(n, np.nan))

    def update(self, ring: Ring, rows: IntArray, t: FloatArray, v: FloatArray, q: np.ndarray
               ) -> IntArray:
        """Append samples to `ring` and bring the sums up to each row's newest sample.
        Returns the rows that got data."""
        self._make_room(ring, rows, t)
        k = ring.k
        uniq, cnt, dropped = ring.append(rows, t, v, q)
        self.dropped_t[uniq] = np.fmax(self.dropped_t[uniq], dropped)
        # Rows whose window tails would lie in overwritten slots, or with many new samples,
        # are recounted from the ring; the rest advance incrementally.
        need = (cnt > REBUILD_ABOVE) | (self.tail[uniq].min(axis=1) < ring.total[uniq] - k)
        rebuild, steady = uniq[need], uniq[~need]
        if rebuild.size:
            self._recount(ring, rebuild)
        if steady.size:
            keep = np.isin(rows, steady) if rebuild.size else slice(None)
            micro = rain_micro(v[keep], q[keep])
            np.add.at(self.acc, rows[keep], micro[:, None])
            self._advance(ring, steady)
        return uniq

    def _make_room(self, ring: Ring, rows: IntArray, t: FloatArray) -> None:
        """Grow the ring (doubling, at most RAIN_RING_MAX) before an append would push out a
        sample still inside the longest window: a gauge reporting faster than registered
        (outside trial: an hourly station sending 5-minute reports in a typhoon lost its 24 h
        total, which then read as missing, and its red cleared mid-storm)."""
        if rows.size == 0 or ring.k >= RAIN_RING_MAX:
            return
        if rows.size < 2 or bool(np.all(rows[1:] > rows[:-1])):
            uniq, start, cnt = rows, np.arange(rows.size), np.ones(rows.size, np.int64)
        else:
            uniq, start, cnt = np.unique(rows, return_index=True, return_counts=True)
        k = ring.k
        edge = t[start + cnt - 1] - self.windows_s.max()  # newest new time − longest window
        total = ring.total[uniq]
        d = total + cnt - k - 1  # absolute index of the newest sample the append drops
        t_d = np.where(d < total, ring.t[uniq, np.maximum(d, 0) % k],
                       t[start + np.clip(d - total, 0, cnt - 1)])
        short = (d >= 0) & (t_d > edge)
        if not short.any():  # the steady state: O(rows), nothing to grow
            return
        r = uniq[short]
        idx = ring.total[r, None] - k + np.arange(k)[None, :]
        tt = np.where(idx >= 0, ring.t[r[:, None], np.maximum(idx, 0) % k], np.nan)
        with np.errstate(invalid="ignore"):
            need = int(((tt > edge[short, None]).sum(axis=1) + cnt[short]).max())
        k_new = k
        while k_new < need and k_new < RAIN_RING_MAX:
            k_new *= 2
        ring.grow(min(k_new, RAIN_RING_MAX))

    def _recount(self, ring: Ring, rows: IntArray) -> None:
        k = ring.k
        tt, vv, qq = ring.t[rows], ring.v[rows], ring.q[rows]
        tot = ring.total[rows]
        valid = (tot[:, None] >= k) | (np.arange(k)[None, :] < tot[:, None])
        micro = np.where(valid, rain_micro(vv, qq), 0)
        t_end = ring.newest_time(rows)
        for j, w in enumerate(self.windows_s):
            inwin = valid & (tt > (t_end - w)[:, None])
            self.acc[rows, j] = (micro * inwin).sum(axis=1)
            self.tail[rows, j] = tot - inwin.sum(axis=1)

    def _advance(self, ring: Ring, rows: IntArray) -> None:
        """Move every window's tail past the samples that slid out of it, all windows at
        once (usually one or two passes: one sample in, one out)."""
        k = ring.k
        edge = ring.newest_time(rows)[:, None] - self.windows_s[None, :]  # (rows, W)
        total = ring.total[rows][:, None]
        rr = np.broadcast_to(rows[:, None], edge.shape)
        while True:
            tail = self.tail[rows]
            pos = tail % k
            leaving = (tail < total) & (ring.t[rr, pos] <= edge)
            if not leaving.any():
                break
            r, j = np.nonzero(leaving)
            p = pos[r, j]
            self.acc[rows[r], j] -= rain_micro(ring.v[rows[r], p], ring.q[rows[r], p])
            self.tail[rows[r], j] += 1

    def totals_mm(self, ring: Ring, rows: IntArray) -> FloatArray:
        """(rows, W) accumulations in mm; NaN where the window reaches back past samples the
        ring no longer holds (an incomplete total must not look dry)."""
        t_end = ring.newest_time(rows)
        short = self.dropped_t[rows, None] > (t_end[:, None] - self.windows_s[None, :])
        return np.where(short, np.nan, self.acc[rows] / MICRO)
