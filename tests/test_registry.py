"""The device registry against a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date

import psycopg
import pytest

from devices import credentials, registry
from devices.messages import Calibration
from devices.registry import DeviceSpec
from geowarn.errors import InvalidInput, NotFound


def test_native_device_gets_catalogue_channels_and_default_interval(conn: psycopg.Connection):
    dev = registry.add_device(conn, DeviceSpec(
        "CM-001", kind="crack_meter", name="crack 1", lon=103.5, lat=30.1,
        installed_on=date(2026, 5, 1), hazard_id="HZ1", calibration={"opening": (1.02, -0.5)}))
    assert dev.status == "active" and dev.reporting_interval_s == 600
    assert [(c.channel, c.spec, c.unit) for c in dev.channels] == [("opening", "opening", "mm")]
    assert dev.calibration == {"opening": Calibration(1.02, -0.5)}
    info = registry.device_info(conn, "CM-001")
    assert info is not None and info.kind == "crack_meter" and info.profile == "native"
    assert registry.device_info(conn, "nope") is None
    audit = conn.execute("SELECT action FROM audit_log WHERE object_id = 'CM-001'").fetchall()
    assert audit == [("add",)]


@pytest.mark.parametrize(("spec", "message"), [
    (DeviceSpec("X1", kind="lava_meter"), "unknown sensor kind 'lava_meter'"),
    (DeviceSpec("bad id", kind="crack_meter"), "device id 'bad id' is invalid"),
    (DeviceSpec("X1", kind="crack_meter", lon=200.0, lat=1.0), "lon 200.0 is out of range"),
    (DeviceSpec("X1", kind="crack_meter", lat=10.0), "give both lon and lat"),
    (DeviceSpec("X1", kind="crack_meter", calibration={"rain": (1.0, 0.0)}),
     "calibration for channel 'rain', which kind 'crack_meter' lacks"),
    (DeviceSpec("X1", kind="crack_meter", calibration={"opening": (0.0, 0.0)}),
     "scale of 'opening' must not be 0"),
    (DeviceSpec("X1"), "a native device needs a sensor kind"),
    (DeviceSpec("X1", profile="national", sensors=("L9_ZZ_1",)), "no catalogue kind"),
])
def test_invalid_specs_are_refused_with_specific_messages(conn, spec, message):
    with pytest.raises(InvalidInput, match=message):
        registry.add_device(conn, spec)
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_duplicate_id_is_refused(conn):
    registry.add_device(conn, DeviceSpec("RG-1", kind="rain_gauge"))
    with pytest.raises(InvalidInput, match="'RG-1' already exists"):
        registry.add_device(conn, DeviceSpec("RG-1", kind="rain_gauge"))


def test_national_logger_with_sensors_and_learnt_channels(conn):
    dev = registry.add_device(conn, DeviceSpec("SK11E80D", profile="national",
                                               sensors=("L1_LF_1",)))
    assert [c.channel for c in dev.channels] == ["L1_LF_1.opening"]
    assert dev.info().kind is None
    cid = registry.learn_channel(conn, "SK11E80D", "L1_GP_1.disp_x", "gnss", "disp_x")
    assert registry.learn_channel(conn, "SK11E80D", "L1_GP_1.disp_x", "gnss", "disp_x") == cid
    with pytest.raises(InvalidInput, match="registered as gnss.disp_x"):
        registry.learn_channel(conn, "SK11E80D", "L1_GP_1.disp_x", "gnss", "disp_y")
    ids = registry.channel_ids(conn, [("SK11E80D", "L1_GP_1.disp_x"), ("SK11E80D", "nope")])
    assert ids == {("SK11E80D", "L1_GP_1.disp_x"): cid}
    learnt = [c for c in registry.get_device(conn, "SK11E80D").channels if c.learnt]
    assert [(c.channel, c.unit) for c in learnt] == [("L1_GP_1.disp_x", "mm")]


def test_learn_channel_concurrently_creates_one_row(db_url, conn):
    registry.add_device(conn, DeviceSpec("NAT-2", profile="national"))
    results: list[int] = []
    barrier = threading.Barrier(6)

    def learn() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            barrier.wait()
            results.append(registry.learn_channel(c, "NAT-2", "L3_YL_1.rain", "rain_gauge",
                                                  "rain"))

    threads = [threading.Thread(target=learn) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert conn.execute("SELECT count(*) FROM channels WHERE device_id = 'NAT-2'").fetchone() \
        == (1,)


def test_status_calibration_retire_and_listing(conn):
    registry.add_device(conn, DeviceSpec("A1", kind="rain_gauge", hazard_id="H1"))
    registry.add_device(conn, DeviceSpec("B1", kind="crack_meter", hazard_id="H2"))
    credentials.issue_secret(conn, "A1")
    assert registry.set_status(conn, "A1", "maintenance").status == "maintenance"
    assert [d.device_id for d in registry.list_devices(conn, status="maintenance")] == ["A1"]
    assert [d.device_id for d in registry.list_devices(conn, kind="crack_meter")] == ["B1"]
    assert [d.device_id for d in registry.list_devices(conn, hazard_id="H1")] == ["A1"]
    ch = registry.set_calibration(conn, "B1", "opening", 2.0, 1.0)
    assert ch.calibration == Calibration(2.0, 1.0)
    with pytest.raises(InvalidInput, match="has no channel 'level'"):
        registry.set_calibration(conn, "B1", "level", 2.0, 1.0)
    retired = registry.retire_device(conn, "A1")
    assert retired.status == "retired" and retired.retired_at is not None
    assert conn.execute("SELECT secret_hash FROM device_credentials WHERE device_id = 'A1'"
                        ).fetchone() == (None,)
    with pytest.raises(InvalidInput, match="already retired"):
        registry.retire_device(conn, "A1")
    with pytest.raises(InvalidInput, match="is retired"):
        registry.set_status(conn, "A1", "active")
    with pytest.raises(NotFound):
        registry.retire_device(conn, "ZZ")
    infos = registry.load_device_infos(conn)
    assert infos["A1"].status == "retired" and infos["B1"].calibration["opening"].scale == 2.0
    actions = [r[0] for r in conn.execute(
        "SELECT action FROM audit_log WHERE object_id = 'A1' ORDER BY id")]
    assert actions == ["add", "issue_secret", "set_status", "retire"]


def test_secrets_hash_in_mosquitto_format_and_verify(conn):
    registry.add_device(conn, DeviceSpec("S1", kind="rain_gauge"))
    secret = credentials.issue_secret(conn, "S1")
    stored = conn.execute("SELECT secret_hash FROM device_credentials").fetchone()[0]
    assert stored.startswith("$7$") and secret not in stored
    assert credentials.check_device_secret(conn, "S1", secret)
    assert not credentials.check_device_secret(conn, "S1", secret + "x")
    rotated = credentials.issue_secret(conn, "S1")
    assert rotated != secret
    assert not credentials.check_device_secret(conn, "S1", secret)
    assert credentials.check_device_secret(conn, "S1", rotated)
    with pytest.raises(InvalidInput, match="not a Mosquitto"):
        credentials.verify_secret("x", "plaintext")


# --- the CLI -------------------------------------------------------------------------------

def test_cli_add_show_list_calibrate_rotate_retire(conn, capsys):
    from geowarn.cli import main

    assert main(["devices", "add", "CLI-1", "--kind", "crack_meter", "--lon", "103.1",
                 "--lat", "30.2", "--hazard", "HZ9", "--installed", "2026-04-01"]) == 0
    out = capsys.readouterr().out
    secret = out.split("store it now): ")[1].splitlines()[0].strip()
    assert credentials.check_device_secret(conn, "CLI-1", secret)

    assert main(["devices", "add", "CLI-1", "--kind", "crack_meter"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["devices", "add", "CLI-2", "--kind", "crack_meter", "--lat", "1"]) == 2
    assert "give both lon and lat" in capsys.readouterr().err

    assert main(["devices", "calibrate", "CLI-1", "opening", "--scale", "1.5",
                 "--offset", "-2"]) == 0
    assert main(["devices", "maintenance", "CLI-1"]) == 0
    assert main(["devices", "command", "CLI-1", "set_interval", "--param", "sample_s=60",
                 "--param", "upload_s=300"]) == 0
    capsys.readouterr()
    assert main(["devices", "show", "CLI-1"]) == 0
    out = capsys.readouterr().out
    assert "scale 1.5 offset -2" in out and "maintenance" in out
    assert "health: silent (never reported)" in out and "set_interval queued" in out
    assert secret not in out

    assert main(["devices", "list", "--json", "--hazard", "HZ9"]) == 0
    import json
    listed = json.loads(capsys.readouterr().out)
    assert [d["device_id"] for d in listed] == ["CLI-1"]

    assert main(["devices", "rotate-secret", "CLI-1"]) == 0
    new_secret = capsys.readouterr().out.split("store it now): ")[1].split()[0]
    assert not credentials.check_device_secret(conn, "CLI-1", secret)
    assert credentials.check_device_secret(conn, "CLI-1", new_secret)

    assert main(["devices", "retire", "CLI-1"]) == 0
    assert main(["devices", "rotate-secret", "CLI-1"]) == 2
    assert "is retired" in capsys.readouterr().err
    assert main(["devices", "show", "nope"]) == 2
    assert "no device 'nope'" in capsys.readouterr().err
