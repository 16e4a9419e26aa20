"""CSV import of many devices against a real PostgreSQL."""

from __future__ import annotations

import stat

import pytest

from devices import credentials
from devices.catalogue import load_catalogue
from devices.csv_import import (
    ImportRolledBack,
    decode,
    import_devices,
    parse_csv,
)
from devices.secrets_file import write_new
from geowarn.errors import InvalidInput

HEADER = "device_id,kind,profile,name,lon,lat,elevation_m,installed_on,hazard_id,site_id," \
         "reporting_interval_s"
KINDS = ("crack_meter", "rain_gauge", "gnss", "water_level")


def fleet_csv(n: int) -> list[str]:
    lines = [HEADER]
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        lines.append(f"X{i:04d},{kind},native,Device {i},{100 + i / 1000:.3f},{30 - i / 1000:.3f},"
                     f"{1200 + i},2026-0{1 + i % 9}-15,HZ{i % 37},,")
    return lines


def test_thousand_devices_with_three_bad_rows(conn):
    lines = fleet_csv(1000)
    lines[101] = lines[101].replace("crack_meter", "lava_meter")  # file line 102
    lines[500] = lines[500].replace(",2026-", ",2026-13-")  # bad date, file line 501
    lines[900] = lines[900].replace(",30-", ",95-").replace(",29.", ",95.")  # lat, line 901
    text = "\n".join(lines) + "\n"
    rows, bad = parse_csv(text)
    assert [(p.line, p.device_id) for p in bad] == [(102, "X0100"), (501, "X0499"),
                                                    (901, "X0899")]
    assert "unknown sensor kind 'lava_meter'" in bad[0].reasons[0]
    assert "installed_on" in bad[1].reasons[0] and "not a date" in bad[1].reasons[0]
    assert "lat 95.101 is out of range -90..90" in bad[2].reasons[0]
    assert str(bad[0]).startswith("line 102 (X0100): unknown sensor kind")

    report = import_devices(conn, rows, bad, actor="tester", source="fleet.csv")
    assert len(report.created) == 997 and not report.conflicts and len(report.bad_rows) == 3
    assert len(report.secrets) == 997
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (997,)
    cat = load_catalogue()
    n_channels = conn.execute("SELECT count(*) FROM channels").fetchone()[0]
    assert n_channels == sum(len(cat.kind(KINDS[i % 4]).channels)
                             for i in range(1000) if i not in (100, 499, 899))
    stored = conn.execute("SELECT secret_hash FROM device_credentials "
                          "WHERE device_id = 'X0007'").fetchone()[0]
    assert credentials.verify_secret(report.secrets["X0007"], stored)
    assert conn.execute("SELECT reporting_interval_s FROM devices WHERE device_id = 'X0002'"
                        ).fetchone() == (3600,)  # gnss default from the catalogue

    audit_before = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    rerun = import_devices(conn, *parse_csv(text))
    assert (len(rerun.created), len(rerun.unchanged), rerun.secrets) == (0, 997, {})
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == audit_before


def test_conflicts_are_reported_unless_update(conn):
    text = "\n".join(fleet_csv(3))
    import_devices(conn, *parse_csv(text))
    changed = text.replace("Device 1,", "Renamed,").replace("X0002,gnss", "X0002,rain_gauge")
    report = import_devices(conn, *parse_csv(changed))
    assert [(c.line, c.device_id) for c in report.conflicts] == [(3, "X0001"), (4, "X0002")]
    assert "name: 'Device 1' in the registry, 'Renamed' in the file" in report.conflicts[0].reasons
    dry = import_devices(conn, *parse_csv(changed), update=True, dry_run=True)
    assert dry.updated == ("X0001",)
    assert conn.execute("SELECT name FROM devices WHERE device_id = 'X0001'").fetchone() == \
        ("Device 1",)
    report = import_devices(conn, *parse_csv(changed), update=True)
    assert report.updated == ("X0001",) and report.conflicts[0].device_id == "X0002"
    assert conn.execute("SELECT name FROM devices WHERE device_id = 'X0001'").fetchone() == \
        ("Renamed",)


def test_database_error_rolls_back_everything(conn):
    conn.execute("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                    $$BEGIN RAISE EXCEPTION 'disk on fire'; END$$""")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON channels FOR EACH ROW "
                 "WHEN (NEW.device_id = 'X0040') EXECUTE FUNCTION refuse()")
    with pytest.raises(ImportRolledBack, match="disk on fire"):
        import_devices(conn, *parse_csv("\n".join(fleet_csv(50))))
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM device_credentials").fetchone() == (0,)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("X1,crack_meter\n", "unknown column(s) 'X1', 'crack_meter'"),
    ("device_id,kind,colour\n", "unknown column(s) 'colour'"),
    ("kind,name\n", "no device_id column"),
])
def test_header_problems(text, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_csv(text)


def test_row_level_problems_bom_and_national():
    data = ("\ufeffdevice_id,kind,profile,lon,lat\n"
            "N1,,national,,\n"
            "N2,,native,,\n"
            "N1,crack_meter,native,1,\n"
            "N3,crack_meter,native,1,2,3\n"
            "N4,crack_meter,native,abc,1\n"
            "\n"
            "N5,crack_meter,native,,\n").encode()
    rows, bad = parse_csv(decode(data))
    assert [r.spec.device_id for r in rows] == ["N1", "N5"]
    assert [(p.line, p.reasons[0]) for p in bad] == [
        (3, "a native device needs a sensor kind"),
        (4, "give both lon and lat, or neither"),
        (5, "6 fields where the header has 5"),
        (6, "lon 'abc' is not a number"),
    ]
    assert bad[1].reasons[-1] == "device id repeats line 2"
    with pytest.raises(InvalidInput, match="not UTF-8: byte 10"):
        decode(b"device_id\n\xff\n")


def test_secrets_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "secrets.csv"
    write_new(path, {"A": "s1", "B": "s2"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"device_id,secret\nA,s1\nB,s2\n"  # LF only, never CRLF
    with pytest.raises(InvalidInput, match="already exists"):
        write_new(path, {"C": "s3"})
    assert path.read_bytes() == b"device_id,secret\nA,s1\nB,s2\n"


def test_cli_import_writes_secrets_once_and_reports_lines(conn, tmp_path, capsys):
    from geowarn.cli import main

    lines = fleet_csv(20)
    lines[5] = lines[5].replace("crack_meter", "")  # file line 6: native without a kind
    src = tmp_path / "fleet.csv"
    src.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode())
    out_file = tmp_path / "secrets.csv"
    assert main(["devices", "import", str(src)]) == 2
    assert "--secrets-out" in capsys.readouterr().err
    assert main(["devices", "import", str(src), "--dry-run"]) == 1
    assert "would create 19" in capsys.readouterr().out
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)

    assert main(["devices", "import", str(src), "--secrets-out", str(out_file)]) == 1
    out = capsys.readouterr().out
    assert "created 19" in out and "bad row: line 6 (X0004): a native device needs" in out
    written = out_file.read_text().splitlines()
    assert len(written) == 20 and stat.S_IMODE(out_file.stat().st_mode) == 0o600
    dev, secret = written[1].split(",")
    assert credentials.check_device_secret(conn, dev, secret)
    assert secret not in out

    # The same command again: nothing new, so it succeeds and leaves the file as it was.
    before = out_file.read_bytes()
    assert main(["devices", "import", str(src), "--secrets-out", str(out_file)]) == 1  # bad row
    out = capsys.readouterr().out
    assert "created 0, updated 0, unchanged 19" in out
    assert f"no new devices, no secrets written; {out_file} left as it was" in out
    assert out_file.read_bytes() == before and secret not in out
    again = tmp_path / "again.csv"
    assert main(["devices", "import", str(src), "--secrets-out", str(again)]) == 1
    assert "created 0, updated 0, unchanged 19" in capsys.readouterr().out
    assert not again.exists()
