"""Focused tests of the payload decoders, the timestamp rules and command encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.decode import decode
from devices.messages import (
    Calibration,
    CommandReply,
    DecodeError,
    DeviceInfo,
    Quality,
    Reason,
    StatusReport,
    Telemetry,
)
from devices.national import frame
from devices.national_commands import encode_national_command, parse_national_reply
from devices.native import encode_native_command
from devices.timestamps import TimestampError, parse_timestamp
from geowarn.errors import InvalidInput

NOW = datetime(2026, 4, 1, tzinfo=UTC)
TS = "2026-03-31T04:00:00Z"
DEVICES = {
    "CM1": DeviceInfo("CM1", "native", "active", "crack_meter"),
    "CAL": DeviceInfo("CAL", "native", "active", "crack_meter",
                      {"opening": Calibration(scale=2.0, offset=-1.0)}),
    "AQ": DeviceInfo("AQ", "native", "active", "air_temperature"),
    "LOG": DeviceInfo("LOG", "national", "active"),
    "ONLYCM": DeviceInfo("ONLYCM", "national", "active", "crack_meter"),
}


def run(topic: str, payload: bytes | dict, **kw: object) -> object:
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    return decode(topic, payload, now=NOW, lookup=DEVICES.get, **kw)  # type: ignore[arg-type]


def telemetry(topic: str, payload: bytes | dict, **kw: object) -> Telemetry:
    got = run(topic, payload, **kw)
    assert isinstance(got, Telemetry)
    return got


def native(device: str, *readings: dict) -> Telemetry:
    return telemetry(f"gw/v1/{device}/telemetry", {"seq": 9, "readings": list(readings)})


# ---- timestamps -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-31T04:05:55Z", datetime(2026, 3, 31, 4, 5, 55, tzinfo=UTC)),
    ("2026-03-31T04:05:55.000Z", datetime(2026, 3, 31, 4, 5, 55, tzinfo=UTC)),
    ("2026-03-31T12:05:55+08:00", datetime(2026, 3, 31, 4, 5, 55, tzinfo=UTC)),
    ("2026-03-30T23:05:55-05:00", datetime(2026, 3, 31, 4, 5, 55, tzinfo=UTC)),
    ("2026-03-31 04:05:55.123456789z", datetime(2026, 3, 31, 4, 5, 55, 123456, tzinfo=UTC)),
    (1774929955000, datetime(2026, 3, 31, 4, 5, 55, tzinfo=UTC)),
])
def test_timestamp_forms(text: object, expected: datetime) -> None:
    got = parse_timestamp(text)
    assert got == expected and got.tzinfo == UTC


@pytest.mark.parametrize("bad", [
    "2026-03-31T04:05:55", "2026-02-30T00:00:00Z", "yesterday", 1774929955, True, 1.5e12, None,
])
def test_timestamp_refusals(bad: object) -> None:
    with pytest.raises(TimestampError) as err:
        parse_timestamp(bad)
    assert err.value.reason == Reason.BAD_TIMESTAMP


def test_timestamp_without_offset_says_how_to_fix() -> None:
    with pytest.raises(TimestampError, match="no UTC offset"):
        parse_timestamp("2026-03-31T04:05:55")


def test_epoch_digits_only_where_allowed() -> None:
    assert parse_timestamp("1774929955000", digits_are_epoch_ms=True) == parse_timestamp(
        1774929955000)
    with pytest.raises(TimestampError):
        parse_timestamp("1774929955000")


# ---- native telemetry -------------------------------------------------------------------

def test_unit_conversion_with_offset() -> None:
    t = native("AQ", {"ts": TS, "channel": "air_temp", "value": 300.0, "unit": "K"},
               {"ts": TS, "channel": "air_temp", "value": 50.0, "unit": "degF"})
    assert [round(r.value, 6) for r in t.readings] == [26.85, 10.0]


def test_calibration_applies_after_unit_conversion_and_before_range() -> None:
    t = native("CAL", {"ts": TS, "channel": "opening", "value": 1.0, "unit": "cm"})
    assert t.readings[0].value == 19.0  # (1 cm = 10 mm) * 2 - 1
    # 2600 mm is in range raw, but calibrated to 5199 mm it is not: the range is on the result.
    t = native("CAL", {"ts": TS, "channel": "opening", "value": 2600.0})
    assert t.readings == () and t.rejections[0].reason == Reason.OUT_OF_RANGE
    assert "after calibration" in t.rejections[0].detail


def test_partial_acceptance_keeps_good_readings_in_order() -> None:
    t = native("CM1",
               {"ts": TS, "channel": "opening", "value": 1.0},
               {"ts": TS, "channel": "opening", "value": 1.0, "unit": "ft"},
               {"ts": "2026-04-01T00:10:00Z", "channel": "opening", "value": 2.0},
               {"ts": "2026-03-31T05:00:00Z", "channel": "opening", "value": 3.0})
    assert [r.value for r in t.readings] == [1.0, 3.0]
    assert [(r.reason, r.channel) for r in t.rejections] == [
        (Reason.UNKNOWN_UNIT, "opening"), (Reason.TIMESTAMP_FUTURE, "opening")]
    assert "'ft'" in t.rejections[0].detail and "cm" in t.rejections[0].detail


def test_clock_window_is_configurable() -> None:
    payload = {"seq": 1, "readings": [{"ts": "2026-04-01T00:10:00Z", "channel": "opening",
                                       "value": 1.0}]}
    assert telemetry("gw/v1/CM1/telemetry", payload).readings == ()
    assert len(telemetry("gw/v1/CM1/telemetry", payload, max_clock_skew_s=900).readings) == 1
    old = {"seq": 1, "readings": [{"ts": "2026-03-01T00:00:00Z", "channel": "opening",
                                   "value": 1.0}]}
    assert telemetry("gw/v1/CM1/telemetry", old, max_backlog_days=7).rejections[0].reason == (
        Reason.TIMESTAMP_PAST)


def test_schema_violation_names_the_field_path() -> None:
    with pytest.raises(DecodeError) as err:
        run("gw/v1/CM1/telemetry", {"seq": 1, "readings": [
            {"ts": TS, "channel": "opening", "value": 1}, {"ts": TS, "channel": "opening"}]})
    assert err.value.reason == Reason.SCHEMA_VIOLATION
    assert err.value.detail.startswith("$.readings[1]") and "'value'" in err.value.detail
    assert err.value.device_id == "CM1"


def test_nan_is_refused_per_reading_not_parsed_silently() -> None:
    payload = (b'{"seq": 1, "readings": [{"ts": "2026-03-31T04:00:00Z", "channel": "opening",'
               b' "value": -Infinity}]}')
    t = telemetry("gw/v1/CM1/telemetry", payload)
    assert t.readings == () and t.rejections[0].reason == Reason.NOT_FINITE


def test_whole_message_refusals() -> None:
    big = json.dumps({"seq": 1, "readings": [{"ts": TS, "channel": "opening", "value": 1}]})
    with pytest.raises(DecodeError) as err:
        run("gw/v1/CM1/telemetry", big.encode(), max_payload=10)
    assert err.value.reason == Reason.PAYLOAD_TOO_LARGE
    for topic, reason in [("gw/v1/CM1/cmd/abc", Reason.UNKNOWN_TOPIC),
                          ("gw/v1/bad id/telemetry", Reason.UNKNOWN_TOPIC),
                          ("other/topic", Reason.UNKNOWN_TOPIC),
                          ("gw/v1/GHOST/telemetry", Reason.UNKNOWN_DEVICE),
                          ("gw/v1/LOG/telemetry", Reason.TOPIC_MISMATCH)]:
        with pytest.raises(DecodeError) as err:
            run(topic, big.encode())
        assert err.value.reason == reason, topic
    with pytest.raises(DecodeError) as err:
        run("gw/v1/CM1/telemetry", b"\xff\xfe{}")
    assert err.value.reason == Reason.MALFORMED_JSON and "UTF-8" in err.value.detail


def test_native_status_window_and_fields() -> None:
    got = run("gw/v1/CM1/status", {"ts": "2026-03-31T12:00:00+08:00", "battery_pct": 50})
    assert isinstance(got, StatusReport)
    assert got.ts == datetime(2026, 3, 31, 4, tzinfo=UTC) and got.battery_pct == 50.0
    with pytest.raises(DecodeError) as err:
        run("gw/v1/CM1/status", {"ts": "2026-04-02T00:00:00Z"})
    assert err.value.reason == Reason.TIMESTAMP_FUTURE


# ---- national frames --------------------------------------------------------------------

def dp(doc: dict, frame_type: int | None = 2, topic: str = "$dp") -> object:
    body = json.dumps(doc).encode()
    return run(topic, body if frame_type is None else frame(body, frame_type))


def test_header_and_bare_json_decode_alike() -> None:
    doc = {"LOG": {"L1_LF_1": {"2026-03-31T04:05:55.000Z": {"value": 0.5}}}}
    with_header, bare = dp(doc, 2), dp(doc, None)
    assert isinstance(with_header, Telemetry) and isinstance(bare, Telemetry)
    assert with_header.readings == bare.readings
    assert with_header.readings[0].channel == "L1_LF_1.opening"


def test_type1_values_are_stamped_with_receive_time() -> None:
    t = dp({"LOG": {"L1_LF_1": 3.5, "L1_QJ_1": {"X": 1.0, "Y": 2.0}}}, 1)
    assert isinstance(t, Telemetry)
    assert {(r.channel, r.ts, r.value) for r in t.readings} == {
        ("L1_LF_1.opening", NOW, 3.5), ("L1_QJ_1.tilt_x", NOW, 1.0),
        ("L1_QJ_1.tilt_y", NOW, 2.0)}


def test_type2_requires_timestamp_keys() -> None:
    t = dp({"LOG": {"L1_LF_1": 3.5}}, 2)
    assert isinstance(t, Telemetry) and t.readings == ()
    assert t.rejections[0].reason == Reason.BAD_TIMESTAMP


def test_comma_joined_values_fill_fields_in_catalogue_order() -> None:
    t = dp({"LOG": {"L1_QJ_1": {"2026-03-31T04:00:00Z": "0.5,-0.25,0.1,45,180"},
                    "L3_DX_1": {"2026-03-31T04:00:00Z": "12.5"},
                    "L3_YL_1": {"2026-03-31T04:00:00Z": "1.5,200"}}})
    assert isinstance(t, Telemetry) and t.rejections == ()
    assert [(r.channel, r.value) for r in t.readings] == [
        ("L1_QJ_1.tilt_x", 0.5), ("L1_QJ_1.tilt_y", -0.25), ("L1_QJ_1.tilt_z", 0.1),
        ("L1_QJ_1.angle", 45.0), ("L1_QJ_1.azimuth", 180.0), ("L3_DX_1.level", 12.5),
        ("L3_YL_1.rain", 1.5), ("L3_YL_1.rain_total", 200.0)]


def test_class_disambiguates_yl() -> None:
    t = dp({"LOG": {"L3_YL_1": {"2026-03-31T04:00:00Z": 2.0},
                    "L2_YL_1": {"2026-03-31T04:00:00Z": 2.0}}})
    assert isinstance(t, Telemetry)
    assert [(r.channel, r.kind) for r in t.readings] == [("L3_YL_1.rain", "rain_gauge")]
    assert [(r.reason, r.channel) for r in t.rejections] == [(Reason.UNKNOWN_SENSOR, "L2_YL_1")]


def test_national_device_with_a_kind_accepts_only_that_kind() -> None:
    t = dp({"ONLYCM": {"L1_LF_1": {TS: 1.0}, "L3_YL_1": {TS: 1.0}}})
    assert isinstance(t, Telemetry)
    assert [r.channel for r in t.readings] == ["L1_LF_1.opening"]
    assert t.rejections[0].reason == Reason.UNKNOWN_SENSOR


def test_sensor_state_sets_quality() -> None:
    stamp = "2026-03-31T04:00:00Z"
    t = dp({"LOG": {
        "L1_LF_1": {stamp: 1.0}, "L1_LF_2": {stamp: 1.0}, "L1_LF_3": {stamp: 1.0},
        "L1_LF_4": {stamp: 1.0},
        "S1_ZT_1": {stamp: {"sensor_state": {"L1_LF_1": 0, "L1_LF_2": -1, "L1_LF_3": "-2",
                                             "L1_LF_4": -3}}}}})
    assert isinstance(t, Telemetry) and t.status is not None
    assert [r.quality for r in t.readings] == [
        Quality.RELIABLE, Quality.UNRELIABLE, Quality.UNRELIABLE, Quality.DOUBTFUL]


def test_status_group_parsing() -> None:
    got = dp({"LOG": {"S1_ZT_1": {
        "2026-03-31T03:00:00Z": {"battery_volt": 12.0},
        "2026-03-31T04:00:00Z": {"battery_volt": "12.4", "battery_dump_energy": 80,
                                 "ext_power_volt": 0, "solar_volt": 17.9, "temp": -3.5,
                                 "signal_NB": -101, "sw_version": 217, "lon": 103.9,
                                 "sensor_state": {"L1_LF_1": 0}}}}})
    assert isinstance(got, StatusReport)
    assert got.ts == datetime(2026, 3, 31, 4, tzinfo=UTC)  # the latest of the two
    assert (got.battery_v, got.battery_pct, got.supply_v, got.temperature_c, got.signal_dbm,
            got.firmware) == (12.4, 80.0, 0.0, -3.5, -101.0, "217")
    assert got.extra == {"solar_volt": 17.9, "signal_NB": -101.0, "lon": 103.9}


def test_status_only_frame_with_bad_number_is_refused() -> None:
    with pytest.raises(DecodeError) as err:
        dp({"LOG": {"S1_ZT_1": {"battery_volt": "high"}}}, 1)
    assert err.value.reason == Reason.SCHEMA_VIOLATION


def test_bound_topic_must_match_inner_id() -> None:
    assert isinstance(dp({"LOG": {"L1_LF_1": 1.0}}, 1, "$dp/LOG"), Telemetry)
    with pytest.raises(DecodeError) as err:
        dp({"LOG": {"L1_LF_1": 1.0}}, 1, "$dp/ONLYCM")
    assert err.value.reason == Reason.TOPIC_MISMATCH and err.value.device_id == "ONLYCM"


def test_header_checks() -> None:
    body = json.dumps({"LOG": {"L1_LF_1": 1.0}}).encode()
    cases = {b"\x01\x00": "shorter", bytes([1, 0, len(body) - 1]) + body: "declares",
             bytes([3, 0, len(body)]) + body: "type 3", bytes([0x7A, 0, 0]): "unknown frame"}
    for payload, words in cases.items():
        with pytest.raises(DecodeError) as err:
            run("$dp", payload)
        assert err.value.reason == Reason.MALFORMED_FRAME and words in err.value.detail


# ---- commands and replies ---------------------------------------------------------------

def test_national_command_encoding() -> None:
    assert encode_national_command(
        "DEV01", "42", "set_interval",
        {"sample_s": 300, "upload_s": 900, "sensor_id": "L3_YL_1"}, apikey="k") == (
        "$creq/DEV01/42",
        b"$cmd=setsensortime&sensor_id=L3_YL_1&sample_intv=300&upload_intv=900&apikey=k"
        b"&msgid=42")
    assert encode_national_command("DEV01", "a", "high_frequency", {"on": True})[1] == (
        b"$cmd=setworkmode&mode=2&msgid=a")
    assert encode_national_command("DEV01", "b", "high_frequency", {"on": False})[1] == (
        b"$cmd=setworkmode&mode=0&msgid=b")
    assert encode_national_command("DEV01", "c", "reboot", {})[1] == b"$cmd=reboot&msgid=c"
    server = datetime(2026, 3, 31, 12, 0, 1, 500000, tzinfo=timezone(timedelta(hours=8)))
    assert encode_national_command("DEV01", "d", "sync_time", {"server_time": server})[1] == (
        b"$cmd=settime&server=2026-03-31T04:00:01.500Z&msgid=d")


def test_native_command_encoding() -> None:
    topic, payload = encode_native_command(
        "CM1", "cmd-1", "set_interval", {"sample_s": 60, "upload_s": 600}, issued_at=NOW,
        expires_at=NOW + timedelta(hours=1))
    assert topic == "gw/v1/CM1/cmd/cmd-1"
    assert json.loads(payload) == {
        "id": "cmd-1", "name": "set_interval", "params": {"sample_s": 60, "upload_s": 600},
        "issued_at": "2026-04-01T00:00:00.000Z", "expires_at": "2026-04-01T01:00:00.000Z"}


@pytest.mark.parametrize(("name", "params", "words"), [
    ("format_disk", {}, "unknown command"),
    ("set_interval", {"sample_s": 60}, "upload_s"),
    ("set_interval", {"sample_s": 600, "upload_s": 60}, "shorter"),
    ("set_interval", {"sample_s": 0, "upload_s": 60}, "sample_s"),
    ("set_interval", {"sample_s": True, "upload_s": 60}, "sample_s"),
    ("high_frequency", {"on": "yes"}, "'on'"),
    ("reboot", {"now": True}, "unknown parameter"),
    ("sync_time", {"server_time": "2026-03-31T04:00:00"}, "server_time"),
])
def test_bad_commands_are_refused_clearly(name: str, params: dict, words: str) -> None:
    for encode in (lambda: encode_national_command("D1", "c1", name, params),
                   lambda: encode_native_command("D1", "c1", name, params, issued_at=NOW)):
        with pytest.raises(InvalidInput, match=words):
            encode()


def test_bad_ids_in_commands() -> None:
    with pytest.raises(InvalidInput, match="command id"):
        encode_national_command("D1", "a/b", "reboot", {})
    with pytest.raises(InvalidInput, match="device id"):
        encode_native_command("D 1", "c", "reboot", {}, issued_at=NOW)


def test_national_replies() -> None:
    r = parse_national_reply("$dr", b"$cmd=setsensortime&result=succ&apikey=s3cret&msgid=42")
    assert r == CommandReply(command_id="42", ok=True, device_id=None,
                             detail="setsensortime: succ", data={})
    r = parse_national_reply("$crsp/7", b"$cmd=getstatus&state={\"a\":1,\"b\":\"x&y\"}")
    assert r.command_id == "7" and r.ok and r.data == {"state": {"a": 1, "b": "x&y"}}
    r = parse_national_reply("$dr/DEV01", b"$cmd=reboot&result=fail&msgid=9")
    assert (r.ok, r.device_id) == (False, "DEV01")
    for topic, payload, reason in [
        ("$dr", b"$cmd=reboot&result=succ", Reason.MALFORMED_FRAME),
        ("$dr", b"$cmd=reboot&garbage&msgid=1", Reason.MALFORMED_FRAME),
        ("$crsp/7", b"$cmd=reboot&msgid=8", Reason.TOPIC_MISMATCH),
        ("$crsp/", b"$cmd=reboot&msgid=8", Reason.UNKNOWN_TOPIC),
    ]:
        with pytest.raises(DecodeError) as err:
            parse_national_reply(topic, payload)
        assert err.value.reason == reason, payload


def test_reply_from_bound_topic_checks_registry() -> None:
    with pytest.raises(DecodeError) as err:
        run("$dr/GHOST", b"$cmd=reboot&result=succ&msgid=1")
    assert err.value.reason == Reason.UNKNOWN_DEVICE


def test_decode_requires_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode("$dp", b"{}", now=datetime(2026, 4, 1), lookup=DEVICES.get)


def test_fast_schema_validators_agree_with_the_reference() -> None:
    """The compiled validators (hot path) accept exactly what jsonschema accepts, on every
    contract example and every document of the ingest bad-input corpus, for every schema."""
    import fastjsonschema

    from devices.canonical import _fast_validators, _validators
    from devices.messages import DecodeError as _DecodeError
    from devices.strict_json import loads_strict
    from geowarn.settings import get_settings
    from tests.ingest_corpus import bad_messages

    schema_dir = get_settings().contracts_dir / "schemas"
    fast, full = _fast_validators(schema_dir), _validators(schema_dir)
    payloads = [p.read_bytes() for p in
                (get_settings().contracts_dir / "examples").rglob("*.json")
                if p.name != "index.json"]
    payloads += [p for _, p, _ in bad_messages(datetime.now(UTC))]
    docs = []
    for payload in payloads:
        body = payload[3:] if payload[:1] in (b"\x01", b"\x02") else payload
        try:
            docs.append(loads_strict(body))
        except _DecodeError:
            continue
    assert len(docs) > 80
    checked = 0
    for name, reference in full.items():
        for doc in docs:
            try:
                fast[name](doc)
                fast_ok = True
            except fastjsonschema.JsonSchemaException:
                fast_ok = False
            assert fast_ok == reference.is_valid(doc), (name, doc)
            checked += 1
    assert checked == len(docs) * len(full)
