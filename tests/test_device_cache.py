"""The gateway's device cache against a real PostgreSQL: a refresh reads only the devices that
changed (status, calibration), and still sees every change a whole reload would."""

from __future__ import annotations

import psycopg

from devices import registry
from devices.messages import Calibration
from devices.registry import DeviceSpec
from ingest.device_cache import DeviceCache


def test_incremental_refresh_reads_only_changed_devices_and_equals_a_whole_reload(
        db_url: str, conn: psycopg.Connection) -> None:
    for i in range(20):
        registry.add_device(conn, DeviceSpec(f"CM-{i:03d}", kind="crack_meter"))
    cache = DeviceCache(lambda: psycopg.connect(db_url), refresh_s=0.0)
    cache.refresh()
    assert cache.refresh_changed() == 0  # nothing changed: nothing read

    registry.retire_device(conn, "CM-003")
    registry.set_calibration(conn, "CM-007", "opening", 1.5, -0.25)
    registry.add_device(conn, DeviceSpec("CM-NEW", kind="crack_meter"))
    assert cache.refresh_changed() == 3  # the retired, the recalibrated and the new one

    info3, info7 = cache.get("CM-003"), cache.get("CM-007")
    assert info3 is not None and info3.status == "retired"
    assert info7 is not None and info7.calibration == {"opening": Calibration(1.5, -0.25)}
    whole = registry.load_device_infos(conn)
    assert {d: cache.get(d) for d in whole} == whole


def test_get_refreshes_incrementally_when_stale(db_url: str, conn: psycopg.Connection) -> None:
    registry.add_device(conn, DeviceSpec("CM-001", kind="crack_meter"))
    cache = DeviceCache(lambda: psycopg.connect(db_url), refresh_s=0.0)
    cache.refresh()
    registry.set_status(conn, "CM-001", "maintenance")
    info = cache.get("CM-001")  # stale (refresh_s 0): re-reads what changed first
    assert info is not None and info.status == "maintenance"


def test_a_change_committed_after_a_refresh_began_is_read_by_the_next(
        db_url: str, conn: psycopg.Connection) -> None:
    """A transaction that changed a device before a refresh and commits after it (updated_at
    stamped long before) is still seen; devices registered just before are not re-read."""
    for i in range(5):
        registry.add_device(conn, DeviceSpec(f"CM-{i:03d}", kind="crack_meter"))
    cache = DeviceCache(lambda: psycopg.connect(db_url), refresh_s=3600.0)
    with psycopg.connect(db_url) as late:
        late.execute("SELECT 1")  # an open transaction: set_status's block is a savepoint
        registry.set_status(late, "CM-002", "maintenance")  # not committed yet
        cache.refresh()
        assert cache.refresh_changed() == 0  # still invisible; the five are not re-read
        late.commit()
    assert cache.refresh_changed() == 1
    info = cache.get("CM-002")
    assert info is not None and info.status == "maintenance"
    assert cache.refresh_changed() == 0
