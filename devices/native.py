"""GeoWarn's native device profile v1 (firmware-contracts/native-v1.md): decoding the uplink
payloads and encoding the downlink commands.

The native command model (set_interval, high_frequency, reboot, sync_time and their params) is
GeoWarn's own; `check_command` validates it once for both profiles, and the national encoder
translates it into the national query-string commands.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from devices.canonical import ReadingContext, ReadingRefused, canonical_reading, check_schema
from devices.catalogue import Catalogue
from devices.messages import (
    CommandReply,
    DecodeError,
    DeviceInfo,
    Presence,
    Reading,
    Reason,
    Rejection,
    StatusReport,
    Telemetry,
)
from devices.strict_json import loads_strict
from devices.text import json_problem, printable, quoted
from devices.timestamps import TimestampError, TimeWindow, format_timestamp, parse_timestamp
from geowarn.errors import InvalidInput

TOPIC_PREFIX = "gw/v1/"
# \Z, not $: `$` also matches before a trailing newline, and "X\n" is no device id.
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
COMMAND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
MAX_TOPIC_SHOWN = 120
COMMANDS = ("set_interval", "high_frequency", "reboot", "sync_time")
# Topic kinds a device publishes; `cmd` is GeoWarn's own downlink and is never decoded.
UPLINK = ("telemetry", "status", "presence", "reply")


def parse_topic(topic: str) -> tuple[str, str, str | None]:
    """(device_id, message kind, command id or None) of a native uplink topic."""
    shown = _LazyQuoted(topic)
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "gw" or parts[1] != "v1":
        raise DecodeError(Reason.UNKNOWN_TOPIC, f"topic {shown} is not gw/v1/{{device_id}}/...")
    device_id, kind, rest = parts[2], parts[3], parts[4:]
    if not DEVICE_ID.match(device_id):
        raise DecodeError(
            Reason.UNKNOWN_TOPIC,
            f"device id {quoted(device_id, 70)} in topic {shown} is not "
            "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
        )
    if kind == "reply" and len(rest) == 1:
        if not COMMAND_ID.match(rest[0]):
            raise DecodeError(
                Reason.UNKNOWN_TOPIC,
                f"command id {quoted(rest[0], 70)} in topic {shown} is not [A-Za-z0-9_-]{{1,64}}",
                device_id=device_id,
            )
        return device_id, kind, rest[0]
    if kind in UPLINK and kind != "reply" and not rest:
        return device_id, kind, None
    raise DecodeError(
        Reason.UNKNOWN_TOPIC,
        f"topic {shown} is not a native uplink topic "
        "(gw/v1/{id}/telemetry|status|presence|reply/{command_id})",
        device_id=device_id,
    )


class _LazyQuoted:
    """The topic escaped and bounded, computed only when a refusal names it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __format__(self, spec: str) -> str:
        return quoted(self.text, MAX_TOPIC_SHOWN)


def decode_native(
    topic: str,
    payload: bytes,
    *,
    device: DeviceInfo,
    catalogue: Catalogue,
    window: TimeWindow,
    reading_ctx: ReadingContext,
) -> Telemetry | StatusReport | Presence | CommandReply:
    """Decode one native uplink message from an already looked-up, non-retired device."""
    device_id, kind, command_id = parse_topic(topic)
    doc = loads_strict(payload, device_id=device_id)
    if kind == "telemetry":
        check_schema("native-telemetry.schema.json", doc, device_id=device_id)
        return _telemetry(doc, device, catalogue, reading_ctx)
    if kind == "status":
        check_schema("native-status.schema.json", doc, device_id=device_id)
        return _status(doc, device_id, window)
    if kind == "presence":
        check_schema("native-presence.schema.json", doc, device_id=device_id)
        # Checked against the window like a status: a presence stamped in 2099 would
        # otherwise win over every later real one (health keeps the newest).
        ts = _whole_message_ts(doc["ts"], device_id, window) if "ts" in doc else None
        return Presence(device_id=device_id, online=doc["online"], ts=ts)
    check_schema("native-reply.schema.json", doc, device_id=device_id)
    _check_text(doc, device_id)
    if doc["id"] != command_id:
        raise DecodeError(
            Reason.TOPIC_MISMATCH,
            f"reply id {quoted(doc['id'])} differs from the command id {command_id!r} in the "
            "topic",
            device_id=device_id,
        )
    detail = doc.get("detail", "")
    if doc["result"] != "ok":
        detail = f"{doc['result']}: {detail}" if detail else doc["result"]
    return CommandReply(
        command_id=doc["id"], ok=doc["result"] == "ok", device_id=device_id, detail=detail,
        data=doc.get("data", {}),
    )


def _telemetry(
    doc: Mapping[str, Any], device: DeviceInfo, catalogue: Catalogue, ctx: ReadingContext
) -> Telemetry:
    if device.kind is None or device.kind not in catalogue.kinds:
        raise DecodeError(
            Reason.UNKNOWN_DEVICE,
            f"device {device.device_id!r} is registered without a known sensor kind "
            f"({device.kind!r}); a native device needs one",
            device_id=device.device_id,
        )
    if "sent_at" in doc:
        _whole_message_ts(doc["sent_at"], device.device_id, None)
    kind = catalogue.kinds[device.kind]
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    for i, item in enumerate(doc["readings"]):
        channel = item["channel"]
        ts: datetime | None = None
        try:
            try:
                ts = parse_timestamp(item["ts"])
            except TimestampError as exc:
                raise ReadingRefused(exc.reason, f"readings[{i}].ts: {exc.detail}") from None
            spec = next((c for c in kind.channels if c.name == channel), None)
            if spec is None:
                raise ReadingRefused(
                    Reason.UNKNOWN_CHANNEL,
                    f"readings[{i}]: channel {quoted(channel, 64)} is not a channel of "
                    f"{kind.kind} (channels: {', '.join(kind.channel_names)})",
                )
            readings.append(canonical_reading(
                ctx, kind, spec, channel, ts, float(item["value"]), item.get("unit"),
            ))
        except ReadingRefused as exc:
            # The channel as sent may hold a NUL or a surrogate: only an escaped form is kept.
            rejections.append(Rejection(exc.reason, exc.detail, channel=printable(channel, 64),
                                        ts=ts))
    return Telemetry(
        # int(): JSON does not tell 7 from 7.0, and the schema accepts both as an integer.
        device_id=device.device_id, seq=int(doc["seq"]), readings=tuple(readings),
        rejections=tuple(rejections),
    )


def _check_text(doc: Any, device_id: str) -> None:
    """Free text and vendor objects are stored as they are: they must be storable (no NUL,
    control character or lone surrogate; numbers finite)."""
    problem = json_problem(doc)
    if problem is not None:
        raise DecodeError(Reason.SCHEMA_VIOLATION, problem, device_id=device_id)


def _status(doc: Mapping[str, Any], device_id: str, window: TimeWindow) -> StatusReport:
    ts = _whole_message_ts(doc["ts"], device_id, window)
    numbers = {}
    for name in ("battery_pct", "battery_v", "supply_v", "signal_dbm", "temperature_c"):
        if name in doc:
            if not math.isfinite(doc[name]):
                raise DecodeError(
                    Reason.NOT_FINITE, f"$.{name}: {doc[name]} is not finite", device_id=device_id
                )
            numbers[name] = float(doc[name])
    _check_text(doc, device_id)
    return StatusReport(
        device_id=device_id, ts=ts, firmware=doc.get("firmware"),
        sensor_state=dict(doc.get("sensor_state", {})), extra=dict(doc.get("extra", {})),
        **numbers,
    )


def _whole_message_ts(value: object, device_id: str, window: TimeWindow | None) -> datetime:
    try:
        ts = parse_timestamp(value)
        if window is not None:
            window.check(ts)
    except TimestampError as exc:
        raise DecodeError(exc.reason, exc.detail, device_id=device_id) from None
    return ts


def check_command(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a GeoWarn command; return its params normalised (sync_time as RFC 3339 text).
    Raises InvalidInput naming the bad parameter."""
    if name not in COMMANDS:
        raise InvalidInput(f"unknown command {name!r} (commands: {', '.join(COMMANDS)})")
    p = dict(params)
    expected: dict[str, tuple[str, ...]] = {
        "set_interval": ("sample_s", "upload_s", "sensor_id"),
        "high_frequency": ("on", "interval_s", "duration_s"),
        "reboot": (),
        "sync_time": ("server_time",),
    }
    unknown = sorted(set(p) - set(expected[name]))
    if unknown:
        raise InvalidInput(
            f"{name}: unknown parameter(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(expected[name]) or 'none'})"
        )
    if name == "set_interval":
        for key in ("sample_s", "upload_s"):
            p[key] = _seconds(name, key, p.get(key), required=True)
        if p["upload_s"] < p["sample_s"]:
            raise InvalidInput(
                f"set_interval: upload_s ({p['upload_s']}) is shorter than sample_s "
                f"({p['sample_s']}); a device cannot upload more often than it samples"
            )
        if "sensor_id" in p and not (
            isinstance(p["sensor_id"], str) and re.match(r"^[A-Z][0-9]_[A-Z]{2}_[0-9]{1,3}$",
                                                         p["sensor_id"])
        ):
            raise InvalidInput(
                f"set_interval: sensor_id {p['sensor_id']!r} is not a national sensor id "
                "like L3_YL_1"
            )
    elif name == "high_frequency":
        if not isinstance(p.get("on"), bool):
            raise InvalidInput("high_frequency: parameter 'on' must be true or false")
        for key in ("interval_s", "duration_s"):
            if key in p:
                p[key] = _seconds(name, key, p[key], required=True,
                                  maximum=604800 if key == "duration_s" else 86400)
    elif name == "sync_time":
        server_time = p.get("server_time")
        if isinstance(server_time, datetime):
            if server_time.tzinfo is None:
                raise InvalidInput("sync_time: server_time must be timezone-aware")
            p["server_time"] = format_timestamp(server_time)
        else:
            try:
                p["server_time"] = format_timestamp(parse_timestamp(server_time))
            except TimestampError as exc:
                raise InvalidInput(f"sync_time: server_time: {exc.detail}") from None
    return p


def _seconds(name: str, key: str, value: object, *, required: bool, maximum: int = 86400) -> int:
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"{name}: {key} must be a whole number of seconds in 1..{maximum}, "
                           f"got {value!r}")
    return value


def check_command_ids(device_id: str, command_id: str) -> None:
    """The ids of a downlink command, checked the same way for both profiles."""
    if not DEVICE_ID.match(device_id):
        raise InvalidInput(f"device id {device_id!r} is not [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
    if not COMMAND_ID.match(command_id):
        raise InvalidInput(f"command id {command_id!r} is not [A-Za-z0-9_-]{{1,64}}")


def encode_native_command(
    device_id: str,
    command_id: str,
    name: str,
    params: Mapping[str, Any],
    *,
    issued_at: datetime,
    expires_at: datetime | None = None,
) -> tuple[str, bytes]:
    """(topic, payload) of a native downlink command; raises InvalidInput on bad input."""
    check_command_ids(device_id, command_id)
    p = check_command(name, params)
    p.pop("sensor_id", None)  # a native device has one sensor kind; the id is national-only
    doc: dict[str, Any] = {
        "id": command_id, "name": name, "params": p, "issued_at": format_timestamp(issued_at),
    }
    if expires_at is not None:
        if expires_at <= issued_at:
            raise InvalidInput("expires_at must be after issued_at")
        doc["expires_at"] = format_timestamp(expires_at)
    try:
        check_schema("native-command.schema.json", doc, device_id=device_id)
    except DecodeError as exc:  # check_command should already have refused it
        raise InvalidInput(f"command does not match the contract: {exc.detail}") from None
    topic = f"{TOPIC_PREFIX}{device_id}/cmd/{command_id}"
    return topic, json.dumps(doc, separators=(",", ":")).encode()
