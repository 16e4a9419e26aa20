"""China's geohazard universal-device profile, accepted unchanged (firmware-contracts/national.md):
`$dp` uplink frames. (`$creq` commands and `$dr` / `$crsp` replies: devices.national_commands.)

Choices the sources leave open (see national.md for the reasoning):
- Bare JSON (no 3-byte header) is read per sensor: an object whose keys start with a digit is
  keyed by timestamp (type 2), anything else is a plain value stamped with the receive time.
- A comma-joined string fills the sensor's catalogue fields in catalogue order; fewer parts
  than fields fill a prefix, more parts are refused.
- sensor_state -1 (power fault) and -2 (data error) make that sensor's readings in the same
  frame UNRELIABLE; -3 (no data) with a value present anyway makes them DOUBTFUL.
- Values carry no unit: they are taken in the catalogue's canonical unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from devices.canonical import ReadingContext, ReadingRefused, canonical_reading, check_schema
from devices.catalogue import Catalogue, SensorKind
from devices.messages import (
    DecodeError,
    DeviceInfo,
    Quality,
    Reading,
    Reason,
    Rejection,
    StatusReport,
    Telemetry,
)
from devices.native import DEVICE_ID
from devices.strict_json import loads_strict
from devices.text import json_problem, printable, quoted
from devices.timestamps import TimestampError, TimeWindow, parse_timestamp
from geowarn.errors import InvalidInput

STATUS_GROUP = "S1_ZT_1"
SENSOR_ID = re.compile(r"^(?P<code>[A-Z][0-9]_[A-Z]{2})_(?P<n>[0-9]{1,3})\Z")
# ASCII digits only: float() would read full-width "１２" or Arabic-Indic "١٢" as 12.
_NUMBER = re.compile(r"[ \t]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t]*\Z",
                     re.ASCII)
_NOT_FINITE = re.compile(r"[ \t]*[+-]?(nan|inf|infinity)[ \t]*\Z", re.IGNORECASE | re.ASCII)
_MAX_NUMBER_TEXT = 64
# Frame types (byte 0): 1 plain values, 2 timestamped values, 3 file, 4 firmware packets.
_ACCEPTED_TYPES = {1: "plain", 2: "timestamped"}
_REFUSED_TYPES = {3: "file description and stream", 4: "firmware upgrade packets"}
# sensor_state code -> quality of that sensor's readings in the same frame
_STATE_QUALITY = {-1: Quality.UNRELIABLE, -2: Quality.UNRELIABLE, -3: Quality.DOUBTFUL}


def frame(body: bytes, frame_type: int = 2) -> bytes:
    """A $dp frame: type byte, big-endian body length, body (what a logger sends)."""
    if len(body) > 0xFFFF:
        raise InvalidInput(f"a $dp body holds at most 65535 bytes, got {len(body)}")
    return bytes([frame_type]) + len(body).to_bytes(2, "big") + body


def unframe(payload: bytes) -> tuple[int | None, bytes]:
    """(frame type or None for bare JSON, JSON body) of a $dp payload."""
    stripped = payload.lstrip(b" \t\r\n")
    if stripped.startswith(b"{"):
        return None, stripped
    if len(payload) < 3:
        raise DecodeError(
            Reason.MALFORMED_FRAME,
            f"frame of {len(payload)} bytes is shorter than the 3-byte header",
        )
    ftype, declared = payload[0], int.from_bytes(payload[1:3], "big")
    if ftype in _REFUSED_TYPES:
        raise DecodeError(
            Reason.MALFORMED_FRAME,
            f"frame type {ftype} ({_REFUSED_TYPES[ftype]}) is not accepted: GeoWarn takes "
            "type 1 (plain values) and type 2 (timestamped values)",
        )
    if ftype not in _ACCEPTED_TYPES:
        raise DecodeError(
            Reason.MALFORMED_FRAME,
            f"unknown frame type {ftype} (byte 0 is 0x{ftype:02x}); expected 1 or 2, "
            "or bare JSON starting with '{'",
        )
    if declared != len(payload) - 3:
        raise DecodeError(
            Reason.MALFORMED_FRAME,
            f"header declares a {declared}-byte body but {len(payload) - 3} bytes follow it",
        )
    return ftype, payload[3:]


def parse_dp_topic(topic: str) -> str | None:
    """The device id bound by the broker (`$dp/{device_id}`), or None for plain `$dp`."""
    if topic == "$dp":
        return None
    rest = topic.removeprefix("$dp/")
    if rest != topic and DEVICE_ID.match(rest):
        return rest
    raise DecodeError(Reason.UNKNOWN_TOPIC, f"topic {topic!r} is not $dp or $dp/{{device_id}}")


def read_dp(topic: str, payload: bytes) -> tuple[int | None, str, dict[str, Any]]:
    """Unframe, parse and structurally check a $dp payload: (frame type, device id, sensors).

    The status group is checked on its own in decode_dp when the frame also carries readings:
    a bad status group must not cost the frame its good readings."""
    bound = parse_dp_topic(topic)
    ftype, body = unframe(payload)
    doc = loads_strict(body, device_id=bound)
    check_schema("national-dp.schema.json", _without_status(doc), device_id=bound)
    ((device_id, sensors),) = doc.items()
    if not DEVICE_ID.match(device_id):
        raise DecodeError(
            Reason.SCHEMA_VIOLATION,
            f"device id {quoted(device_id, 70)} is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}",
            device_id=bound,
        )
    if bound is not None and device_id != bound:
        raise DecodeError(
            Reason.TOPIC_MISMATCH,
            f"frame speaks for device {device_id!r} but was published by {bound!r}",
            device_id=bound,
        )
    return ftype, device_id, sensors


def _without_status(doc: Any) -> Any:
    if not (isinstance(doc, dict) and len(doc) == 1):
        return doc
    ((device_id, sensors),) = doc.items()
    if not (isinstance(sensors, dict) and STATUS_GROUP in sensors and len(sensors) > 1):
        return doc
    return {device_id: {k: v for k, v in sensors.items() if k != STATUS_GROUP}}


def decode_dp(
    ftype: int | None,
    sensors: Mapping[str, Any],
    *,
    device: DeviceInfo,
    catalogue: Catalogue,
    ctx: ReadingContext,
    now: datetime,
) -> Telemetry | StatusReport:
    """Readings (and the status group, if any) of one $dp frame from a looked-up device."""
    rejections: list[Rejection] = []
    status: StatusReport | None = None
    if STATUS_GROUP in sensors:
        try:
            status = _status(device.device_id, ftype, sensors[STATUS_GROUP], now, ctx.window)
        except (ReadingRefused, DecodeError) as exc:
            if len(sensors) == 1:
                raise DecodeError(exc.reason, exc.detail, device_id=device.device_id) from None
            rejections.append(Rejection(exc.reason, exc.detail, channel=STATUS_GROUP))
    if status is not None and len(sensors) == 1:
        return status
    states = status.sensor_state if status is not None else {}
    readings: list[Reading] = []
    for sensor_id, raw in sensors.items():
        if sensor_id == STATUS_GROUP:
            continue
        # The id as sent may hold a NUL or a surrogate: only an escaped form is kept.
        shown_id = printable(sensor_id, 32)
        try:
            kind = _sensor_kind(sensor_id, device, catalogue)
        except ReadingRefused as exc:
            rejections.append(Rejection(exc.reason, exc.detail, channel=shown_id))
            continue
        quality = _STATE_QUALITY.get(states.get(sensor_id, 0))
        for ts_key, value in _samples(ftype, raw):
            ts: datetime | None = now
            if ts_key is not None:
                try:
                    ts = parse_timestamp(ts_key, digits_are_epoch_ms=True)
                except TimestampError as exc:
                    rejections.append(Rejection(exc.reason, f"{sensor_id}: {exc.detail}",
                                                channel=sensor_id))
                    continue
            assert ts is not None
            try:
                fields = _fields(sensor_id, kind, value)
            except ReadingRefused as exc:
                rejections.append(Rejection(exc.reason, exc.detail, channel=sensor_id, ts=ts))
                continue
            for field_name, number in fields:
                key = f"{sensor_id}.{printable(field_name, 32)}"
                spec = kind.national_field(field_name)
                try:
                    if spec is None:
                        raise ReadingRefused(
                            Reason.UNKNOWN_CHANNEL,
                            f"{sensor_id}: field {quoted(field_name, 32)} is not a field of "
                            f"{kind.kind} ({kind.national_code}; fields: {_field_names(kind)})",
                        )
                    key = f"{sensor_id}.{spec.name}"
                    readings.append(canonical_reading(
                        ctx, kind, spec, key, ts, _number(key, number), quality=quality,
                    ))
                except ReadingRefused as exc:
                    rejections.append(Rejection(exc.reason, exc.detail, channel=key, ts=ts))
    return Telemetry(
        device_id=device.device_id, seq=None, readings=tuple(readings),
        rejections=tuple(rejections), status=status,
    )


def _sensor_kind(sensor_id: str, device: DeviceInfo, catalogue: Catalogue) -> SensorKind:
    m = SENSOR_ID.match(sensor_id)
    if m is None:
        raise ReadingRefused(
            Reason.UNKNOWN_SENSOR,
            f"sensor id {quoted(sensor_id, 32)} is not of the form {{class}}_{{type}}_{{n}}, "
            "e.g. L1_LF_1",
        )
    kind = catalogue.by_national_code(m["code"])
    if kind is None:
        known = sorted(k.national_code for k in catalogue.kinds.values() if k.national_code)
        raise ReadingRefused(
            Reason.UNKNOWN_SENSOR,
            f"sensor {sensor_id!r}: code {m['code']} is not in the catalogue "
            f"(known: {', '.join(known)})",
        )
    if device.kind is not None and kind.kind != device.kind:
        raise ReadingRefused(
            Reason.UNKNOWN_SENSOR,
            f"sensor {sensor_id!r} is a {kind.kind} but device {device.device_id!r} is "
            f"registered as a {device.kind}",
        )
    return kind


def _samples(ftype: int | None, raw: Any) -> list[tuple[str | None, Any]]:
    """(timestamp key or None, value) pairs of one sensor."""
    timestamped = ftype == 2 or (ftype is None and isinstance(raw, dict) and _stamped(raw))
    if not timestamped:
        return [(None, raw)]
    if not isinstance(raw, dict):
        return [("", raw)]  # parse_timestamp("") refuses it with a clear detail
    return list(raw.items())


def _stamped(raw: Mapping[str, Any]) -> bool:
    """Keyed by timestamp: keys start with an ASCII digit (a field name never does)."""
    return any(k[:1] in "0123456789" and k[:1] != "" for k in raw)


def _fields(sensor_id: str, kind: SensorKind, value: Any) -> list[tuple[str, Any]]:
    """(national field, raw number) pairs of one sample of a sensor."""
    names = [c.national_field for c in kind.channels if c.national_field]
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, str) and "," in value:
        parts = value.split(",")
        if len(parts) > len(names):
            raise ReadingRefused(
                Reason.SCHEMA_VIOLATION,
                f"{sensor_id}: comma-joined value {quoted(value, 60)} has {len(parts)} parts but "
                f"{kind.national_code} has {len(names)} fields ({', '.join(names)})",
            )
        return list(zip(names, parts, strict=False))
    # A bare number (or numeric string) is the sensor's `value` field, or its only field.
    field_name = "value" if "value" in names or len(names) != 1 else names[0]
    return [(field_name, value)]


def _number(key: str, raw: Any) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str) and len(raw) <= _MAX_NUMBER_TEXT:
        if _NUMBER.match(raw):
            return float(raw)
        if _NOT_FINITE.match(raw):
            raise ReadingRefused(Reason.NOT_FINITE, f"{key}: value {quoted(raw)} is not finite")
    hint = " (only ASCII digits are numbers)" if isinstance(raw, str) and any(
        ch.isdigit() and not ch.isascii() for ch in raw) else ""
    raise ReadingRefused(Reason.SCHEMA_VIOLATION,
                         f"{key}: value {quoted(raw, 60)} is not a number{hint}")


def _field_names(kind: SensorKind) -> str:
    return ", ".join(c.national_field for c in kind.channels if c.national_field)


_STATUS_NUMBERS = {
    "battery_dump_energy": "battery_pct",
    "battery_volt": "battery_v",
    "ext_power_volt": "supply_v",
    "temp": "temperature_c",
}


def _status(device_id: str, ftype: int | None, raw: Any, now: datetime,
            window: TimeWindow) -> StatusReport:
    """The status group; with several timestamps the latest wins. Its time must lie in the
    clock-skew/backlog window like a reading's: a status stamped in 2099 would otherwise win
    over every later real one (health keeps the newest)."""
    try:
        check_schema("national-status.schema.json", raw, device_id=device_id)
    except DecodeError as exc:  # its paths are within the group: say so
        raise ReadingRefused(exc.reason, f"{STATUS_GROUP}{exc.detail.removeprefix('$')}"
                             ) from None
    ts = now
    fields: Mapping[str, Any] = raw
    stamped = _stamped(raw)
    if ftype is not None and stamped != (ftype == 2):
        form = "timestamp-keyed" if stamped else "plain (not timestamp-keyed)"
        raise ReadingRefused(Reason.SCHEMA_VIOLATION,
                             f"{STATUS_GROUP}: a type {ftype} frame carries {form} status fields")
    if stamped:
        moments = []
        for key, value in raw.items():
            try:
                moment = parse_timestamp(key, digits_are_epoch_ms=True)
                window.check(moment)
            except TimestampError as exc:
                raise ReadingRefused(exc.reason, f"{STATUS_GROUP}: {exc.detail}") from None
            moments.append((moment, value))
        ts, fields = max(moments, key=lambda pair: pair[0])
    numbers: dict[str, float] = {}
    extra: dict[str, object] = {}
    for name, value in fields.items():
        if name in ("sensor_state", "sw_version"):
            continue
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            number = _number(f"{STATUS_GROUP}.{name}", value)
            if not math.isfinite(number):
                raise ReadingRefused(Reason.NOT_FINITE, f"{STATUS_GROUP}.{name} is not finite")
            if name in _STATUS_NUMBERS:
                numbers[_STATUS_NUMBERS[name]] = number
            else:
                extra[name] = number
        else:
            extra[name] = value
    problem = json_problem(fields, f"$.{STATUS_GROUP}")  # vendor text is stored as it is
    if problem is not None:
        raise ReadingRefused(Reason.SCHEMA_VIOLATION, problem)
    # Signal strength units differ by vendor (dBm or CSQ); only a negative value is dBm.
    for name in ("signal_4g", "signal_NB"):
        signal = extra.get(name)
        if isinstance(signal, float) and "signal_dbm" not in numbers and signal < 0:
            numbers["signal_dbm"] = signal
    states = {str(k): int(v) for k, v in dict(fields.get("sensor_state", {})).items()}
    firmware = fields.get("sw_version")
    return StatusReport(
        device_id=device_id, ts=ts, firmware=None if firmware is None else str(firmware)[:64],
        sensor_state=states, extra=extra, **numbers,
    )
