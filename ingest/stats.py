"""Gateway counters: messages, readings stored, duplicates, rejections by reason, batch sizes,
commit latency and queue depth. Thread-safe; snapshots are plain dicts for logs, the
`ingest_stats` table and the API."""

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

    def batch(self, messages: int, commit_seconds: float) -> None:
        with self._lock:
            self._counts["batches"] += 1
            self._batch_sizes.append(messages)
            self._commit_ms.append(commit_seconds * 1000.0)

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
            }
