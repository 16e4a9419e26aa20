"""The gateway's view of the device registry, so decoding a message costs no query.

Loaded whole at start, refreshed periodically (status changes such as a retirement take effect
within `refresh_s`), and looked up on a miss for a device registered since. Unknown ids are
remembered briefly so a flood from an unregistered device does not become a flood of queries.
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
                 negative_ttl_s: float = 5.0) -> None:
        self._connect = connect
        self.refresh_s = refresh_s
        self.negative_ttl_s = negative_ttl_s
        self._devices: dict[str, DeviceInfo] = {}
        self._unknown: dict[str, float] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._connect() as conn:
            devices = registry.load_device_infos(conn)
        with self._lock:
            self._devices = devices
            self._unknown.clear()
            self._loaded_at = time.monotonic()

    def get(self, device_id: str) -> DeviceInfo | None:
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_s:
            self.refresh()
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
