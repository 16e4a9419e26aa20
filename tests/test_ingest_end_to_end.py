"""End to end through the real Mosquitto and PostgreSQL, published by a client that is not
GeoWarn's own (mosquitto_pub), in both profiles."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count


def mosquitto_pub(broker: Broker, topic: str, payload: bytes) -> None:
    if not shutil.which("mosquitto_pub"):
        pytest.skip("mosquitto_pub is not installed (apt-get install mosquitto-clients)")
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", topic, "-s"],
                   input=payload, check=True, timeout=10)


def stored(db_url: str) -> dict[tuple[str, str, datetime], tuple[float, int]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.device_id, c.channel, r.ts, r.value, r.quality FROM readings r "
            "JOIN channels c USING (channel_id)").fetchall()
    return {(d, c, ts): (v, q) for d, c, ts, v, q in rows}


def test_both_profiles_with_units_and_calibration(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    add_device(conn, DeviceSpec(device_id="CM-0001", kind="crack_meter",
                                calibration={"opening": (1.02, -0.5)}))
    add_device(conn, DeviceSpec(device_id="WL-0001", kind="water_level"))
    add_device(conn, DeviceSpec(device_id="SK11E80D1307426AZ", profile="national"))
    start_gateway(broker)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    t1 = t0 + timedelta(minutes=10)

    # Native: a backlog of two readings in cm, one in canonical mm.
    mosquitto_pub(broker, "gw/v1/CM-0001/telemetry", json.dumps({"seq": 7, "readings": [
        {"ts": t0.isoformat(), "channel": "opening", "value": 1.5, "unit": "cm"},
        {"ts": t1.isoformat().replace("+00:00", "Z"), "channel": "opening", "value": 16.0},
    ]}).encode())
    mosquitto_pub(broker, "gw/v1/WL-0001/telemetry", json.dumps({"seq": 1, "readings": [
        {"ts": int(t0.timestamp() * 1000), "channel": "level", "value": 1250, "unit": "cm"},
    ]}).encode())
    # National: a type-2 frame with the 3-byte header; a crack meter and a tilt meter.
    stamp = t0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = json.dumps({"SK11E80D1307426AZ": {
        "L1_LF_1": {stamp: {"value": 0.0305}},
        "L1_QJ_1": {stamp: {"X": -0.0376, "Y": -0.0567, "Z": -0.0292, "angle": 83.0074,
                            "AZI": 351.2}},
    }}).encode()
    mosquitto_pub(broker, "$dp", struct.pack(">BH", 2, len(body)) + body)
    # The same national device without the header, a bare number for a single-value sensor.
    mosquitto_pub(broker, "$dp", json.dumps(
        {"SK11E80D1307426AZ": {"L1_LF_1": {t1.strftime("%Y-%m-%dT%H:%M:%S.000Z"): 10.86}}}
    ).encode())

    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 10) == 10
    got = stored(db_url)
    assert got[("CM-0001", "opening", t0)][0] == pytest.approx(15.0 * 1.02 - 0.5)
    assert got[("CM-0001", "opening", t1)][0] == pytest.approx(16.0 * 1.02 - 0.5)
    assert got[("WL-0001", "level", t0)][0] == pytest.approx(12.5)
    assert got[("SK11E80D1307426AZ", "L1_LF_1.opening", t0)][0] == pytest.approx(0.0305)
    assert got[("SK11E80D1307426AZ", "L1_LF_1.opening", t1)][0] == pytest.approx(10.86)
    assert got[("SK11E80D1307426AZ", "L1_QJ_1.angle", t0)][0] == pytest.approx(83.0074)
    assert got[("SK11E80D1307426AZ", "L1_QJ_1.azimuth", t0)][0] == pytest.approx(351.2)
    # The national logger learnt its sensors from its reports.
    learnt = {r[0] for r in conn.execute(
        "SELECT channel FROM channels WHERE device_id = 'SK11E80D1307426AZ' AND learnt")}
    assert {"L1_LF_1.opening", "L1_QJ_1.tilt_x", "L1_QJ_1.angle"} <= learnt
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_redelivered_message_is_stored_once(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-0001", kind="rain_gauge"))
    gw = start_gateway(broker)
    ts = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    payload = json.dumps({"seq": 42, "readings": [
        {"ts": ts.isoformat(), "channel": "rain", "value": 2.4}]}).encode()
    for _ in range(3):
        mosquitto_pub(broker, "gw/v1/RG-0001/telemetry", payload)
    # All three were committed: the counter moves only after each commit.
    assert gw.stats.wait_until("batches_committed_messages", 3, timeout=30)
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM readings").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
