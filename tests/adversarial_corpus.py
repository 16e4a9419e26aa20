"""An adversarial corpus: 200+ distinct hostile or broken messages over both profiles, as an
attacker or broken firmware would send them under a device's own credentials, each with the
dead-letter reasons the gateway must give and the good readings it must still store.

Classes: timestamps in every odd form (years 0001/9999 with offsets, no offset, non-ASCII
digits, impossible dates, seconds for milliseconds, as `sent_at`, as national keys, for presence
and status), huge integers, NaN/Infinity, lone surrogates, NUL and control characters in ids,
invisible and look-alike characters, duplicate keys, depth bombs, huge arrays, odd encodings
(BOM, UTF-16/32, Latin-1, CESU-8, gzip, empty), wrong JSON types, units, ranges, national frame
headers, status groups, kind enforcement, replies to unknown or foreign commands, secrets in
replies, topic length.

Devices it expects (see `DEVICES`): native CM-1 (crack meter), RG-1 (rain gauge); national
NAT-1 and NAT-2 (no kind: sensors learnt), NAT-RG (registered as a rain gauge). `commands`
maps a device to the id of an open command sent to it.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

from devices.messages import Reason as R

DEVICES: dict[str, tuple[str, str | None]] = {  # id -> (profile, kind)
    "CM-1": ("native", "crack_meter"),
    "RG-1": ("native", "rain_gauge"),
    "NAT-1": ("national", None),
    "NAT-2": ("national", None),
    "NAT-RG": ("national", "rain_gauge"),
}
MAX_PAYLOAD = 64 * 1024
GoodReading = tuple[str, str, datetime, float]  # device, channel key, ts, canonical value
Tick = Callable[[], datetime]


@dataclass(frozen=True)
class Case:
    device: str  # who publishes (its own credentials)
    topic: str  # as published
    payload: bytes
    reasons: tuple[str, ...]  # dead-letter reasons expected for this message (multiset)
    good: tuple[GoodReading, ...] = ()  # readings of this message that must be stored
    # Decided only by the writer (command replies): no offline decode check.
    writer_decides: bool = False


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _j(doc: object) -> bytes:
    # ASCII escapes, as an attacker would write them: "\ud800" is a lone surrogate only
    # once decoded (raw surrogate bytes are not UTF-8 and are refused before JSON).
    return json.dumps(doc).encode()


def _frame(body: bytes, ftype: int = 2, length: int | None = None) -> bytes:
    return struct.pack(">BH", ftype, len(body) if length is None else length) + body


def adversarial_cases(now: datetime, secrets: Mapping[str, str],
                      commands: Mapping[str, str]) -> list[Case]:
    ticks = count()

    def tick() -> datetime:  # a fresh moment per reading: every stored reading is distinct
        return (now - timedelta(hours=3) + timedelta(seconds=next(ticks))).replace(
            microsecond=0)

    out: list[Case] = []
    out += _native_telemetry(tick, now)
    out += _native_other(tick, now, secrets, commands)
    out += _national(tick, now, secrets, commands)
    return out


# --- native telemetry ------------------------------------------------------------------------
def _native_telemetry(tick: Tick, now: datetime) -> Iterator[Case]:
    topic = "gw/v1/CM-1/telemetry"
    seqs = count(10_000)

    def with_good(bad: dict[str, object], reasons: tuple[str, ...]) -> Case:
        ts = tick()
        good = {"ts": _iso(ts), "channel": "opening", "value": 1.5}
        doc = {"seq": next(seqs), "readings": [bad, good]}
        return Case("CM-1", topic, _j(doc), reasons, (("CM-1", "opening", ts, 1.5),))

    def whole(doc: object, reason: str, raw: bytes | None = None) -> Case:
        return Case("CM-1", topic, raw if raw is not None else _j(doc), (reason,))

    def reading(**over: object) -> dict[str, object]:
        return {"ts": _iso(tick()), "channel": "opening", "value": 2.0, **over}

    # Timestamps in odd forms: only that reading is refused.
    for bad_ts in ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00",
                   "0000-01-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
                   "2026-03-31T24:00:00Z", "2026-03-31T23:60:00Z", "2026-03-31T23:59:60Z",
                   "2026-03-31T12:00:00+25:00", "2026-03-31T12:00:00+08",
                   "2026-03-31T12:00:00+0800",
                   "2026-03-31", "12:00:00Z", "2026-03-31T12:00:00",
                   "２０２６-03-31T12:00:00Z", "٢٠٢٦-03-31T12:00:00Z", "2026-03-31T12:00:00Z\n",
                   " 2026-03-31T12:00:00Z", "2026/03/31 12:00:00Z", "1711886400", "now",
                   "NaN", "2026-03-31T12:00:00.Z", "2026-W13-1T12:00:00Z", "20260331T120000Z",
                   "2026-03-31T12:00:00ZZ", "+002026-03-31T12:00:00Z",
                   "2026-03-31T12:00:00.5+08:00" + "0" * 30,
                   "2026-03-31T12:00:00\u0000Z", "2026-03-31T12:00:00\ud800Z", ""]:
        yield with_good(reading(ts=bad_ts), (R.BAD_TIMESTAMP,))
    for bad_int in [1711886400, 17118864000000000, 0, 999_999_999_999]:  # not epoch ms
        yield with_good(reading(ts=bad_int), (R.BAD_TIMESTAMP,))
    yield with_good(reading(ts="2099-01-01T00:00:00+08:00"), (R.TIMESTAMP_FUTURE,))
    yield with_good(reading(ts=_iso(now + timedelta(hours=2))), (R.TIMESTAMP_FUTURE,))
    yield with_good(reading(ts=4_102_444_800_000), (R.TIMESTAMP_FUTURE,))  # 2100, epoch ms
    yield with_good(reading(ts="1971-01-01T00:00:00-05:00"), (R.TIMESTAMP_PAST,))
    yield with_good(reading(ts=1_000_000_000_000), (R.TIMESTAMP_PAST,))  # 2001, epoch ms
    # JSON does not tell 7 from 7.0: an integral seq is an integer. (Epoch ms are written as
    # integers: 1774929955250.0 is refused, a float is too easily seconds with a fraction.)
    moment = tick()
    yield Case("CM-1", topic, _j({"seq": float(next(seqs)), "readings": [
        {"ts": int(moment.timestamp() * 1000), "channel": "opening", "value": 7}]}),
        (), (("CM-1", "opening", moment, 7.0),))
    yield with_good(reading(ts=float(int(tick().timestamp() * 1000))), (R.BAD_TIMESTAMP,))
    # sent_at is checked as a timestamp too: a bad one refuses the message.
    for bad in ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "yesterday", 12,
                "2026-03-31T12:00:00"]:
        yield whole({"seq": next(seqs), "sent_at": bad, "readings": [reading()]},
                    R.BAD_TIMESTAMP)
    # Huge and non-finite numbers: only that reading.
    for raw in [b"1" * 401, b"9" * 5000, b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity"]:
        ts = tick()
        good_ts = tick()
        body = (b'{"seq": %d, "readings": [{"ts": "%s", "channel": "opening", "value": %s}, '
                b'{"ts": "%s", "channel": "opening", "value": 3.25}]}'
                % (next(seqs), _iso(ts).encode(), raw, _iso(good_ts).encode()))
        yield Case("CM-1", topic, body, (R.NOT_FINITE,), (("CM-1", "opening", good_ts, 3.25),))
    for raw in [b"1" * 401, b"-" + b"7" * 5000, b"1e400", b"18446744073709551616"]:
        yield whole(None, R.SCHEMA_VIOLATION, b'{"seq": %s, "readings": [%s]}'
                    % (raw, _j(reading())))
    yield whole(None, R.SCHEMA_VIOLATION,
                b'{"seq": 1, "readings": [{"ts": %s, "channel": "opening", "value": 1}]}'
                % (b"1" * 401))
    # Ids with NUL, surrogates, control, invisible and look-alike characters: that reading.
    for ch in ["opening\u0000", "\u0000", "\ud800", "open\udfffing", "opening\n", "\u202eopening",
               "open\u200bing", "ｏｐｅｎｉｎｇ", "оpening", "opening\u001b[31m", "OPENING",
               "opening ", "rain", "opening.value", "../opening", "opening\u0085"]:
        yield with_good(reading(channel=ch), (R.UNKNOWN_CHANNEL,))
    for unit in ["mm\u0000", "\ud800", "furlong", "MM", "m m", "ｍｍ", "mm\n", "inch"]:
        yield with_good(reading(unit=unit), (R.UNKNOWN_UNIT,))
    for value, unit in [(6000.0, "mm"), (-1500.0, "mm"), (600.0, "cm"), (7.0, "m"),
                        (1e300, "mm"), (-1e300, "m")]:
        yield with_good(reading(value=value, unit=unit), (R.OUT_OF_RANGE,))
    # Duplicate keys: the whole message (which value would the device have meant?).
    r1 = _j(reading())
    for raw in [b'{"seq": 1, "seq": 2, "readings": [%s]}' % r1,
                b'{"seq": 3, "readings": [%s], "readings": [%s]}' % (r1, r1),
                b'{"seq": 4, "readings": [{"ts": "%s", "channel": "opening", "value": 1, '
                b'"value": 2}]}' % _iso(tick()).encode(),
                b'{"seq": 5, "readings": [{"ts": "%s", "channel": "opening", "channel": "x", '
                b'"value": 2}]}' % _iso(tick()).encode()]:
        yield whole(None, R.MALFORMED_JSON, raw)
    # Depth bombs, huge arrays.
    yield whole(None, R.MALFORMED_JSON, b'{"seq": 6, "readings": [%s], "x": %s1%s}'
                % (r1, b"[" * 40, b"]" * 40))
    yield whole(None, R.MALFORMED_JSON, b"[" * 5000 + b"]" * 5000)
    yield whole(None, R.MALFORMED_JSON, b'{"a":' * 5000 + b"1" + b"}" * 5000)
    yield whole(None, R.MALFORMED_JSON, b'{"seq": 1, "readings": ' + b"[" * 50_000)
    yield whole(None, R.SCHEMA_VIOLATION, json.dumps(
        {"seq": 7, "readings": [{"ts": i, "channel": "opening", "value": 1} for i in range(1001)]},
        separators=(",", ":")).encode())
    yield whole({"seq": 8, "readings": [reading()], "pad": list(range(5000))},
                R.SCHEMA_VIOLATION)
    # Beyond the gateway's max_payload (the corpus test runs with MAX_PAYLOAD).
    yield whole(None, R.PAYLOAD_TOO_LARGE, b'{"seq": 9, "readings": [' + b" " * MAX_PAYLOAD + b"]}")
    # Encodings.
    doc = {"seq": 11, "readings": [reading()]}
    text = json.dumps(doc)
    for raw in [b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"), text.encode("utf-16-le"),
                text.encode("utf-32"), gzip.compress(text.encode(), mtime=0),
                text.replace("opening", "op\u00e9ning").encode("latin-1"),
                text.replace("opening", "op").encode()[:-2] + b"\xed\xa0\x80}]}",
                b'{"seq": 12, "readings": [{"ts": "\xc0\xaf"}]}', b"", b"   \r\n\t ",
                b"\x00" * 16, text.encode()[:-1], b"\x1f\x8b\x08\x00", b"\x93\xa3seq\x01",
                b"eyJzZXEiOiAxfQ==", b"seq=1&channel=opening&value=2"]:
        yield whole(None, R.MALFORMED_JSON, raw)
    # Wrong JSON types and shapes.
    shapes: list[object] = [None, [], "", True, 42, {"seq": "13", "readings": [reading()]},
                {"seq": True, "readings": [reading()]}, {"seq": None, "readings": [reading()]},
                {"seq": 1.5, "readings": [reading()]}, {"seq": -1, "readings": [reading()]},
                {"seq": [1], "readings": [reading()]}, {"seq": 14, "readings": {}},
                {"seq": 15, "readings": "opening=1"}, {"seq": 16, "readings": [[1, 2]]},
                {"seq": 17, "readings": [reading(ts={"t": 1})]},
                {"seq": 18, "readings": [reading(channel=7)]},
                {"seq": 19, "readings": [reading(channel="")]},
                {"seq": 20, "readings": [reading(channel="c" * 65)]},
                {"seq": 21, "readings": [reading(value="1.0")]},
                {"seq": 22, "readings": [reading(value=[1])]},
                {"seq": 23, "readings": [reading(value={"v": 1})]},
                {"seq": 24, "readings": [reading(value=None)]},
                {"seq": 25, "readings": [reading(value=False)]},
                {"seq": 26, "readings": [reading(unit=5)]},
                {"seq": 27, "readings": [reading(unit="")]},
                {"seq": 28, "readings": [reading(unit="u" * 17)]},
                {"seq": 29, "readings": [reading(quality="good")]},
                {"seq": 30, "readings": [reading()], "\ud800": 1},
                {"seq": 31, "readings": [reading()], "device_id": "RG-1"},
                {"seq": 32, "readings": [reading(ts=True)]}, {"seq": 33, "readings": []},
                {"seq": 34, "readings": [reading(ts=-5)]}]
    for shape in shapes:
        yield whole(shape, R.SCHEMA_VIOLATION)


# --- native status, presence, replies ----------------------------------------------------------
def _native_other(tick: Tick, now: datetime, secrets: Mapping[str, str],
                  commands: Mapping[str, str]) -> Iterator[Case]:
    status = "gw/v1/RG-1/status"

    def st(**over: object) -> dict[str, object]:
        return {"ts": _iso(tick()), "battery_pct": 80, **over}

    for doc, reason in [
        (st(ts=_iso(now + timedelta(days=27000))), R.TIMESTAMP_FUTURE),
        (st(ts="2099-01-01T00:00:00+08:00"), R.TIMESTAMP_FUTURE),
        (st(ts="0001-01-01T00:30:00+01:00"), R.BAD_TIMESTAMP),
        (st(ts="9999-12-31T23:30:00-01:00"), R.BAD_TIMESTAMP),
        (st(ts="1971-01-01T00:00:00Z"), R.TIMESTAMP_PAST),
        (st(battery_pct=101), R.SCHEMA_VIOLATION),
        (st(battery_pct="50"), R.SCHEMA_VIOLATION),
        (st(firmware="1.0\u0000"), R.SCHEMA_VIOLATION),
        (st(firmware="v\ud800"), R.SCHEMA_VIOLATION),
        (st(extra={"k\u0000": 1}), R.SCHEMA_VIOLATION),
        (st(extra={"k": "\ud83d"}), R.SCHEMA_VIOLATION),
        (st(sensor_state={"rain": 5}), R.SCHEMA_VIOLATION),
        (st(sensor_state={"rain": "0"}), R.SCHEMA_VIOLATION),
        (st(signal_dbm=-float("1" + "0" * 300)), R.SCHEMA_VIOLATION),
        (st(colour="red"), R.SCHEMA_VIOLATION),
        ({"battery_pct": 80}, R.SCHEMA_VIOLATION),
    ]:
        yield Case("RG-1", status, _j(doc), (reason,))
    ts = _iso(tick())
    for raw, reason in [
        (b'{"ts": "%s", "temperature_c": NaN}' % ts.encode(), R.NOT_FINITE),
        (b'{"ts": "%s", "extra": {"x": Infinity}}' % ts.encode(), R.SCHEMA_VIOLATION),
        (b'{"ts": "%s", "signal_dbm": -%s}' % (ts.encode(), b"9" * 401), R.SCHEMA_VIOLATION),
        (b'{"ts": "%s", "ts": "%s"}' % (ts.encode(), ts.encode()), R.MALFORMED_JSON),
        (b'{"ts": "%s", "extra": %s1%s}' % (ts.encode(), b'{"a":' * 20, b"}" * 20),
         R.MALFORMED_JSON),
    ]:
        yield Case("RG-1", status, raw, (reason,))
    presence = "gw/v1/RG-1/presence"
    for doc, reason in [
        ({"online": True, "ts": "2099-01-01T00:00:00Z"}, R.TIMESTAMP_FUTURE),
        ({"online": False, "ts": _iso(now + timedelta(hours=1))}, R.TIMESTAMP_FUTURE),
        ({"online": True, "ts": "0001-01-01T00:30:00+01:00"}, R.BAD_TIMESTAMP),
        ({"online": True, "ts": "9999-12-31T23:30:00-01:00"}, R.BAD_TIMESTAMP),
        ({"online": True, "ts": "1971-01-01T00:00:00Z"}, R.TIMESTAMP_PAST),
        ({"online": "yes"}, R.SCHEMA_VIOLATION), ({"online": None}, R.SCHEMA_VIOLATION),
        ({}, R.SCHEMA_VIOLATION), ({"online": 1}, R.SCHEMA_VIOLATION),
    ]:
        yield Case("RG-1", presence, _j(doc), (reason,))
    yield Case("RG-1", presence, b'{"online": true, "online": false}', (R.MALFORMED_JSON,))
    # Replies: to a command never sent, to another device's command (spoofed), and broken.
    secret = secrets["RG-1"]
    yield Case("RG-1", "gw/v1/RG-1/reply/nope-1", _j({"id": "nope-1", "result": "ok"}),
               (R.UNKNOWN_COMMAND,), writer_decides=True)
    yield Case("RG-1", "gw/v1/RG-1/reply/nope-2",
               _j({"id": "nope-2", "result": "ok", "data": {"password": secret}}),
               (R.UNKNOWN_COMMAND,), writer_decides=True)
    foreign = commands["CM-1"]
    yield Case("RG-1", f"gw/v1/RG-1/reply/{foreign}", _j({"id": foreign, "result": "ok"}),
               (R.FOREIGN_REPLY,), writer_decides=True)
    for cmd, doc, reason in [
        ("r-1", {"id": "r-2", "result": "ok"}, R.TOPIC_MISMATCH),
        ("r-3", {"id": "r-3", "result": "maybe"}, R.SCHEMA_VIOLATION),
        ("r-4", {"id": "r-4", "result": "ok", "detail": "done\u0000"}, R.SCHEMA_VIOLATION),
        ("r-5", {"id": "r-5", "result": "ok", "data": {"k": "\udc00"}}, R.SCHEMA_VIOLATION),
        ("r-6", {"id": "r-6", "result": "error", "detail": "x" * 1001}, R.SCHEMA_VIOLATION),
        ("x" * 65, {"id": "x" * 65, "result": "ok"}, R.UNKNOWN_TOPIC),
        ("y" * 60_000, {"id": "y", "result": "ok"}, R.UNKNOWN_TOPIC),
        ("bad.id", {"id": "bad.id", "result": "ok"}, R.UNKNOWN_TOPIC),
    ]:
        yield Case("RG-1", f"gw/v1/RG-1/reply/{cmd}", _j(doc), (reason,))
    yield Case("RG-1", "gw/v1/RG-1/reply/r-7",
               b'{"id": "r-7", "result": "ok", "password": "%s"}' % secret.encode(),
               (R.SCHEMA_VIOLATION,))
    # Right device, wrong profile: a native device is not a rain gauge on another topic kind.
    yield Case("RG-1", "gw/v1/RG-1/telemetry", _j({"seq": 1, "readings": [
        {"ts": _iso(tick()), "channel": "opening", "value": 1.0}]}),
        (R.UNKNOWN_CHANNEL,))


# --- national ----------------------------------------------------------------------------------
def _national(tick: Tick, now: datetime, secrets: Mapping[str, str],
              commands: Mapping[str, str]) -> Iterator[Case]:

    def nts() -> tuple[datetime, str]:
        moment = tick()
        return moment, _iso(moment)

    def dp(sensors: dict[str, object], reasons: tuple[str, ...],
           good: tuple[GoodReading, ...] = (), device: str = "NAT-1", inner: str | None = None,
           ftype: int | None = 2) -> Case:
        body = _j({inner or device: sensors})
        return Case(device, "$dp", body if ftype is None else _frame(body, ftype), reasons,
                    good)

    def good_lf(n: int = 9, device: str = "NAT-1") -> tuple[dict[str, object], GoodReading]:
        moment, key = nts()
        return {key: 4.5}, (device, f"L1_LF_{n}.opening", moment, 4.5)

    # Timestamp keys in odd forms: that sample; the good sensor beside it is stored.
    for key in ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "2026-02-30T00:00:00Z",
                "2026-03-31T12:00:00", "２０２６-03-31T12:00:00Z", "٢٠٢٦-03-31T12:00:00Z",
                "1711886400", "99999999999999999999", "1e12", "0x18E8F", "31/03/2026 04:05",
                "2026-03-31T12:00:00Z\n", "2026-03-31T12:00:00\u0000Z"]:
        sensor, good = good_lf()
        yield dp({"L1_LF_1": {key: 1.0}, "L1_LF_9": sensor}, (R.BAD_TIMESTAMP,), (good,))
    for key in ["2099-01-01T00:00:00+08:00", _iso(now + timedelta(days=1))]:
        sensor, good = good_lf()
        yield dp({"L1_LF_1": {key: 1.0}, "L1_LF_9": sensor}, (R.TIMESTAMP_FUTURE,), (good,))
    # Values: non-ASCII digits, too many parts, non-finite, not numbers.
    for value, reason in [("１２.５", R.SCHEMA_VIOLATION), ("١٢", R.SCHEMA_VIOLATION),
                          ("12\u0000", R.SCHEMA_VIOLATION), ("1_000", R.SCHEMA_VIOLATION),
                          ("0x10", R.SCHEMA_VIOLATION), ("+-1", R.SCHEMA_VIOLATION),
                          ("1e400", R.NOT_FINITE), ("nan", R.NOT_FINITE),
                          ("-Infinity", R.NOT_FINITE),
                          ("1" * 100, R.SCHEMA_VIOLATION), ("", R.SCHEMA_VIOLATION),
                          ("6000", R.OUT_OF_RANGE), (-1e9, R.OUT_OF_RANGE)]:
        sensor, good = good_lf()
        _, key = nts()
        yield dp({"L1_LF_1": {key: value}, "L1_LF_9": sensor}, (reason,), (good,))
    _, key = nts()
    yield dp({"L1_GP_1": {key: "1,2,3,4"}}, (R.SCHEMA_VIOLATION,))
    moment, key = nts()  # each part is a field: the bad one alone is refused
    yield dp({"L1_GP_1": {key: "1,２,3"}}, (R.SCHEMA_VIOLATION,),
             (("NAT-1", "L1_GP_1.disp_x", moment, 1.0), ("NAT-1", "L1_GP_1.disp_z", moment, 3.0)))
    body = b'{"NAT-1": {"L1_LF_1": {"%s": %s}}}'
    for raw in [b"1" * 401, b"9" * 5000, b"Infinity", b"NaN"]:
        yield Case("NAT-1", "$dp", _frame(body % (nts()[1].encode(), raw)), (R.NOT_FINITE,))
    # Ids with NUL, surrogates and look-alikes: that sensor or field; good ones kept.
    for sid in ["L1_LF_1\u0000", "\ud800", "L1_LF_\ud800", "L1_LF_1\n", "Ｌ1_LF_1", "L1_LF_١",
                "L1_lf_1", "L1_LF_1000", "L1\u200b_LF_1", "L2_YL_1", "L1_XX_1"]:
        sensor, good = good_lf()
        yield dp({sid: {nts()[1]: 1.0}, "L1_LF_9": sensor}, (R.UNKNOWN_SENSOR,), (good,))
    for fname in ["gpsTotalX\u0000", "\udfff", "gpsTotalQ", "ｇpsTotalX"]:
        moment, key = nts()
        yield dp({"L1_GP_1": {key: {fname: 1.0, "gpsTotalY": 2.0}}}, (R.UNKNOWN_CHANNEL,),
                 (("NAT-1", "L1_GP_1.disp_y", moment, 2.0),))
    # Kind enforcement: NAT-RG is registered as a rain gauge.
    for code in ["L1_LF_1", "L1_GP_1", "L1_QJ_1"]:
        moment, key = nts()
        yield dp({code: {key: 1.0}, "L3_YL_1": {key: 0.5}}, (R.UNKNOWN_SENSOR,),
                 (("NAT-RG", "L3_YL_1.rain", moment, 0.5),), device="NAT-RG")
    # Status group: a timestamp mapping to a bare number, bad values, times outside the window.
    status_cases: list[tuple[object, str]] = [
        ({nts()[1]: 5}, R.SCHEMA_VIOLATION),
        ({nts()[1]: "5"}, R.SCHEMA_VIOLATION),
        ({nts()[1]: [1, 2]}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"sensor_state": {"L1_LF_1": 5}}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"sensor_state": {"L1_LF_1": "x"}}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"sensor_state": {"L1_LF_1\u0000": 0}}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"sensor_state": 0}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"battery_volt": "１２"}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"battery_volt": "NaN"}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"sw_version": "1.0\u0000"}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"vendor": "\ud800"}}, R.SCHEMA_VIOLATION),
        ({nts()[1]: {"vendor\u0000": 1}}, R.SCHEMA_VIOLATION),
        ({"battery_volt": 12.1}, R.SCHEMA_VIOLATION),  # plain fields in a type 2 frame
        ({"2099-01-01T00:00:00Z": {"battery_volt": 12.1}}, R.TIMESTAMP_FUTURE),
        ({"0001-01-01T00:30:00+01:00": {"battery_volt": 12.1}}, R.BAD_TIMESTAMP),
        ({"9999-12-31T23:30:00-01:00": {"battery_volt": 12.1}}, R.BAD_TIMESTAMP),
        ({"1971-01-01T00:00:00Z": {"battery_volt": 12.1}}, R.TIMESTAMP_PAST),
        ({"１２": {"battery_volt": 12.1}}, R.SCHEMA_VIOLATION),
    ]
    for status, reason in status_cases:
        sensor, good = good_lf()
        yield dp({"S1_ZT_1": status, "L1_LF_9": sensor}, (reason,), (good,))
    for status, reason in status_cases[:4] + status_cases[13:15]:  # status alone: the message
        yield dp({"S1_ZT_1": status}, (reason,), device="NAT-2")
    raw_status = b'{"NAT-1": {"S1_ZT_1": {"%s": {"signal_4g": %s}}, "L1_LF_9": {"%s": 4.5}}}'
    for big in [b"-" + b"1" * 401, b"1" * 5000]:
        moment, key = nts()
        yield Case("NAT-1", "$dp", _frame(raw_status % (nts()[1].encode(), big, key.encode())),
                   (R.NOT_FINITE,), (("NAT-1", "L1_LF_9.opening", moment, 4.5),))
    # Bare JSON (no header) is typed by its keys: a number under a timestamp-like key.
    sensor, good = good_lf()
    yield dp({"S1_ZT_1": {nts()[1]: 7}, "L1_LF_9": sensor}, (R.SCHEMA_VIOLATION,), (good,),
             ftype=None)
    # Identity and structure.
    yield dp({"L1_LF_1": {nts()[1]: 1.0}}, (R.TOPIC_MISMATCH,), inner="NAT-2")
    yield dp({"L1_LF_1": {nts()[1]: 1.0}}, (R.SCHEMA_VIOLATION,), inner="NAT-1\n")
    yield dp({"L1_LF_1": {nts()[1]: 1.0}}, (R.SCHEMA_VIOLATION,), inner="NAT\u00001")
    yield dp({f"L1_LF_{i}": {nts()[1]: 1.0} for i in range(1, 258)}, (R.SCHEMA_VIOLATION,))
    yield dp({"L1_LF_1": {_iso(now - timedelta(seconds=i)): 1.0 for i in range(1001)}},
             (R.SCHEMA_VIOLATION,))
    yield dp({"L1_LF_1": [1.0, 2.0]}, (R.SCHEMA_VIOLATION,))
    yield dp({"L1_LF_1": {nts()[1]: True}}, (R.SCHEMA_VIOLATION,))
    yield dp({"L1_LF_1": {nts()[1]: None}}, (R.SCHEMA_VIOLATION,))
    yield dp({}, (R.SCHEMA_VIOLATION,))
    key = nts()[1]
    dup = b'{"NAT-1": {"L1_LF_1": {"%s": 1.0, "%s": 2.0}}}' % (key.encode(), key.encode())
    yield Case("NAT-1", "$dp", _frame(dup), (R.MALFORMED_JSON,))
    yield Case("NAT-1", "$dp", _frame(b'{"NAT-1": {"L1_LF_1": {"%s": 1}}, "NAT-1": {}}'
                                      % nts()[1].encode()), (R.MALFORMED_JSON,))
    yield Case("NAT-1", "$dp", _frame(b'{"NAT-1": ' * 30 + b"1" + b"}" * 30), (R.MALFORMED_JSON,))
    # Frame headers and encodings.
    good_body = _j({"NAT-1": {"L1_LF_1": {nts()[1]: 1.0}}})
    for raw, reason in [
        (_frame(good_body, length=len(good_body) + 1), R.MALFORMED_FRAME),
        (_frame(good_body, length=len(good_body) - 1), R.MALFORMED_FRAME),
        (_frame(good_body, ftype=0), R.MALFORMED_FRAME),
        (_frame(good_body, ftype=5), R.MALFORMED_FRAME),
        (_frame(good_body, ftype=255), R.MALFORMED_FRAME),
        (_frame(good_body, ftype=3), R.MALFORMED_FRAME),
        (b"\x02\x00\x00", R.MALFORMED_JSON),
        (b"\x02", R.MALFORMED_FRAME),
        (b"", R.MALFORMED_FRAME),
        (_frame(b"\xef\xbb\xbf" + good_body), R.MALFORMED_JSON),
        (_frame(good_body.decode().encode("utf-16")), R.MALFORMED_JSON),
        (_frame(gzip.compress(good_body, mtime=0)), R.MALFORMED_JSON),
        (gzip.compress(good_body, mtime=0), R.MALFORMED_FRAME),
        (_frame(good_body.replace(b"NAT-1", b"NAT-\xe9")), R.MALFORMED_JSON),
        (b"\xef\xbb\xbf" + good_body, R.MALFORMED_FRAME),
        (_frame(b"  "), R.MALFORMED_JSON),
    ]:
        yield Case("NAT-1", "$dp", raw, (reason,))
    # Replies ($dr, $crsp): secrets never kept, unknown and foreign commands recorded.
    secret = secrets["NAT-1"]
    for text, reason in [
        (f"$cmd=reboot&result=succ&apikey={secret}&msgid=nope-3", R.UNKNOWN_COMMAND),
        (f"$cmd=reboot&result=maybe&apikey={secret}&msgid=nope-4", R.MALFORMED_FRAME),
        (f"garbage&apikey={secret}&msgid=nope-5", R.MALFORMED_FRAME),
        (f"$cmd=reboot&result=succ&apikey={secret}", R.MALFORMED_FRAME),
        (f"$cmd=reboot&apikey={secret}&msgid=bad.id", R.MALFORMED_FRAME),
        ("$cmd=getstatus&state={\"a\":\"\\u0000\"}&msgid=nope-6", R.MALFORMED_FRAME),
        ("$cmd=getstatus&k\u0007=1&msgid=nope-7", R.MALFORMED_FRAME),
    ]:
        yield Case("NAT-1", "$dr", text.encode(), (reason,),
                   writer_decides=reason == R.UNKNOWN_COMMAND)
    yield Case("NAT-1", "$dr", b"$cmd=reboot&result=succ&msgid=x\xff", (R.MALFORMED_FRAME,))
    yield Case("NAT-1", "$dr", b"$cmd=reboot&result=succ&msgid=nope-8&msgid=nope-9",
               (R.MALFORMED_FRAME,))
    yield Case("NAT-1", "$dr", b"$cmd=reboot&result=succ&result=fail&msgid=nope-10",
               (R.MALFORMED_FRAME,))
    nat_cmd = commands["NAT-1"]
    yield Case("NAT-2", "$dr",
               f"$cmd=reboot&result=succ&apikey={secrets['NAT-2']}&msgid={nat_cmd}".encode(),
               (R.FOREIGN_REPLY,), writer_decides=True)
    yield Case("NAT-1", "$crsp/" + "z" * 60_000, b"$cmd=reboot&result=succ",
               (R.UNKNOWN_TOPIC,))
    yield Case("NAT-1", "$crsp/c-1", b"$cmd=reboot&result=succ&msgid=c-2", (R.TOPIC_MISMATCH,))
