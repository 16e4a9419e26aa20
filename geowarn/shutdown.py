"""Stopping a long-running command on SIGTERM or Ctrl-C, saying so.

A service that exits without a word leaves the operator guessing whether it crashed; every
service command (`geowarn ingest`, `geowarn engine`) announces on stderr which signal arrived
and what it is now stopping, and a second signal while stopping says it is still busy.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals(stop: threading.Event, command: str, stopping: str) -> Iterator[None]:
    """While inside, SIGTERM or SIGINT set `stop` and print "COMMAND: SIGTERM received,
    stopping STOPPING" (e.g. "the ingest gateway gateway-1 (...)"); the previous handlers
    come back on leaving. Use from the main thread."""

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            print(f"{command}: {name} received again, still stopping {stopping}",
                  file=sys.stderr, flush=True)
            return
        print(f"{command}: {name} received, stopping {stopping}", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
