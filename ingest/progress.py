"""Whether the gateway's pipeline advances: messages taken from the inbox and not yet
acknowledged, and since when nothing has moved while some wait. Saved with the counters
(`pending_messages`, `stalled_s`) so `geowarn health gateway` can tell a gateway that reports
but no longer ingests (a decoder wedged on one message) from an idle one."""

from __future__ import annotations

import threading
import time


class PipelineProgress:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # the decoder takes, the writer acknowledges
        self._in_hand = 0
        self._progress_at = time.monotonic()

    def taken(self, n: int) -> None:
        with self._lock:
            self._in_hand += n

    def acknowledged(self, n: int) -> None:
        with self._lock:
            self._in_hand -= n
            self._progress_at = time.monotonic()

    @property
    def in_hand(self) -> int:
        with self._lock:
            return self._in_hand

    def report(self, waiting_in_inbox: int) -> dict[str, float]:
        """{pending_messages, stalled_s}: stalled_s is 0 while nothing waits."""
        with self._lock:
            pending = waiting_in_inbox + max(0, self._in_hand)
            now = time.monotonic()
            if pending == 0:
                self._progress_at = now
            return {"pending_messages": pending,
                    "stalled_s": round(now - self._progress_at, 1) if pending else 0.0}
