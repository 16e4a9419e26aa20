"""The engine's view of device maintenance windows (devices/maintenance.py): per device id,
the (from, until) seconds each window counts, a cancelled one until its cancellation.

Inside a window (alerts/engine/tick.py and displacement.py): the channel's readings raise
nothing and lower nothing (its level holds as it was), the quality screen's findings
(implausible, repeating) are not reported, and displacement offsets are expected (removed
without a data-quality finding). A device falling silent inside a window is not reported:
its silence clock restarts at the window's end (alerts/engine/silence.py).
"""

from __future__ import annotations

import psycopg

from devices.maintenance import list_windows


def load_windows(conn: psycopg.Connection) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for w in list_windows(conn, include_cancelled=True):
        start, end = w.starts_at.timestamp(), w.effective_end.timestamp()
        if end > start:
            out.setdefault(w.device_id, []).append((start, end))
    return out
