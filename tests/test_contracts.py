"""Every example in firmware-contracts/examples/index.json through the real decoder, the
generated catalogue.md, the schemas themselves, and `geowarn contracts` exit codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from devices.contracts_cli import catalogue_markdown
from devices.decode import decode
from devices.messages import (
    Calibration,
    CommandReply,
    DecodeError,
    DeviceInfo,
    Presence,
    Quality,
    StatusReport,
    Telemetry,
)
from devices.timestamps import parse_timestamp
from geowarn.cli import main as cli_main

CONTRACTS = Path(__file__).resolve().parent.parent / "firmware-contracts"
EXAMPLES = CONTRACTS / "examples"
INDEX = json.loads((EXAMPLES / "index.json").read_text(encoding="utf-8"))
NOW = parse_timestamp(INDEX["now"])


def _device(device_id: str) -> DeviceInfo | None:
    spec = INDEX["devices"].get(device_id)
    if spec is None:
        return None
    return DeviceInfo(
        device_id=device_id, profile=spec["profile"], status=spec["status"], kind=spec["kind"],
        calibration={k: Calibration(**v) for k, v in spec.get("calibration", {}).items()},
    )


def _decode(entry: dict[str, Any]) -> Any:
    payload = (EXAMPLES / entry["file"]).read_bytes()
    return decode(entry["topic"], payload, now=NOW, lookup=_device, **entry.get("options", {}))


def _readings(t: Telemetry) -> list[tuple[str, datetime, float, str]]:
    return [(r.channel, r.ts, r.value, r.quality.name.lower()) for r in t.readings]


def _expected_readings(rows: list[list[Any]]) -> list[tuple[str, datetime, float, str]]:
    return [(c, parse_timestamp(ts), float(v), q) for c, ts, v, q in rows]


def _assert_readings(got: Telemetry, rows: list[list[Any]]) -> None:
    expected = _expected_readings(rows)
    actual = _readings(got)
    assert [(c, ts, q) for c, ts, _, q in actual] == [(c, ts, q) for c, ts, _, q in expected]
    for (c, _, value, _), (_, _, want, _) in zip(actual, expected, strict=True):
        assert math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12), (c, value, want)


def _assert_status(got: StatusReport, want: dict[str, Any]) -> None:
    assert got.ts == parse_timestamp(want["ts"])
    for name in ("battery_pct", "battery_v", "supply_v", "signal_dbm", "temperature_c",
                 "firmware"):
        assert getattr(got, name) == want.get(name), name
    assert dict(got.sensor_state) == want.get("sensor_state", {})


VALID = [e for e in INDEX["examples"] if "reason" not in e["expect"]]
INVALID = [e for e in INDEX["examples"] if "reason" in e["expect"]]


def test_enough_examples_of_each_profile() -> None:
    for profile in ("native", "national"):
        assert sum(e["file"].startswith(profile) for e in VALID) >= 7
        assert sum(e["file"].startswith(profile) for e in INVALID) >= 12
    files = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*/*")
             if not p.name.endswith((".body.json", ".body.txt"))}
    assert files == {e["file"] for e in INDEX["examples"]}, "every example file is indexed"


@pytest.mark.parametrize("entry", VALID, ids=lambda e: e["file"])
def test_valid_example(entry: dict[str, Any]) -> None:
    got = _decode(entry)
    want = entry["expect"]
    if want["type"] == "telemetry":
        assert isinstance(got, Telemetry)
        assert got.rejections == (), [r.detail for r in got.rejections]
        assert got.seq == want["seq"]
        assert {r.device_id for r in got.readings} == {entry["device"]}
        _assert_readings(got, want["readings"])
        if "status" in want:
            assert got.status is not None
            _assert_status(got.status, want["status"])
        else:
            assert got.status is None
    elif want["type"] == "status":
        assert isinstance(got, StatusReport)
        _assert_status(got, want)
    elif want["type"] == "presence":
        assert isinstance(got, Presence)
        assert got.online is want["online"]
        assert got.ts == (parse_timestamp(want["ts"]) if want["ts"] else None)
    else:
        assert isinstance(got, CommandReply)
        assert (got.command_id, got.ok, got.device_id) == (
            want["command_id"], want["ok"], want["device_id"])
        if "data" in want:
            assert dict(got.data) == want["data"]


@pytest.mark.parametrize("entry", INVALID, ids=lambda e: e["file"])
def test_invalid_example(entry: dict[str, Any]) -> None:
    want = entry["expect"]
    try:
        got = _decode(entry)
    except DecodeError as exc:
        assert exc.reason == want["reason"], exc.detail
        assert not want.get("readings"), "expected the good readings to be kept"
        # A detail an operator can act on: a sentence, not a code or a traceback.
        assert len(exc.detail) > 15 and exc.reason not in exc.detail.split()
        return
    assert not want.get("whole"), "expected the whole message to be refused"
    assert isinstance(got, Telemetry), got
    assert {r.reason for r in got.rejections} == {want["reason"]}, got.rejections
    for r in got.rejections:
        assert len(r.detail) > 15
    _assert_readings(got, want.get("readings", []))


def test_binary_frames_match_their_index_entries() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "make_frames.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_catalogue_md_is_generated_from_catalogue_json() -> None:
    committed = (CONTRACTS / "catalogue.md").read_text(encoding="utf-8")
    assert committed == catalogue_markdown(), "run: geowarn contracts catalogue --markdown"


def test_schemas_are_valid_draft_2020_12() -> None:
    schemas = sorted((CONTRACTS / "schemas").glob("*.schema.json"))
    assert len(schemas) == 7
    for path in schemas:
        Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def _example(name: str) -> dict[str, Any]:
    return next(e for e in INDEX["examples"] if e["file"].endswith(name))


def _check(entry: dict[str, Any], *extra: str) -> list[str]:
    args = ["contracts", "check", str(EXAMPLES / entry["file"]), "--topic", entry["topic"],
            "--now", INDEX["now"], *extra]
    device = INDEX["devices"].get(entry["device"] or "")
    if device and device["kind"]:
        args += ["--kind", device["kind"]]
    return args


def test_cli_check_valid_native(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(_check(_example("telemetry-units.json"))) == 0
    out = capsys.readouterr().out
    assert "opening" in out and "12.5" in out and "13" in out


def test_cli_check_invalid_lists_every_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(_check(_example("nan-value.json"), "--json")) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert [r["reason"] for r in report["rejections"]] == ["not_finite"]
    assert [r["channel"] for r in report["readings"]] == ["opening"]


def test_cli_check_whole_message_rejection(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(_check(_example("header-length-mismatch.bin"))) == 1
    assert "malformed_frame" in capsys.readouterr().out


def test_cli_check_national_takes_device_from_payload(capsys: pytest.CaptureFixture[str]) -> None:
    entry = _example("dp-type2-sample.bin")
    args = ["contracts", "check", str(EXAMPLES / entry["file"]), "--profile", "national",
            "--now", INDEX["now"]]
    assert cli_main(args) == 0
    assert "L1_QJ_1.azimuth" in capsys.readouterr().out


def test_cli_check_native_telemetry_needs_a_kind(capsys: pytest.CaptureFixture[str]) -> None:
    entry = _example("telemetry-single.json")
    args = ["contracts", "check", str(EXAMPLES / entry["file"]), "--now", INDEX["now"]]
    assert cli_main(args) == 2
    assert "--kind" in capsys.readouterr().err


def test_cli_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["contracts", "check", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_cli_catalogue_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["contracts", "catalogue", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "crack_meter" in {k["kind"] for k in doc["kinds"]}


def test_quality_names_used_in_index_exist() -> None:
    names = {q.name.lower() for q in Quality}
    for entry in INDEX["examples"]:
        for row in entry["expect"].get("readings", []):
            assert row[3] in names
