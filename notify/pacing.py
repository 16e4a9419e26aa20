"""A token bucket per sender number, on an injectable clock.

Twilio queues what a number sends beyond its rate (1 message/s for a long code, more for a
short code or messaging service) and fails it with 30001 when the queue overflows, so the
notifier paces itself at the account's configured rate instead. `acquire` waits exactly as
long as the next token needs (one timed wait, not a polling loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from geowarn.errors import InvalidInput


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise InvalidInput(f"pacing needs rate > 0 and burst >= 1, got {rate_per_s}, "
                               f"{burst}")
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting if needed; returns how long it waited."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait
