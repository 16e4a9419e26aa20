"""`geowarn devices import|list` as an operator meets them, against a real PostgreSQL: the CSV
format in --help, the shipped example, the secrets file in each format, re-runs, and the
list's last-seen and health columns."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices import credentials, health, secrets_file
from devices.catalogue import load_catalogue
from devices.csv_import import COLUMNS, EXAMPLE_CSV
from devices.messages import StatusReport
from geowarn.cli import main
from geowarn.errors import InvalidInput


def test_import_help_documents_the_format_and_the_kinds(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["devices", "import", "--help"])
    text = capsys.readouterr().out
    for column in COLUMNS:
        assert column in text
    assert "device_id             REQUIRED" in text and "REQUIRED for profile native" in text
    flat = " ".join(text.split())
    for kind in load_catalogue().kinds:
        assert kind in flat
    assert "--secrets-format {csv,json,env}" in text and "--example" in text


def test_the_shipped_example_imports_cleanly(conn: psycopg.Connection, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "import", "--example"]) == 0
    printed = capsys.readouterr().out
    assert printed == EXAMPLE_CSV.read_text(encoding="utf-8")
    src = tmp_path / "devices.csv"
    src.write_text(printed, encoding="utf-8")
    out_file = tmp_path / "secrets.csv"
    assert main(["devices", "import", str(src), "--secrets-out", str(out_file)]) == 0
    out = capsys.readouterr().out
    n = len(printed.strip().splitlines()) - 1
    assert f"created {n}, updated 0, unchanged 0, conflicts 0, bad rows 0" in out
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (n,)
    for device_id, secret in secrets_file.read(out_file).items():
        assert credentials.check_device_secret(conn, device_id, secret)
        assert secret not in out


@pytest.mark.parametrize("fmt", secrets_file.FORMATS)
def test_secrets_file_formats_are_lf_private_and_read_back(
        fmt: str, conn: psycopg.Connection, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "fleet.csv"
    src.write_text("device_id,kind\r\nRG-1,rain_gauge\r\ngnss.2,gnss\r\nWL_3,water_level\r\n")
    out_file = tmp_path / f"secrets.{fmt}"
    assert main(["devices", "import", str(src), "--secrets-out", str(out_file),
                 "--secrets-format", fmt]) == 0
    assert f"3 secrets written to {out_file} ({fmt}, mode 0600)" in capsys.readouterr().out
    data = out_file.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    if fmt == "json":
        assert set(json.loads(data)) == {"RG-1", "gnss.2", "WL_3"}
    if fmt == "env":
        assert data.decode().splitlines()[0].startswith("GEOWARN_SECRET_RG_1=")
    got = secrets_file.read(out_file, ["RG-1", "gnss.2", "WL_3"])
    assert set(got) == {"RG-1", "gnss.2", "WL_3"}
    for device_id, secret in got.items():
        assert secret == secret.strip() and len(secret) == 32
        assert credentials.check_device_secret(conn, device_id, secret)


def test_format_follows_the_file_name_and_env_refuses_colliding_ids(tmp_path: Path) -> None:
    assert secrets_file.format_for(tmp_path / "s.json", None) == "json"
    assert secrets_file.format_for(tmp_path / "s.env", None) == "env"
    assert secrets_file.format_for(tmp_path / "s.txt", None) == "csv"
    assert secrets_file.format_for(tmp_path / "s.json", "csv") == "csv"
    with pytest.raises(InvalidInput, match="A-1 and A_1 both become GEOWARN_SECRET_A_1"):
        secrets_file.write_new(tmp_path / "s.env", {"A-1": "x", "A_1": "y"}, "env")
    assert not (tmp_path / "s.env").exists()
    crlf = tmp_path / "windows.csv"  # a file that went through a Windows editor
    crlf.write_bytes(b"device_id,secret\r\nA,s1\r\n")
    assert secrets_file.read(crlf) == {"A": "s1"}
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    with pytest.raises(InvalidInput, match="not a secrets file"):
        secrets_file.read(bad)


def test_new_devices_with_an_existing_secrets_file_import_nothing_and_keep_it(
        conn: psycopg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "secrets.csv"
    first = tmp_path / "a.csv"
    first.write_text("device_id,kind\nA-1,crack_meter\n")
    assert main(["devices", "import", str(first), "--secrets-out", str(out_file)]) == 0
    kept = out_file.read_bytes()
    second = tmp_path / "b.csv"
    second.write_text("device_id,kind\nA-1,crack_meter\nB-1,gnss\n")
    capsys.readouterr()
    assert main(["devices", "import", str(second), "--secrets-out", str(out_file)]) == 2
    err = capsys.readouterr().err
    assert "1 new device(s) need secrets" in err and "nothing was imported" in err
    assert "--secrets-out secrets-2.csv" in err
    assert out_file.read_bytes() == kept  # the earlier secrets survive the refusal
    assert conn.execute("SELECT count(*) FROM devices WHERE device_id = 'B-1'").fetchone() == (0,)
    assert main(["devices", "import", str(second), "--secrets-out",
                 str(tmp_path / "secrets-2.csv")]) == 0
    assert "created 1, updated 0, unchanged 1" in capsys.readouterr().out


def test_import_without_a_file_says_how(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "import"]) == 2
    assert "--example prints one" in capsys.readouterr().err


def test_list_shows_last_seen_and_health(conn: psycopg.Connection, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "fleet.csv"
    src.write_text("device_id,kind,reporting_interval_s\nOK-1,crack_meter,600\n"
                   "LATE-1,crack_meter,600\nQUIET-1,crack_meter,600\nNEVER-1,crack_meter,600\n"
                   "OLD-1,crack_meter,600\n")
    assert main(["devices", "import", str(src), "--secrets-out", str(tmp_path / "s.csv")]) == 0
    now = datetime.now(UTC)
    health.touch_last_reading(conn, {"OK-1": now - timedelta(minutes=5),
                                     "LATE-1": now - timedelta(minutes=25),
                                     "QUIET-1": now - timedelta(hours=3),
                                     "OLD-1": now - timedelta(days=3)})
    health.record_status(conn, StatusReport("OK-1", now - timedelta(minutes=4), battery_pct=12.0,
                                            signal_dbm=-111.0))
    conn.commit()
    assert main(["devices", "retire", "OLD-1"]) == 0
    capsys.readouterr()
    assert main(["devices", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "LAST SEEN (UTC)" in lines[0] and lines[0].rstrip().endswith("HEALTH")
    rows = {line.split()[0]: " ".join(line.split()) for line in lines[1:-1]}
    assert rows["OK-1"].endswith("(4m ago) ok; low battery 12%; weak signal -111 dBm")
    assert rows["LATE-1"].endswith("(25m ago) late")
    assert rows["QUIET-1"].endswith("(3h ago) silent")
    assert rows["NEVER-1"].endswith("- never silent (never reported)")
    assert rows["OLD-1"].endswith("(3d ago) retired")
    assert lines[-1].startswith("5 device(s). HEALTH: ok = ")
    assert main(["devices", "list", "--json"]) == 0
    doc = {d["device_id"]: d["health"] for d in json.loads(capsys.readouterr().out)}
    assert doc["OK-1"]["state"] == "ok"
    assert doc["OK-1"]["problems"] == ["low battery 12%", "weak signal -111 dBm"]
    assert doc["NEVER-1"]["last_seen"] is None
    assert main(["devices", "show", "OK-1"]) == 0
    assert "; low battery 12%; weak signal -111 dBm" in capsys.readouterr().out


def test_add_and_rotate_say_how_the_broker_learns_the_secret(
        conn: psycopg.Connection, capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "add", "RG-NEW", "--kind", "rain_gauge"]) == 0
    out = capsys.readouterr().out
    assert "secret for RG-NEW (shown once" in out
    assert "next, so the broker accepts it: geowarn devices broker-config DIR --listen" in out
    assert main(["devices", "rotate-secret", "RG-NEW"]) == 0
    assert "the old secret works until then" in capsys.readouterr().out


def test_readme_documents_the_csv_format() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Registering devices from a CSV file"):]
    for column in COLUMNS:
        assert f"`{column}`" in section
    for kind in load_catalogue().kinds:
        assert f"`{kind}`" in section
    assert "devices/examples/devices.csv" in section and "--secrets-format csv|json|env" in section


def test_no_secret_starts_with_a_dash() -> None:
    """`--password -x...` (ours, mosquitto_pub's) would take it for an option: one secret in
    64 would start with "-" otherwise."""
    made = [credentials.generate_secret() for _ in range(2000)]
    assert not [s for s in made if s.startswith("-")]
    assert len(set(made)) == 2000 and {len(s) for s in made} == {32}
