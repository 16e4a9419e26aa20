"""`geowarn replay --compare-rules FILE`: the Sitka daily record (Patton et al. 2023) judged in
memory under the rules in force and under a stricter rule set, per target, in data time;
nothing published, stored or raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from simulators.compare_rules import alerts_of
from simulators.recorded import mapping_from_dict, read_series, tz_of
from tests.test_replay import SITKA_LANDSLIDE_DAYS, SITKA_PERCENTILES, shared_data

SITKA_MAPPING = {"time": "day", "timezone": "America/Sitka", "label": "start",
                 "channels": {"precip_mm_day": "rain"}}
NAN4: list[float | None] = [None] * 4
# Three years of the record (two of its landslide days): each rule set is judged in memory,
# sample by sample, and CI time is shared.
WINDOW = ("2015-01-01", "2017-12-31")


def _table(blue: float, yellow: float, orange: float) -> list[list[float | None]]:
    return [NAN4, NAN4, NAN4, NAN4, [blue, yellow, orange, None], NAN4]  # the 24 h row


def test_compare_rules_on_the_sitka_record(conn: psycopg.Connection, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data("sitka_daily_precip_landslide_days.csv")
    daily = read_series(path, mapping_from_dict(SITKA_MAPPING)).values["rain"]
    blue, yellow, orange = (round(float(np.percentile(daily, p)), 1)
                            for p in SITKA_PERCENTILES)
    add_device(conn, DeviceSpec(device_id="RG-SITKA", kind="rain_gauge", hazard_id="SITKA",
                                reporting_interval_s=86400))
    # In force: the record's own 99 / 99.5 / 99.9th percentiles (tests/test_replay.py).
    assert main(["engine", "rules-set", "kind", "rain_gauge",
                 json.dumps({"rain_table_mm": _table(blue, yellow, orange)})]) == 0
    # Compared: blue only from the 99.9th percentile on, yellow at 120 mm, orange at 150 mm.
    stricter = tmp_path / "stricter.json"
    stricter.write_text(json.dumps([{"scope": "kind", "scope_id": "rain_gauge",
                                     "params": {"rain_table_mm": _table(orange, 120, 150)}}]))
    capsys.readouterr()
    args = ["replay", str(path), "--device", "RG-SITKA", "--time", "day", "--tz",
            "America/Sitka", "--label", "start", "--channel", "precip_mm_day=rain",
            "--from", WINDOW[0] + "T00:00-09:00", "--to", WINDOW[1] + "T00:00-09:00",
            "--compare-rules", str(stricter)]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rules"] == {"current": "engine_rules", "compared": "stricter.json"}
    sitka = out["targets"]["hazard:SITKA"]
    current = [a for a in sitka["current"] if a["hazard_kind"] == "rainfall"]
    other = [a for a in sitka["compared"] if a["hazard_kind"] == "rainfall"]
    # Under the rules in force every recorded landslide day is at a warning level.
    sitka_tz = tz_of("America/Sitka")
    days = [d for d in SITKA_LANDSLIDE_DAYS if WINDOW[0] <= d <= WINDOW[1]]
    assert len(days) == 2
    for day in days:
        closes = datetime.fromisoformat(day).replace(tzinfo=sitka_tz) + timedelta(days=1)
        assert _level_at(current, closes) >= 1, day
    # The stricter set raises fewer alerts, each while the current rules also warned: a
    # stricter table never warns where the looser did not.
    assert 0 < len(other) < len(current)
    for a in other:
        assert _level_at(current, datetime.fromisoformat(a["opened"])) >= 1, a
    assert max(a["peak_level"] for a in other) >= 1
    # Nothing was published, stored or raised.
    assert conn.execute("SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM alerts)"
                        ).fetchone() == (0, 0)
    # The table form names each rule set per target.
    assert main(args) == 0
    table = capsys.readouterr()
    assert "hazard:SITKA" in table.out and "compared" in table.out
    assert f"{len(current)} alert(s) under the current rules" in table.out
    assert "nothing published or stored" in table.err


def _level_at(alerts: list[dict], when: datetime) -> int:
    """The level in force at `when` (the last change at or before it) across `alerts`."""
    level = 0
    changes = sorted((datetime.fromisoformat(t), lv) for a in alerts for t, lv in a["changes"])
    for t, lv in changes:
        if t > when:
            break
        level = lv
    return level


def test_compare_rules_file_is_checked(conn: psycopg.Connection, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-X", kind="rain_gauge"))
    rec = tmp_path / "rec.csv"
    rec.write_text("time,rain\n2026-01-01T00:00Z,1\n2026-01-01T01:00Z,2\n")
    base = ["replay", str(rec), "--device", "RG-X", "--channel", "rain=rain"]
    bad = tmp_path / "bad.json"
    for text, message in ((json.dumps({"scope": "kind"}), "expected a JSON list"),
                          (json.dumps([{"scope": "planet", "scope_id": "x", "params": {}}]),
                           "scope must be one of"),
                          (json.dumps([{"scope": "kind", "scope_id": "rain_gauge",
                                        "params": {"warning_m": 3}}]), "bad.json[0]"),
                          ("{", "bad.json")):
        bad.write_text(text)
        assert main([*base, "--compare-rules", str(bad)]) == 2
        assert message in capsys.readouterr().err


def test_alerts_as_the_lifecycle_keeps_them() -> None:
    t0 = datetime(2026, 7, 1, tzinfo=UTC)

    def at(hours: float) -> datetime:
        return t0 + timedelta(hours=hours)

    changes = [("hazard:H", "rainfall", 1, at(0)), ("hazard:H", "rainfall", 3, at(2)),
               ("hazard:H", "rainfall", 0, at(5)), ("hazard:H", "rainfall", 2, at(8)),
               ("hazard:H", "rainfall", 0, at(9)), ("hazard:H", "rainfall", 1, at(20)),
               ("hazard:H", "rainfall", 0, at(21)), ("device:D", "maintenance", 0, at(1))]
    first, second = alerts_of(changes, quiet_s=6 * 3600)
    # Re-raised 3 h after clearing: the same alert; 11 h after: a new one.
    assert (first.opened, first.peak_level, first.peak_at) == (at(0), 3, at(2))
    assert first.cleared == at(9) and first.resolved == at(15)
    assert (second.opened, second.peak_level, second.cleared) == (at(20), 1, at(21))
    assert second.resolved is None
