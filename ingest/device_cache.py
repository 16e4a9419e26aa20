"""The gateway's view of the device registry, so decoding a message costs no query.

Loaded whole at start; then every `refresh_s` only the devices written by a transaction the
previous read's snapshot did not see are read again (devices.changed_xid, migration 0145:
status, kind, profile and calibration changes and new devices all write the row), so a
retirement takes effect within `refresh_s` and the refresh costs what changed, not the
registry: a whole reload held up the message path for seconds at 30,000 devices, and so did
the fixed 5-minute look-back over updated_at this replaced (every device registered in the
last 5 minutes, on every refresh). A change committed late (a long transaction) is still
seen: its transaction was running at the previous snapshot. A whole reload every
`full_refresh_s` stays as a bound on anything else.
Devices registered since are looked up on a miss. Unknown ids are remembered briefly so a
flood from an unregistered device does not become a flood of queries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from devices import registry
from devices.messages import DeviceInfo


class DeviceCache:
    def __init__(self, connect: Callable[[], psycopg.Connection], *, refresh_s: float = 30.0,
                 negative_ttl_s: float = 5.0, full_refresh_s: float = 3600.0) -> None:
        self._connect = connect
        self.refresh_s = refresh_s
        self.negative_ttl_s = negative_ttl_s
        self.full_refresh_s = full_refresh_s
        self._devices: dict[str, DeviceInfo] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at = 0.0  # monotonic time of the last refresh of either kind
        self._full_at = 0.0  # monotonic time of the last whole reload
        self._seen: str | None = None  # server snapshot taken before the last read
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Reload the whole registry."""
        with self._connect() as conn:
            seen = registry.registry_snapshot(conn)
            devices = registry.load_device_infos(conn)
        with self._lock:
            self._devices = devices
            self._unknown.clear()
            self._loaded_at = self._full_at = time.monotonic()
            self._seen = seen

    def refresh_changed(self) -> int:
        """Re-read the devices written since the last refresh's snapshot; returns how many
        were read."""
        if self._seen is None:
            self.refresh()
            return len(self._devices)
        with self._connect() as conn:
            changed, seen = registry.changed_device_infos(conn, self._seen)
        with self._lock:
            self._devices.update(changed)
            for device_id in changed:
                self._unknown.pop(device_id, None)
            self._loaded_at = time.monotonic()
            self._seen = seen
        return len(changed)

    def get(self, device_id: str) -> DeviceInfo | None:
        now = time.monotonic()
        if now - self._full_at > self.full_refresh_s:
            self.refresh()
        elif now - self._loaded_at > self.refresh_s:
            self.refresh_changed()
        with self._lock:
            info = self._devices.get(device_id)
            if info is not None:
                return info
            if now - self._unknown.get(device_id, -1e9) < self.negative_ttl_s:
                return None
        with self._connect() as conn:
            info = registry.device_info(conn, device_id)
        with self._lock:
            if info is None:
                self._unknown[device_id] = now
            else:
                self._devices[device_id] = info
        return info
