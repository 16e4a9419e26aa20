"""`geowarn replay`: recorded series read as written, turned into the device's own messages,
published through the real broker and gateway, and reported from the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from devices.catalogue import load_catalogue
from devices.decode import decode
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.errors import InvalidInput
from ingest.gateway import Gateway
from simulators.recorded import SeriesMapping, mapping_from_dict, read_series, tz_of
from simulators.replay import StoreChecks, replay_messages, store_checks
from tests.fixtures.broker import Broker
from tests.fixtures.services import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
LAMOSANO_RAIN = SeriesMapping(channels={"rain": "rain"}, time_format="%d/%m/%Y %H:%M",
                              timezone="+01:00")


def shared_data(name: str) -> Path:
    """A file of ../shared/data beside the repository root (a failure in CI if missing)."""
    path = REPO.parent / "shared" / "data" / name
    if not path.exists():
        skip_or_fail(f"{path} is missing: the shared folder lies beside the repository")
    return path


def test_lamosano_rain_reads_as_published() -> None:
    series = read_series(shared_data("lamosano_rain_hourly.csv"), LAMOSANO_RAIN)
    assert len(series.times) == 50497 and series.readings == 50497
    assert series.times[0] == datetime(2015, 3, 29, 23, tzinfo=UTC)  # 00:00 at +01:00
    # PROVENANCE.md: the Vaia storm gave 45 / 135 / 166 mm on 27-29 Oct 2018 (local days).
    local = tz_of("+01:00")
    days: dict[str, float] = {}
    for ts, v in zip(series.times, series.values["rain"], strict=True):
        day = ts.astimezone(local).date().isoformat()
        if "2018-10-27" <= day <= "2018-10-29":
            days[day] = days.get(day, 0.0) + float(v)
    assert [round(days[d]) for d in sorted(days)] == [45, 135, 166]
    assert float(np.max(series.values["rain"])) == pytest.approx(52.0, abs=0.5)


def test_sitka_daily_totals_stamped_at_local_day_end() -> None:
    mapping = mapping_from_dict({"time": "day", "timezone": "America/Sitka", "label": "start",
                                 "channels": {"precip_mm_day": "rain"}})
    series = read_series(shared_data("sitka_daily_precip_landslide_days.csv"), mapping)
    # One NA day is skipped, not stored as zero.
    assert series.skipped_rows == 1 and len(series.times) == 6606
    by_time = dict(zip(series.times, series.values["rain"], strict=True))
    # The 2015-08-18 total closes at local midnight, AKDT (-08:00) in August...
    aug = datetime(2015, 8, 19, 8, tzinfo=UTC)
    assert aug in by_time and by_time[aug] > 50
    # ... and at -09:00 in winter: wall-clock arithmetic across daylight saving.
    assert datetime(2002, 11, 13, 9, tzinfo=UTC) == series.times[0]


def test_lamosano_displacement_dates() -> None:
    series = read_series(shared_data("lamosano_p5_displacement_11day.csv"),
                         SeriesMapping(channels={"p5": "disp_x"}))
    assert len(series.times) == 162 and series.values["disp_x"][0] == 0.0
    assert series.times[1] - series.times[0] == timedelta(days=11)


@pytest.mark.parametrize(("text", "mapping", "message"), [
    ("date,rain\n2026-01-01T00:00Z,1\n2025-12-31T23:00Z,2\n", {"channels": {"rain": "rain"}},
     "line 3: time 2025-12-31T23:00:00+00:00 is not after"),
    ("date,rain\n2026-01-01T00:00Z,1\nyesterday,2\n", {"channels": {"rain": "rain"}},
     "line 3: time 'yesterday'"),
    ("date,rain\n2026-01-01T00:00Z,１\n", {"channels": {"rain": "rain"}},
     "line 2: rain = '１' is not a number"),
    ("date,rain\n2026-01-01T00:00Z,1\n", {"channels": {"rian": "rain"}}, "no column 'rian'"),
    ("when,rain\n2026-01-01T00:00Z,1\n", {"channels": {"rain": "rain"}}, "no time column"),
    ("date,rain\n2026-01-01T00:00Z,1\n", {}, "say which columns"),
    ("date,rain\n2026-01-01T00:00Z,inf\n", {"channels": {"rain": "rain"}}, "not a number"),
])
def test_bad_recordings_name_line_and_column(tmp_path: Path, text: str,
                                             mapping: dict[str, object], message: str) -> None:
    path = tmp_path / "rec.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("+", r"\+")):
        read_series(path, mapping_from_dict(mapping))


def test_bad_mappings_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown key"):
        mapping_from_dict({"channel": {"rain": "rain"}})
    with pytest.raises(InvalidInput, match="unknown time zone"):
        mapping_from_dict({"channels": {"a": "b"}, "timezone": "Mars/Olympus"})
    with pytest.raises(InvalidInput, match="label"):
        mapping_from_dict({"channels": {"a": "b"}, "label": "middle"})


def test_json_recording(tmp_path: Path) -> None:
    path = tmp_path / "rec.json"
    path.write_text(json.dumps({"rows": [
        {"ts": "2026-01-01T08:00:00+08:00", "level": 3.2},
        {"ts": "2026-01-01T08:05:00+08:00", "level": None},
        {"ts": "2026-01-01T08:10:00+08:00", "level": 3.4}]}))
    series = read_series(path, SeriesMapping(channels={"level": "level"}))
    assert series.times[0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert len(series.times) == 2 and series.skipped_rows == 1


@pytest.mark.parametrize("profile", ["native", "national"])
def test_messages_decode_as_the_device_sent_them(profile: str) -> None:
    catalogue = load_catalogue()
    kind = catalogue.kind("rain_gauge")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    times = tuple(t0 + timedelta(minutes=10 * i) for i in range(17))
    values = np.array([0.2 * i for i in range(17)])
    values[5] = np.nan
    from simulators.recorded import RecordedSeries
    series = RecordedSeries("mem", times, {"rain": values})
    messages = list(replay_messages(series, "RG-1", kind, profile,  # type: ignore[arg-type]
                                    readings_per_message=4))
    assert sum(m.readings for m in messages) == 16
    assert all(m.readings <= 4 for m in messages)
    assert [m.last_time for m in messages] == sorted(m.last_time for m in messages)
    if profile == "native":
        seqs = [json.loads(m.payload)["seq"] for m in messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert all(m.topic == "gw/v1/RG-1/telemetry" for m in messages)
    else:
        assert all(m.topic == "$dp" for m in messages)
    assert decode is not None  # the decoders' own tests cover the formats themselves


def _write_rain(tmp_path: Path, start: datetime, hours: int) -> Path:
    rng = np.random.default_rng(7)
    lines = ["time;rain_mm"]
    for h in range(hours):
        ts = start + timedelta(hours=h)
        lines.append(f"{ts:%d/%m/%Y %H:%M};{round(float(rng.gamma(0.5, 2.0)), 1)}")
    path = tmp_path / "gauge.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_through_broker_and_gateway_reports_from_the_store(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-REPLAY", kind="rain_gauge"))
    start_gateway(broker)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=40)
    path = _write_rain(tmp_path, start, 24 * 30)
    args = ["replay", str(path), "--device", "RG-REPLAY", "--channel", "rain_mm=rain",
            "--url", broker.url, "--readings-per-message", "50", "--wait", "30"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "published 720 readings, stored 720" in out
    assert "dead letters: none" in out
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT count(*), min(ts), max(ts), sum(value) FROM readings").fetchone()
    assert row is not None and row[0] == 720 and row[1] == start
    expected = read_series(path, SeriesMapping(channels={"rain_mm": "rain"}))
    assert row[3] == pytest.approx(float(expected.values["rain"].sum()))
    # The same recording again stores nothing twice, and the report still reads the store.
    assert main(args) == 0
    assert "stored 720" in capsys.readouterr().out
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM readings").fetchone() == (720,)


def test_replay_shift_to_now_and_refusals_reported(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-SHIFT", kind="rain_gauge"))
    start_gateway(broker, max_backlog_days=90.0)
    path = _write_rain(tmp_path, datetime(2015, 3, 30, tzinfo=UTC), 48)
    base = ["replay", str(path), "--device", "RG-SHIFT", "--channel", "rain_mm=rain",
            "--url", broker.url, "--wait", "5"]
    # Kept in 2015, a gateway with a 90-day backlog refuses every reading: said, not hidden.
    assert main(base) == 1
    captured = capsys.readouterr()
    assert "older than GEOWARN_MAX_BACKLOG_DAYS" in captured.err
    # Every reading refused, each named in the dead letters (one row a reading, at most 20
    # a message, then a summary row: see ingest/deadletters.py).
    assert "stored 0" in captured.out and "timestamp_past" in captured.out
    assert main([*base, "--shift-to-now"]) == 0
    assert "published 48 readings, stored 48" in capsys.readouterr().out
    with psycopg.connect(db_url) as c:
        newest = c.execute("SELECT max(ts) FROM readings").fetchone()
    assert newest is not None
    assert abs((datetime.now(UTC) - newest[0]).total_seconds()) < 120


def test_replay_refuses_unknown_channel_and_device(tmp_path: Path, conn: psycopg.Connection,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    add_device(conn, DeviceSpec(device_id="RG-CH", kind="rain_gauge"))
    path = _write_rain(tmp_path, datetime.now(UTC) - timedelta(days=1), 3)
    assert main(["replay", str(path), "--device", "RG-CH", "--channel", "rain_mm=opening",
                 "--url", "mqtt://127.0.0.1:1"]) == 2
    assert "opening" in capsys.readouterr().err
    assert main(["replay", str(path), "--device", "NOPE", "--channel", "rain_mm=rain",
                 "--url", "mqtt://127.0.0.1:1"]) == 2
    assert "not registered" in capsys.readouterr().err


# Sitka (Patton et al. 2023, NHESS 23:3261): daily totals only, so the 24 h window is the
# day's total. Thresholds from the 18-year record's own exceedance frequencies, the approach
# of data-sparse early warning: blue at the 99th percentile of daily totals (exceeded on ~4
# days a year), yellow at the 99.5th, orange at the 99.9th; no red without a site study.
SITKA_PERCENTILES = (99.0, 99.5, 99.9)
SITKA_LANDSLIDE_DAYS = ("2015-08-18", "2017-09-04", "2019-09-20", "2020-10-26", "2020-11-02")


def test_sitka_replay_warns_on_the_recorded_landslide_days(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data("sitka_daily_precip_landslide_days.csv")
    mapping = {"time": "day", "timezone": "America/Sitka", "label": "start",
               "channels": {"precip_mm_day": "rain"}}
    daily = read_series(path, mapping_from_dict(mapping)).values["rain"]
    blue, yellow, orange = (round(float(np.percentile(daily, p)), 1)
                            for p in SITKA_PERCENTILES)
    add_device(conn, DeviceSpec(device_id="RG-SITKA", kind="rain_gauge",
                                reporting_interval_s=86400))  # daily totals
    nan4 = [None] * 4
    table = [nan4, nan4, nan4, nan4, [blue, yellow, orange, None], nan4]
    assert main(["engine", "rules-set", "kind", "rain_gauge",
                 json.dumps({"rain_table_mm": table})]) == 0
    start_gateway(broker, max_backlog_days=20000.0)  # a throwaway store for 2002-2020
    mapping_file = path.parent.parent / "unused"  # the mapping is given as options below
    assert not mapping_file.exists()
    capsys.readouterr()
    window = ("2002-11-12T00:00-09:00", "2020-12-14T00:00-09:00")  # the whole record
    expected = read_series(path, mapping_from_dict(mapping)).between(
        datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1])).readings
    assert main(["replay", str(path), "--device", "RG-SITKA", "--time", "day",
                 "--tz", "America/Sitka", "--label", "start", "--channel", "precip_mm_day=rain",
                 "--from", window[0], "--to", window[1],
                 "--url", broker.url, "--readings-per-message", "1000", "--engine",
                 "--wait", "60"]) == 0
    out = capsys.readouterr().out
    assert f"published {expected} readings, stored {expected}" in out
    sitka = tz_of("America/Sitka")
    with psycopg.connect(db_url) as c:
        changes = c.execute(
            "SELECT e.data_time, e.level, e.previous_level FROM alert_events e JOIN alerts a "
            "USING (alert_id) WHERE a.hazard_kind = 'rainfall' AND e.kind <> 'resolved' "
            "ORDER BY e.data_time, e.event_id").fetchall()

    def level_at(day: str) -> int:
        """The warning level in force when the day's total came in (local midnight)."""
        closes = datetime.fromisoformat(day).replace(tzinfo=sitka) + timedelta(days=1)
        level = 0
        for t, lv, _ in changes:
            if t > closes:
                break
            level = lv
        return level

    levels = {day: level_at(day) for day in SITKA_LANDSLIDE_DAYS}
    assert all(lv >= 1 for lv in levels.values()), ((blue, yellow, orange), levels)
    # The thresholds are not "warn every day": a warning starts on at most ~1% of days.
    starts = [t for t, level, previous in changes if previous == 0 and level > 0]
    assert 5 <= len(starts) <= 0.011 * len(daily)


def test_lamosano_replay_in_data_time_raises_no_forecast(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], capsys: pytest.CaptureFixture[str]) -> None:
    """Nava et al. 2023: a slow, rain-driven creep (~20 mm/yr, steps after storms) with no
    failure. Nine months around the Vaia storm (Oct 2018: 166 mm in a day, an 8 mm step of
    p5) of hourly rain and the p5 point, merged in data time, through broker, gateway, store
    and engine: everything stored once, no failure forecast, no orange/red deformation
    warning. (The whole six years take minutes, not seconds: bench/replay_lamosano.py, figures
    in BENCHMARKS.md.)"""
    rain = shared_data("lamosano_rain_hourly.csv")
    creep = shared_data("lamosano_p5_displacement_11day.csv")
    # Registered with the intervals they really report at, or every gap between two samples
    # would be a silence alert.
    add_device(conn, DeviceSpec(device_id="RG-LAMO", kind="rain_gauge",
                                reporting_interval_s=3600))
    add_device(conn, DeviceSpec(device_id="GNSS-LAMO-P5", kind="gnss",
                                reporting_interval_s=11 * 86400))
    start_gateway(broker, max_backlog_days=20000.0)
    capsys.readouterr()
    assert main(["replay", str(rain), str(creep), "--device", "RG-LAMO",
                 "--device", "GNSS-LAMO-P5", "--channel", "rain=rain", "--channel", "p5=disp_x",
                 "--tz", "+01:00", "--from", "2018-06-01T00:00+01:00",
                 "--to", "2019-03-01T00:00+01:00", "--url", broker.url,
                 "--readings-per-message", "200", "--engine", "--progress", "--wait", "120"]) == 0
    captured = capsys.readouterr()
    hours = 273 * 24 + 1  # 2018-06-01 00:00 .. 2019-03-01 00:00 inclusive
    assert f"published {hours} readings, stored {hours}" in captured.out
    assert "published 25 readings, stored 25" in captured.out
    assert "replay:" in captured.err and "data 2018-" in captured.err  # the progress bar
    # Judged a week of data time a step (a first step at the first reading, 273 days after).
    assert "(40 steps of 168 h)" in captured.err and "engine:" in captured.err
    with psycopg.connect(db_url) as c:
        checks = store_checks(c)
    assert checks == StoreChecks(hours + 25, hours + 25, 0, 0)
