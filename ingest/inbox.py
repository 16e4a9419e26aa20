"""The gateway's inbox: received messages waiting for a batch, bounded in messages and in bytes.

A message counts against the byte budget from the moment the network thread puts it in until
the writer releases it after its batch was committed and acknowledged, so everything the
gateway holds (the inbox, the batch being built, decoded batches waiting, the batch being
committed) stays within one budget however large the messages are.

The MQTT network thread never waits here (`offer` always takes the message): a thread blocked
in a callback stops answering the broker's keepalive and the connection drops, which makes
the broker send its whole in-flight window again. Instead, while the inbox is not
`accepting`, the connection stops reading the socket (TCP backpressure; the broker keeps the
rest in the gateway's session) and keeps writing acknowledgements and pings. A message read
before the pause is still taken, so the budget can be exceeded by the one message in hand
(the gateway's memory bound keeps room for it); one message larger than the whole budget
still gets in, so it cannot block the stream for ever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import deque
from collections.abc import Callable, Iterable

from ingest.pipeline import ReceivedMessage


class InboxClosed(Exception):
    """The gateway is stopping; the message was not taken (the broker redelivers it)."""


class Inbox:
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an inbox needs room for at least one message and one byte")
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._queue: deque[ReceivedMessage] = deque()
        self._held_bytes = 0  # queued + taken and not yet released
        self._closed = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._held_bytes

    def qsize(self) -> int:
        with self._lock:
            return len(self._queue)

    def _accepting(self) -> bool:  # the lock is held
        return len(self._queue) < self.max_messages and (
            self._held_bytes == 0 or self._held_bytes < self.max_bytes)

    def accepting(self) -> bool:
        """Whether there is room for another message."""
        with self._lock:
            return self._accepting()

    def wait_for_room(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for room (or the close); returns whether there is."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._accepting(), timeout)
            return self._accepting()

    def offer(self, message: ReceivedMessage) -> None:
        """Take the message without waiting, even beyond the limits (see the module's
        docstring); raises InboxClosed when the gateway stops."""
        with self._changed:
            if self._closed:
                raise InboxClosed
            self._queue.append(message)
            self._held_bytes += len(message.payload)
            self._changed.notify_all()

    def get(self, timeout: float, unless: Callable[[], bool] | None = None
            ) -> ReceivedMessage | None:
        """The oldest message, or None after `timeout` seconds, or as soon as the queue is
        empty and `unless()` holds (checked again on every `wake`); the message stays held
        until released."""
        def ready() -> bool:
            return bool(self._queue) or self._closed or (unless is not None and unless())
        with self._changed:
            if not self._changed.wait_for(ready, timeout):
                return None
            return self._queue.popleft() if self._queue else None

    def wake(self) -> None:
        """Have a waiting `get` check its `unless` again."""
        with self._changed:
            self._changed.notify_all()

    def release(self, messages: Iterable[ReceivedMessage]) -> None:
        """Messages done with (committed and acknowledged, or dropped): their bytes are free."""
        freed = sum(len(m.payload) for m in messages)
        with self._changed:
            self._held_bytes = max(0, self._held_bytes - freed)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - only glibc has it
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def map_large_messages(threshold: int = 128 * 1024) -> None:
    """Have glibc give every allocation of `threshold` bytes or more its own mapping, freed
    to the OS at once. By default glibc raises this threshold after the first large block is
    freed, and message-sized blocks then stay in per-thread heaps after use, so the RSS
    tracks the largest burst rather than what is held (measured: 6 MiB over a 12 MiB inbox
    with 1 MiB messages)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)


def release_free_heap() -> None:
    """Ask glibc to return free heap pages to the OS (a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
