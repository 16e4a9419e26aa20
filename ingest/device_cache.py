"""The gateway's view of the device registry, so decoding a message costs no query.

Loaded whole at start; then every `refresh_s` only the devices whose `updated_at` moved are
read again (status, kind, profile and calibration changes all bump it), so a retirement takes
effect within `refresh_s` and the refresh costs what changed, not the registry: a whole reload
held up the message path for seconds at 30,000 devices. The incremental read looks back
`overlap_s` before the server time of the previous one, so a change committed late (a long
transaction stamps updated_at when it starts) is still seen; a whole reload every
`full_refresh_s` bounds anything else, such as a transaction open longer than that.
Devices registered since are looked up on a miss. Unknown ids are remembered briefly so a
flood from an unregistered device does not become a flood of queries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg

from devices import registry
from devices.messages import DeviceInfo


class DeviceCache:
    def __init__(self, connect: Callable[[], psycopg.Connection], *, refresh_s: float = 30.0,
                 negative_ttl_s: float = 5.0, overlap_s: float = 300.0,
                 full_refresh_s: float = 3600.0) -> None:
        self._connect = connect
        self.refresh_s = refresh_s
        self.negative_ttl_s = negative_ttl_s
        self.overlap_s = overlap_s
        self.full_refresh_s = full_refresh_s
        self._devices: dict[str, DeviceInfo] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at = 0.0  # monotonic time of the last refresh of either kind
        self._full_at = 0.0  # monotonic time of the last whole reload
        self._server_at: datetime | None = None  # server clock of the last refresh
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Reload the whole registry."""
        with self._connect() as conn:
            row = conn.execute("SELECT now()").fetchone()
            devices = registry.load_device_infos(conn)
        with self._lock:
            self._devices = devices
            self._unknown.clear()
            self._loaded_at = self._full_at = time.monotonic()
            self._server_at = row[0] if row else None

    def refresh_changed(self) -> int:
        """Re-read the devices updated since the last refresh (with the overlap); returns
        how many were read."""
        if self._server_at is None:
            self.refresh()
            return len(self._devices)
        since = self._server_at - timedelta(seconds=self.overlap_s)
        with self._connect() as conn:
            changed, server_now = registry.changed_device_infos(conn, since)
        with self._lock:
            self._devices.update(changed)
            for device_id in changed:
                self._unknown.pop(device_id, None)
            self._loaded_at = time.monotonic()
            self._server_at = server_now
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
