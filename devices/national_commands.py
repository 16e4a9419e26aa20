"""China's geohazard universal-device profile (firmware-contracts/national.md): `$creq`
downlink commands (GeoWarn's command model translated into the national query string) and the
`$dr` / `$crsp` replies, parsed by the contract's rules (no duplicate keys, JSON values strict,
text storable, the apikey dropped and never quoted)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devices.messages import CommandReply, DecodeError, Reason
from devices.native import COMMAND_ID, DEVICE_ID, check_command, check_command_ids
from devices.redaction import redact_text
from devices.strict_json import loads_strict
from devices.text import json_problem, quoted
from geowarn.errors import InvalidInput


def encode_national_command(
    device_id: str,
    command_id: str,
    name: str,
    params: Mapping[str, Any],
    *,
    apikey: str | None = None,
) -> tuple[str, bytes]:
    """(topic, payload) of a GeoWarn command translated into the national query string."""
    check_command_ids(device_id, command_id)
    p = check_command(name, params)
    args: list[tuple[str, object]]
    if name == "set_interval":
        args = [("sample_intv", p["sample_s"]), ("upload_intv", p["upload_s"])]
        if "sensor_id" in p:
            args.insert(0, ("sensor_id", p["sensor_id"]))
        cmd = "setsensortime"
    elif name == "high_frequency":
        # Mode 2 is the national "emergency" mode (report at once, sample at plus_intv). The
        # national protocol has no duration: GeoWarn sends mode=0 itself when it is over.
        cmd, args = "setworkmode", [("mode", 2 if p["on"] else 0)]
    elif name == "reboot":
        cmd, args = "reboot", []
    else:
        cmd, args = "settime", [("server", p["server_time"])]
    if apikey is not None:
        if not apikey or re.search(r"[&=\s]", apikey):
            raise InvalidInput("apikey must be non-empty without '&', '=' or spaces")
        args.append(("apikey", apikey))
    args.append(("msgid", command_id))
    text = "$cmd=" + cmd + "".join(f"&{k}={v}" for k, v in args)
    return f"$creq/{device_id}/{command_id}", text.encode("ascii")


def parse_national_reply(topic: str, payload: bytes) -> CommandReply:
    """A reply on `$dr`, `$dr/{device_id}` (broker-bound) or `$crsp/{command_id}`."""
    device_id: str | None = None
    topic_command: str | None = None
    if topic.startswith("$dr/") and DEVICE_ID.match(topic[4:]):
        device_id = topic[4:]
    elif topic.startswith("$crsp/") and COMMAND_ID.match(topic[6:]):
        topic_command = topic[6:]
    elif topic != "$dr":
        raise DecodeError(
            Reason.UNKNOWN_TOPIC,
            f"topic {quoted(topic, 120)} is not $dr, $dr/{{device_id}} or $crsp/{{command_id}}",
        )
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError(Reason.MALFORMED_FRAME, "reply is not UTF-8 text",
                          device_id=device_id) from None
    fields = _query_fields(text.removeprefix("$"), device_id)
    command_id = fields.pop("msgid", None) or topic_command
    if command_id is None:
        raise DecodeError(Reason.MALFORMED_FRAME,
                          f"reply {quoted(redact_text(text), 80)} carries no msgid",
                          device_id=device_id)
    if not COMMAND_ID.match(command_id):
        raise DecodeError(Reason.MALFORMED_FRAME,
                          f"reply msgid {quoted(command_id, 70)} is not [A-Za-z0-9_-]{{1,64}}",
                          device_id=device_id)
    if topic_command is not None and command_id != topic_command:
        raise DecodeError(
            Reason.TOPIC_MISMATCH,
            f"reply msgid {command_id!r} differs from the command id {topic_command!r} in the "
            "topic", device_id=device_id,
        )
    fields.pop("apikey", None)  # a secret: never stored with the reply
    result = fields.pop("result", None)
    if result not in (None, "succ", "fail"):
        raise DecodeError(Reason.MALFORMED_FRAME,
                          f"reply result {quoted(result, 40)} is neither succ nor fail",
                          device_id=device_id)
    cmd = fields.pop("cmd", "")
    data: dict[str, object] = {}
    for key, value in fields.items():
        data[key] = _maybe_json(value)
    problem = json_problem({"cmd": cmd, **data})
    if problem is not None:
        raise DecodeError(Reason.MALFORMED_FRAME, problem, device_id=device_id)
    # A reply without `result` answers with data (getstatus, sample, reqtime): that is success.
    ok = result != "fail"
    return CommandReply(
        command_id=command_id, ok=ok, device_id=device_id,
        detail=f"{cmd}: {result or 'data'}" if cmd else (result or "data"), data=data,
    )


def _query_fields(text: str, device_id: str | None) -> dict[str, str]:
    """Split `k=v&k=v`, leaving `&` inside a JSON value ({...}) alone."""
    parts: list[str] = []
    depth, start, in_string = 0, 0, False
    for i, ch in enumerate(text):
        if in_string:
            in_string = not (ch == '"' and text[i - 1] != "\\")
        elif ch == '"':
            in_string = depth > 0
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "&" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    fields: dict[str, str] = {}
    for part in parts:
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise DecodeError(Reason.MALFORMED_FRAME,
                              f"reply part {quoted(redact_text(part), 60)} is not key=value",
                              device_id=device_id)
        if key in fields:  # as for JSON: which one would the logger have meant?
            raise DecodeError(Reason.MALFORMED_FRAME,
                              f"reply key {quoted(key, 40)} appears more than once",
                              device_id=device_id)
        fields[key] = value
    return fields


def _maybe_json(value: str) -> object:
    """A JSON value inside a reply, parsed by the contract's rules; otherwise the text."""
    if value[:1] in ("{", "["):
        try:
            return loads_strict(value.encode("utf-8", "surrogatepass"))
        except DecodeError:
            return value
    return value
