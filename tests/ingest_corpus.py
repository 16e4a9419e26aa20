"""A corpus of distinct malformed messages across both profiles, each with the reason the
gateway must give. Devices it expects: native crack meter CM-GOOD (active), native RG-OLD
(retired), national NAT-GOOD (active), national NAT-OLD (retired)."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta

from devices.messages import Reason

BadMessage = tuple[str, bytes, str]  # topic, payload, expected reason

NATIVE = "gw/v1/CM-GOOD/telemetry"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _native(readings: list[dict[str, object]], seq: int = 1, **extra: object) -> bytes:
    return json.dumps({"seq": seq, "readings": readings, **extra}).encode()


def _frame(body: bytes, ftype: int = 2, length: int | None = None) -> bytes:
    return struct.pack(">BH", ftype, len(body) if length is None else length) + body


def _dp(device: str, sensors: dict[str, object]) -> bytes:
    return _frame(json.dumps({device: sensors}).encode())


def bad_messages(now: datetime) -> list[BadMessage]:
    t = now - timedelta(minutes=30)
    ts = _iso(t)
    nts = t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ok = {"ts": ts, "channel": "opening", "value": 1.0}
    out: list[BadMessage] = []

    def native(payload: bytes, reason: str, topic: str = NATIVE) -> None:
        out.append((topic, payload, reason))

    def national(payload: bytes, reason: str, topic: str = "$dp") -> None:
        out.append((topic, payload, reason))

    # --- native: malformed JSON --------------------------------------------------------------
    for p in [b'{"seq": 1, "readings": [', b"{'seq': 1}", b'{"seq": 1,}', b"\xff\xfe\x00garbage",
              b'{"seq": 1, "readings": [{"ts": "unterminated}]}', b"{{}}", b"seq=1&value=2",
              b'{"seq": 1 "readings": []}', b"\x00\x01\x02\x03", b"<xml/>"]:
        native(p, Reason.MALFORMED_JSON)
    # --- native: schema violations -----------------------------------------------------------
    for p in [
        json.dumps({"readings": [ok]}).encode(),  # no seq
        json.dumps({"seq": -1, "readings": [ok]}).encode(),
        json.dumps({"seq": "7", "readings": [ok]}).encode(),
        json.dumps({"seq": 1.5, "readings": [ok]}).encode(),
        json.dumps({"seq": 2**33, "readings": [ok]}).encode(),
        json.dumps({"seq": 1}).encode(),  # no readings
        json.dumps({"seq": 1, "readings": ok}).encode(),  # not a list
        json.dumps({"seq": 1, "readings": []}).encode(),
        json.dumps({"seq": 1, "readings": [{"ts": ts, "value": 1.0}]}).encode(),
        json.dumps({"seq": 1, "readings": [{"channel": "opening", "value": 1.0}]}).encode(),
        json.dumps({"seq": 1, "readings": [{"ts": ts, "channel": "opening"}]}).encode(),
        json.dumps({"seq": 1, "readings": [{**ok, "value": "1.0"}]}).encode(),
        json.dumps({"seq": 1, "readings": [{**ok, "value": None}]}).encode(),
        json.dumps({"seq": 1, "readings": [{**ok, "value": True}]}).encode(),
        json.dumps({"seq": 1, "readings": [{**ok, "colour": "red"}]}).encode(),
        json.dumps({"seq": 1, "readings": [ok], "firmware_mood": "happy"}).encode(),
        json.dumps([ok]).encode(),
        b"null",
        b"42",
        json.dumps({"seq": 1, "readings": [{**ok, "channel": 5}]}).encode(),
        json.dumps({"seq": 1, "readings": [ok] * 1001}).encode(),
    ]:
        native(p, Reason.SCHEMA_VIOLATION)
    # --- native: device and topic ------------------------------------------------------------
    for i, dev in enumerate(["NOPE-1", "NOPE-2", "cm-good", "CM-GOOD-2", "X"]):
        native(_native([ok], seq=10 + i), Reason.UNKNOWN_DEVICE, f"gw/v1/{dev}/telemetry")
    native(_native([ok], seq=4), Reason.RETIRED_DEVICE, "gw/v1/RG-OLD/telemetry")
    native(_native([ok], seq=5), Reason.TOPIC_MISMATCH, "gw/v1/NAT-GOOD/telemetry")
    # --- native: per reading ------------------------------------------------------------------
    for i, ch in enumerate(["rain", "opening_mm", "OPENING", "disp_x", "temperature"]):
        native(_native([{**ok, "channel": ch}], seq=100 + i), Reason.UNKNOWN_CHANNEL)
    for i, unit in enumerate(["furlong", "MM", "mm/h", "inch", "km"]):
        native(_native([{**ok, "unit": unit}], seq=200 + i), Reason.UNKNOWN_UNIT)
    for i, token in enumerate([b"NaN", b"Infinity", b"-Infinity"]):
        native(b'{"seq": %d, "readings": [{"ts": "%s", "channel": "opening", "value": %s}]}'
               % (300 + i, ts.encode(), token), Reason.NOT_FINITE)
    for i, (value, unit) in enumerate([(6000.0, "mm"), (-1500.0, "mm"), (600.0, "cm"),
                                       (7.0, "m"), (1e12, "mm")]):
        native(_native([{**ok, "value": value, "unit": unit}], seq=400 + i),
               Reason.OUT_OF_RANGE)
    for i, bad_ts in enumerate(["yesterday", "2026-13-01T00:00:00Z", "", "12:00",
                                "2026-02-30T00:00:00Z"]):
        native(_native([{**ok, "ts": bad_ts}], seq=500 + i), Reason.BAD_TIMESTAMP)
    for i, ahead in enumerate([timedelta(hours=1), timedelta(days=2), timedelta(days=400)]):
        native(_native([{**ok, "ts": _iso(now + ahead)}], seq=600 + i),
               Reason.TIMESTAMP_FUTURE)
    for i, back in enumerate([timedelta(days=4000), timedelta(days=20000)]):
        native(_native([{**ok, "ts": _iso(now - back)}], seq=700 + i), Reason.TIMESTAMP_PAST)
    native(b'{"seq": 1, "readings": [' + b" " * (300 * 1024) + b"]}", Reason.PAYLOAD_TOO_LARGE)

    # --- national: frames ---------------------------------------------------------------------
    body = json.dumps({"NAT-GOOD": {"L1_LF_1": {nts: 1.0}}}).encode()
    national(_frame(body, length=len(body) + 5), Reason.MALFORMED_FRAME)
    national(_frame(body, length=len(body) - 3), Reason.MALFORMED_FRAME)
    national(_frame(body, length=0), Reason.MALFORMED_FRAME)
    for ftype in (3, 4, 9):
        national(_frame(body, ftype=ftype), Reason.MALFORMED_FRAME)
    national(b"\x02\x00", Reason.MALFORMED_FRAME)
    for p in [b'{"NAT-GOOD": {"L1_LF_1": {', _frame(b'{"NAT-GOOD": }'), b"{'NAT-GOOD': 1}",
              _frame(b"\xff\xfe not json")]:
        national(p, Reason.MALFORMED_JSON)
    national(json.dumps(["NAT-GOOD"]).encode(), Reason.MALFORMED_FRAME)  # not "{": a frame
    for p in [json.dumps({"NAT-GOOD": [1, 2]}).encode(),
              json.dumps({"NAT-GOOD": {"L1_LF_1": [1.0]}}).encode(),
              json.dumps({"NAT-GOOD": {}, "OTHER": {}}).encode(), json.dumps({}).encode()]:
        national(p, Reason.SCHEMA_VIOLATION)
    for dev in ["NAT-NOPE", "NAT-NOPE-2", "nat-good"]:
        national(_dp(dev, {"L1_LF_1": {nts: 1.0}}), Reason.UNKNOWN_DEVICE)
    national(_dp("NAT-OLD", {"L1_LF_1": {nts: 1.0}}), Reason.RETIRED_DEVICE)
    national(_dp("CM-GOOD", {"L1_LF_1": {nts: 1.0}}), Reason.TOPIC_MISMATCH)
    # What GeoWarn's Mosquitto plugin makes of $dp from user OTHER-ID.
    national(_dp("NAT-GOOD", {"L1_LF_1": {nts: 2.0}}), Reason.TOPIC_MISMATCH, "gw/nat/OTHER-ID/dp")
    for code in ["L1_XX_1", "L9_LF_1", "L2_LF_1", "L1_LF", "LF_1_L1"]:
        national(_dp("NAT-GOOD", {code: {nts: 1.0}}), Reason.UNKNOWN_SENSOR)
    national(_dp("NAT-GOOD", {"L1_GP_1": {nts: {"gpsTotalQ": 1.0}}}), Reason.UNKNOWN_CHANNEL)
    national(_dp("NAT-GOOD", {"L1_QJ_1": {nts: {"W": 1.0}}}), Reason.UNKNOWN_CHANNEL)
    national(_frame(b'{"NAT-GOOD": {"L1_LF_1": {"%s": NaN}}}' % nts.encode()),
             Reason.NOT_FINITE)
    national(_dp("NAT-GOOD", {"L1_QJ_1": {nts: {"angle": 95.0}}}), Reason.OUT_OF_RANGE)
    national(_dp("NAT-GOOD", {"L1_QJ_1": {nts: {"AZI": 361.0}}}), Reason.OUT_OF_RANGE)
    national(_dp("NAT-GOOD", {"L3_HS_1": {nts: 120.0}}), Reason.OUT_OF_RANGE)
    for key in ["not-a-time", "2026-99-99T00:00:00.000Z", "31/03/2026 04:05"]:
        national(_dp("NAT-GOOD", {"L1_LF_1": {key: 1.0}}), Reason.BAD_TIMESTAMP)
    national(_dp("NAT-GOOD", {"L1_LF_1": {_iso(now + timedelta(days=1)): 1.0}}),
             Reason.TIMESTAMP_FUTURE)
    national(_dp("NAT-GOOD", {"L1_LF_1": {_iso(now - timedelta(days=9000)): 1.0}}),
             Reason.TIMESTAMP_PAST)
    national(_dp("NAT-GOOD", {"L1_LF_1": {nts: "abc"}}), Reason.SCHEMA_VIOLATION)
    return out
