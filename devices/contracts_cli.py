"""`geowarn contracts`: what firmware teams run against their payloads.

    geowarn contracts check FILE [--profile native|national] [--topic T] [--kind KIND] [--json]
    geowarn contracts catalogue [--markdown|--json]

`check` decodes the file with the same decoder the ingest gateway uses, against a device built
from the options (no registry, no database): exit 0 with the canonical readings when every part
is accepted, 1 with every reason when anything is refused, 2 when the check itself cannot run.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices import native
from devices.catalogue import Catalogue, load_catalogue
from devices.decode import decode
from devices.messages import (
    CommandReply,
    Decoded,
    DecodeError,
    DeviceInfo,
    Presence,
    Profile,
    StatusReport,
    Telemetry,
)
from devices.national import unframe
from devices.timestamps import TimestampError, parse_timestamp
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings

_CHECK_DEVICE = "example-device"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("contracts", help="firmware contracts: check payloads, catalogue")
    csub = parser.add_subparsers(dest="contracts_command", metavar="ACTION", required=True)

    check = csub.add_parser("check", help="validate a payload file as the gateway would")
    check.add_argument("file", type=Path, help="payload file (.json, .txt or a binary $dp .bin)")
    check.add_argument("--profile", choices=("native", "national"),
                       help="default: from the topic, else national for .bin/.txt and JSON "
                            "shaped {device_id: {...}}, else native")
    check.add_argument("--topic", help="MQTT topic (default: telemetry/status/presence by shape "
                                       "for native, $dp for national)")
    check.add_argument("--kind", help="sensor kind of a native device (e.g. crack_meter)")
    check.add_argument("--now", help="server clock to check timestamps against (RFC 3339; "
                                     "default: now). Use the index's 'now' for the examples.")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.set_defaults(func=_run_check)

    cat = csub.add_parser("catalogue", help="print the channel catalogue")
    fmt = cat.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="as catalogue.md (default)")
    fmt.add_argument("--json", action="store_true", help="as catalogue.json")
    cat.set_defaults(func=_run_catalogue)


def _run_catalogue(args: argparse.Namespace) -> int:
    if args.json:
        path = get_settings().contracts_dir / "catalogue.json"
        print(path.read_text(encoding="utf-8"), end="")
    else:
        print(catalogue_markdown(), end="")
    return 0


def catalogue_markdown(catalogue: Catalogue | None = None) -> str:
    """catalogue.md, generated from catalogue.json (a test keeps the committed file equal)."""
    cat = catalogue or load_catalogue()
    lines = [
        "# GeoWarn channel catalogue",
        "",
        "<!-- Generated from catalogue.json by `geowarn contracts catalogue --markdown`; "
        "do not edit. -->",
        "",
        f"Catalogue version {cat.version}. Canonical units are what GeoWarn stores; a value in an "
        "accepted unit is converted as `canonical = value * scale + offset`. Ranges are physical "
        "limits in canonical units (after calibration): a value outside is refused, not "
        "clipped. National profile: sensor id `{code}_{n}`, channel key "
        "`{sensor_id}.{channel}`, values taken in the canonical unit.",
        "",
        "| kind | channel | canonical unit | accepted units (scale, offset) | range "
        "| national code / field | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in cat.kinds.values():
        for spec in kind.channels:
            units = ", ".join(_unit(u, c.scale, c.offset) for u, c in spec.accepted_units.items())
            national = (f"{kind.national_code} / {spec.national_field}"
                        if kind.national_code and spec.national_field else "-")
            lines.append(
                f"| {kind.kind} | {spec.name} | {spec.unit} | {units} | "
                f"{spec.low:g} .. {spec.high:g} | {national} | {spec.quantity} |"
            )
    lines += ["", "## Kinds", "", "| kind | domain | reporting interval | description |",
              "|---|---|---|---|"]
    for kind in cat.kinds.values():
        lines.append(f"| {kind.kind} | {kind.domain} | {kind.reporting_interval_s} s | "
                     f"{kind.description} |")
    return "\n".join(lines) + "\n"


def _unit(unit: str, scale: float, offset: float) -> str:
    if scale == 1.0 and offset == 0.0:
        return unit
    text = f"{unit} (x{scale:.6g}"
    return text + (f", {offset:+.6g})" if offset else ")")


# ---- check ---------------------------------------------------------------------------------

def _run_check(args: argparse.Namespace) -> int:
    try:
        payload = args.file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
    now = datetime.now(UTC)
    if args.now:
        try:
            now = parse_timestamp(args.now)
        except TimestampError as exc:
            raise InvalidInput(f"--now: {exc.detail}") from None
    profile: Profile = args.profile or _guess_profile(args.topic, args.file, payload)
    if args.kind is not None:
        load_catalogue().kind(args.kind)  # InvalidInput naming the known kinds
    topic = args.topic or _default_topic(profile, payload)
    device_id = _device_id(profile, topic, payload)
    if profile == "native" and topic.endswith("/telemetry") and args.kind is None:
        raise InvalidInput("--kind is needed to check native telemetry (e.g. --kind crack_meter; "
                           "see `geowarn contracts catalogue`)")
    device = DeviceInfo(device_id=device_id, profile=profile, status="active",
                        kind=args.kind)

    def lookup(wanted: str) -> DeviceInfo | None:
        return device if wanted == device.device_id else None

    try:
        decoded = decode(topic, payload, now=now, lookup=lookup)
    except DecodeError as exc:
        report: dict[str, Any] = {
            "valid": False, "topic": topic, "profile": profile,
            "rejections": [{"reason": exc.reason, "detail": exc.detail, "whole_message": True}],
        }
    else:
        report = _report(decoded, topic, profile)
    _print(report, as_json=args.json)
    return 0 if report["valid"] else 1


def _guess_profile(topic: str | None, path: Path, payload: bytes) -> Profile:
    if topic is not None:
        return "native" if topic.startswith(native.TOPIC_PREFIX) else "national"
    if path.suffix in (".bin", ".txt"):
        return "national"
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return "native"
    if isinstance(doc, dict) and len(doc) == 1 and isinstance(next(iter(doc.values())), dict):
        return "national"
    return "native"


def _default_topic(profile: str, payload: bytes) -> str:
    if profile == "national":
        return "$dr" if payload.lstrip().startswith(b"$") else "$dp"
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        doc = None
    kind = "telemetry"
    if isinstance(doc, dict):
        if "online" in doc:
            kind = "presence"
        elif "result" in doc and isinstance(doc.get("id"), str):
            return f"gw/v1/{_CHECK_DEVICE}/reply/{doc['id']}"
        elif "readings" not in doc and "ts" in doc:
            kind = "status"
    return f"gw/v1/{_CHECK_DEVICE}/{kind}"


def _device_id(profile: str, topic: str, payload: bytes) -> str:
    if profile == "native" or topic.startswith("$dp/"):
        parts = topic.split("/")
        return parts[2] if profile == "native" and len(parts) > 2 else parts[-1]
    if topic.startswith("$dp"):
        try:
            _, body = unframe(payload)
            doc = json.loads(body)
        except (DecodeError, ValueError, UnicodeDecodeError):
            return _CHECK_DEVICE  # the decoder will say what is wrong with the frame
        if isinstance(doc, dict) and doc and re.match(native.DEVICE_ID, next(iter(doc))):
            return str(next(iter(doc)))
    return _CHECK_DEVICE


def _report(decoded: Decoded, topic: str, profile: str) -> dict[str, Any]:
    report: dict[str, Any] = {"valid": True, "topic": topic, "profile": profile}
    if isinstance(decoded, Telemetry):
        report.update(type="telemetry", device_id=decoded.device_id, seq=decoded.seq)
        report["readings"] = [
            {"channel": r.channel, "ts": _iso(r.ts), "value": r.value,
             "quality": r.quality.name.lower()} for r in decoded.readings
        ]
        report["rejections"] = [
            {"reason": r.reason, "detail": r.detail, "channel": r.channel}
            for r in decoded.rejections
        ]
        report["valid"] = not decoded.rejections
        if decoded.status is not None:
            report["status"] = _status(decoded.status)
    elif isinstance(decoded, StatusReport):
        report.update(type="status", status=_status(decoded))
    elif isinstance(decoded, Presence):
        report.update(type="presence", device_id=decoded.device_id, online=decoded.online,
                      ts=_iso(decoded.ts) if decoded.ts else None)
    elif isinstance(decoded, CommandReply):
        report.update(type="reply", command_id=decoded.command_id, ok=decoded.ok,
                      detail=decoded.detail, data=dict(decoded.data))
    report.setdefault("rejections", [])
    return report


def _status(s: StatusReport) -> dict[str, Any]:
    return {"device_id": s.device_id, "ts": _iso(s.ts), "battery_pct": s.battery_pct,
            "battery_v": s.battery_v, "supply_v": s.supply_v, "signal_dbm": s.signal_dbm,
            "temperature_c": s.temperature_c, "firmware": s.firmware,
            "sensor_state": dict(s.sensor_state), "extra": dict(s.extra)}


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _print(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    verdict = "VALID" if report["valid"] else "INVALID"
    print(f"{verdict}: {report.get('type', 'message')} on {report['topic']} "
          f"({report['profile']} profile)")
    for r in report.get("readings", []):
        print(f"  reading  {r['channel']:<24} {r['ts']:<32} {r['value']:<14g} {r['quality']}")
    if "status" in report:
        fields = {k: v for k, v in report["status"].items() if v not in (None, {}, [])}
        print(f"  status   {json.dumps(fields, ensure_ascii=False)}")
    for key in ("online", "command_id", "ok", "detail", "data"):
        if key in report:
            print(f"  {key}: {report[key]}")
    for r in report["rejections"]:
        where = f" [{r['channel']}]" if r.get("channel") else ""
        print(f"  REFUSED  {r['reason']}{where}: {r['detail']}")
