"""Gateway counters: messages, readings stored, duplicates, rejections by reason, batch sizes,
commit latency, lag (message received -> committed) and queue depth. Thread-safe; snapshots
are plain dicts for the `ingest_stats` table, `geowarn ingest --stats` and the API;
`summary_line` turns two snapshots into the one line the gateway logs now and then."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class IngestStats:
    started_at: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counts: Counter[str] = field(default_factory=Counter)
    _rejections: Counter[str] = field(default_factory=Counter)
    # Recent samples only: a bounded window keeps percentiles current and memory fixed.
    _batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=2048))
    _commit_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    _lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    queue_depth: int = 0

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
            self._changed.notify_all()

    def wait_until(self, name: str, at_least: int, timeout: float) -> bool:
        """Block until counter `name` reaches `at_least` (tests, shutdown drains)."""
        with self._lock:
            return self._changed.wait_for(lambda: self._counts[name] >= at_least, timeout)

    def reject(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._rejections[reason] += n

    def batch(self, messages: int, commit_seconds: float, lag_seconds: float | None = None
              ) -> None:
        """A committed batch; `lag_seconds`: from its oldest message's arrival to the commit."""
        with self._lock:
            self._counts["batches"] += 1
            self._batch_sizes.append(messages)
            self._commit_ms.append(commit_seconds * 1000.0)
            if lag_seconds is not None:
                self._lag_ms.append(max(0.0, lag_seconds) * 1000.0)

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def rejections(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejections)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            sizes = np.asarray(self._batch_sizes, dtype=float)
            commits = np.asarray(self._commit_ms, dtype=float)
            lags = np.asarray(self._lag_ms, dtype=float)
            return {
                "uptime_s": round(time.time() - self.started_at, 1),
                **dict(self._counts),
                "rejections": dict(self._rejections),
                "queue_depth": self.queue_depth,
                "batch_size_mean": round(float(sizes.mean()), 1) if sizes.size else None,
                "batch_size_max": int(sizes.max()) if sizes.size else None,
                "commit_ms_p50": round(float(np.percentile(commits, 50)), 2)
                if commits.size else None,
                "commit_ms_p99": round(float(np.percentile(commits, 99)), 2)
                if commits.size else None,
                "lag_ms_p50": round(float(np.percentile(lags, 50)), 1) if lags.size else None,
                "lag_ms_p99": round(float(np.percentile(lags, 99)), 1) if lags.size else None,
            }


def summary_line(previous: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """One human line from two snapshots (pure): rates since the previous one, lag, queue and
    dead letters, e.g. "42.0 msg/s, 40.1 readings/s stored, 0 duplicates; lag p99 35 ms;
    queue 0; dead letters +2 (12 in all: schema_violation 10, unknown_device 2)"."""
    prev = previous or {"uptime_s": 0.0}
    seconds = max(float(current["uptime_s"]) - float(prev["uptime_s"]), 1e-9)

    def delta(key: str) -> int:
        return int(current.get(key, 0)) - int(prev.get(key, 0))

    lag = current.get("lag_ms_p99")
    rejections = dict(current.get("rejections") or {})
    letters = int(current.get("dead_letters", 0))
    by_reason = ", ".join(f"{k} {v}" for k, v in
                          sorted(rejections.items(), key=lambda kv: (-kv[1], kv[0])))
    dead = f"dead letters +{delta('dead_letters')}" + (
        f" ({letters} in all: {by_reason})" if letters and by_reason else "")
    return (f"{delta('messages_received') / seconds:.1f} msg/s, "
            f"{delta('readings_stored') / seconds:.1f} readings/s stored, "
            f"{delta('readings_duplicate')} duplicate readings; "
            f"lag p99 {'-' if lag is None else f'{lag:.0f} ms'}; "
            f"queue {current.get('queue_depth', 0)}; {dead}"
            + (f"; STALLED {current['stalled_s']:.0f} s (messages waiting, none acknowledged)"
               if current.get("stalled_s") else ""))
