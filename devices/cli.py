"""`geowarn devices ...`: the operator's commands for the device registry.

Secrets are printed exactly once, when created or rotated (or written to the file the
operator names for an import), and never logged.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from devices import commands, credentials, health, maintenance_cli, registry, secrets_file
from devices.catalogue import load_catalogue
from devices.csv_import import EXAMPLE_CSV, FORMAT_HELP, decode, import_devices, parse_csv
from devices.registry import Device, DeviceSpec
from geowarn.db import connect
from geowarn.errors import InvalidInput


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:  # numbers and true/false as JSON, anything else as text
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="the device registry, credentials, broker files, "
                       "commands")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)

    a = dsub.add_parser("add", help="register a device and print its secret once")
    kinds = ", ".join(sorted(load_catalogue().kinds))
    a.add_argument("device_id")
    a.add_argument("--kind", help=f"catalogue sensor kind (required for profile native): "
                   f"{kinds}")
    a.add_argument("--profile", choices=registry.PROFILES, default="native")
    a.add_argument("--sensor", action="append", default=[], dest="sensors",
                   help="national logger sensor id such as L1_LF_1 (repeatable)")
    a.add_argument("--hazard", dest="hazard_id")
    a.add_argument("--site", dest="site_id")
    a.add_argument("--lon", type=float)
    a.add_argument("--lat", type=float)
    a.add_argument("--elevation", type=float, dest="elevation_m")
    a.add_argument("--name")
    a.add_argument("--interval", type=int, dest="reporting_interval_s",
                   help="reporting interval in seconds (default: the kind's)")
    a.add_argument("--installed", type=_date, dest="installed_on", help="YYYY-MM-DD")
    a.set_defaults(func=_add)

    i = dsub.add_parser(
        "import", help="register devices from a CSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Register the devices of a CSV file in one transaction. Each new device gets a "
            "secret (its MQTT password), written once to the --secrets-out file and stored "
            "nowhere else (the registry keeps only its hash). Re-importing the same file "
            "creates nothing and writes no secrets.", 92),
        epilog=FORMAT_HELP + "\n" + textwrap.fill(
            f"Sensor kinds (the kind column): {kinds}", 92) + "\n")
    i.add_argument("file", type=Path, nargs="?",
                   help="the CSV file (see the format below; --example prints one)")
    i.add_argument("--secrets-out", type=Path, metavar="FILE",
                   help="new file (mode 0600, plain LF lines) for the new devices' secrets; "
                   "an existing file is never overwritten, and left alone when nothing new "
                   "is created")
    i.add_argument("--secrets-format", choices=secrets_file.FORMATS,
                   help="csv (device_id,secret lines), json ({device_id: secret}) or env "
                   "(GEOWARN_SECRET_<ID>=secret lines); default from the file name "
                   "(.json, .env), else csv")
    i.add_argument("--update", action="store_true", help="update devices that differ")
    i.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    i.add_argument("--example", action="store_true",
                   help="print an example CSV file and exit (geowarn devices import "
                   "--example > devices.csv)")
    i.set_defaults(func=_import)

    ls = dsub.add_parser("list", help="list devices")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--kind", help=f"only this sensor kind: {kinds}")
    ls.add_argument("--status", choices=registry.STATUSES)
    ls.add_argument("--hazard")
    ls.set_defaults(func=_list)

    s = dsub.add_parser("show", help="a device's registry entry, channels, health, commands")
    s.add_argument("device_id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_show)

    for name, helptext in (("retire", "retire a device for good (revokes its secret)"),
                           ("maintenance", "put a device in maintenance status, or with "
                            "--from/--to/--reason give it a maintenance window"),
                           ("activate", "make a device active again")):
        x = dsub.add_parser(name, help=helptext)
        x.add_argument("device_id")
        x.set_defaults(func=_set_status, action=name)
        if name == "maintenance":
            maintenance_cli.add_window_args(x)

    c = dsub.add_parser("calibrate", help="set a channel's calibration")
    c.add_argument("device_id")
    c.add_argument("channel")
    c.add_argument("--scale", type=float, required=True)
    c.add_argument("--offset", type=float, required=True)
    c.set_defaults(func=_calibrate)

    r = dsub.add_parser("rotate-secret", help="issue a new secret and print it once")
    r.add_argument("device_id")
    r.set_defaults(func=_rotate)

    m = dsub.add_parser("command", help="queue a command for a device")
    m.add_argument("device_id")
    m.add_argument("name", help=", ".join(("set_interval", "high_frequency", "reboot",
                                          "sync_time")))
    m.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    m.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    m.set_defaults(func=_command)


# What makes the broker accept a new or rotated secret, or forget a retired device.
BROKER_HINT = ("geowarn devices broker-config DIR --listen ADDRESS:PORT (the broker's folder "
               "and listener, as first written), then reload mosquitto (kill -HUP its pid)")


def _print_secret(device_id: str, secret: str) -> None:
    print(f"secret for {device_id} (shown once, store it now): {secret}")


def _add(args: argparse.Namespace) -> int:
    spec = DeviceSpec(
        device_id=args.device_id, kind=args.kind, profile=args.profile, name=args.name,
        lon=args.lon, lat=args.lat, elevation_m=args.elevation_m,
        installed_on=args.installed_on, hazard_id=args.hazard_id, site_id=args.site_id,
        reporting_interval_s=args.reporting_interval_s, sensors=tuple(args.sensors))
    with connect(autocommit=True) as conn, conn.transaction():
        device = registry.add_device(conn, spec, actor=_actor())
        secret = credentials.issue_secret(conn, device.device_id, actor=_actor())
    print(f"added {device.device_id} ({device.profile}, {device.kind or 'no kind'}, "
          f"channels: {', '.join(c.channel for c in device.channels) or 'learnt later'})")
    _print_secret(device.device_id, secret)
    print(f"next, so the broker accepts it: {BROKER_HINT}")
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(EXAMPLE_CSV.read_text(encoding="utf-8"))
        return 0
    if args.file is None:
        raise InvalidInput("give the CSV file to import (geowarn devices import --help shows "
                           "its format; --example prints one)")
    if not args.dry_run and args.secrets_out is None:
        raise InvalidInput("give --secrets-out FILE: new devices' secrets are written there "
                           "once (or use --dry-run)")
    fmt = secrets_file.format_for(args.secrets_out or Path("-"), args.secrets_format)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
    rows, bad = parse_csv(decode(data))
    created_file = False
    with connect(autocommit=True) as conn:
        try:
            with conn.transaction():
                report = import_devices(conn, rows, bad, update=args.update,
                                        dry_run=args.dry_run, actor=_actor(),
                                        source=str(args.file))
                # Written before the commit: if the file cannot be written (it exists, the
                # folder is not writable), nothing is imported, so no device ends up with a
                # secret nobody has.
                if report.secrets:
                    if args.secrets_out.exists():
                        raise InvalidInput(
                            f"{len(report.secrets)} new device(s) need secrets, but "
                            f"{args.secrets_out} already exists (it may hold the only copy "
                            "of earlier secrets); nothing was imported: name a new file, "
                            "e.g. --secrets-out secrets-2.csv")
                    secrets_file.write_new(args.secrets_out, report.secrets, fmt)
                    created_file = True
        except BaseException:
            if created_file:  # only ever the file this run created: never earlier secrets
                args.secrets_out.unlink(missing_ok=True)
            raise
    verb = "would create" if report.dry_run else "created"
    print(f"{verb} {len(report.created)}, "
          f"{'would update' if report.dry_run else 'updated'} {len(report.updated)}, "
          f"unchanged {len(report.unchanged)}, conflicts {len(report.conflicts)}, "
          f"bad rows {len(report.bad_rows)}")
    for problem in report.bad_rows:
        print(f"bad row: {problem}")
    for problem in report.conflicts:
        print(f"conflict: {problem}")
    if report.secrets:
        print(f"{len(report.secrets)} secrets written to {args.secrets_out} ({fmt}, mode "
              "0600); they are not stored anywhere else")
        print(f"next, so the broker accepts them: {BROKER_HINT}")
    elif not report.dry_run:
        kept = (f"; {args.secrets_out} left as it was" if args.secrets_out.exists() else "")
        print(f"no new devices, no secrets written{kept}")
    if report.conflicts:
        print("conflicts change nothing: pass --update to apply the file's values (kind and "
              "profile never change: retire the device and add a new id)")
    return 0 if report.clean else 1


def _device_dict(d: Device) -> dict[str, Any]:
    return {
        "device_id": d.device_id, "kind": d.kind, "profile": d.profile, "status": d.status,
        "name": d.name, "lon": d.lon, "lat": d.lat, "elevation_m": d.elevation_m,
        "installed_on": d.installed_on, "hazard_id": d.hazard_id, "site_id": d.site_id,
        "reporting_interval_s": d.reporting_interval_s, "retired_at": d.retired_at,
        "channels": [{"channel_id": c.channel_id, "channel": c.channel, "kind": c.kind,
                      "unit": c.unit, "scale": c.calibration.scale,
                      "offset": c.calibration.offset, "learnt": c.learnt}
                     for c in d.channels],
    }


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def _health_summary(d: Device, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """State (devices/health.py) and what needs attention, for the list's HEALTH column."""
    state: str | None = None
    if d.status == "retired":
        state = "retired"
    elif d.reporting_interval_s:
        state = health.assess(now, row.get("last_reading_at"), d.reporting_interval_s,
                              row.get("online")).state
        if row.get("last_reading_at") is None:
            state += " (never reported)"
    return {"state": state, "last_seen": row.get("last_seen"),
            "last_reading_at": row.get("last_reading_at"),
            "problems": health.device_problems(row) if d.status != "retired" else []}


def _list(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with connect(autocommit=True) as conn:
        devices = registry.list_devices(conn, kind=args.kind, status=args.status,
                                        hazard_id=args.hazard)
        rows = health.health_rows(conn, [d.device_id for d in devices])
    summaries = {d.device_id: _health_summary(d, rows.get(d.device_id, {}), now)
                 for d in devices}
    if args.json:
        print(json.dumps([{**_device_dict(d), "health": summaries[d.device_id]}
                          for d in devices], default=str, indent=1))
        return 0
    print(f"{'DEVICE':<24} {'PROFILE':<9} {'KIND':<18} {'STATUS':<12} {'HAZARD':<12} "
          f"{'LAST SEEN (UTC)':<27} HEALTH")
    for d in devices:
        h = summaries[d.device_id]
        seen = h["last_seen"]
        seen_text = (f"{seen.astimezone(UTC):%Y-%m-%d %H:%M} "
                     f"({_ago(max(0.0, (now - seen).total_seconds()))})" if seen else "never")
        state = "; ".join(filter(None, [h["state"], *h["problems"]])) or "-"
        print(f"{d.device_id:<24} {d.profile:<9} {d.kind or '-':<18} {d.status:<12} "
              f"{d.hazard_id or '-':<12} {seen_text:<27} {state}")
    print(f"{len(devices)} device(s). HEALTH: ok = last reading within 1.5 reporting "
          "intervals, late = up to 3, silent = longer or never, offline = overdue and "
          "disconnected")
    return 0


def _show(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with connect(autocommit=True) as conn:
        device = registry.get_device(conn, args.device_id)
        assessed, row = health.device_health(conn, device.device_id, now,
                                             device.reporting_interval_s)
        pending = commands.list_commands(conn, device.device_id, open_only=True)
        cred = credentials.credential_info(conn, device.device_id)
    doc = _device_dict(device)
    doc["health"] = {"state": assessed.state if assessed else None,
                     "gap_s": assessed.gap_s if assessed else None,
                     **{k: v for k, v in row.items() if k != "device_id"}}
    doc["credential"] = None if cred is None else {
        "created_at": cred[0], "rotated_at": cred[1], "revoked_at": cred[2]}
    doc["pending_commands"] = [{"command_id": c.command_id, "name": c.name, "state": c.state,
                                "params": c.params, "deadline": c.deadline} for c in pending]
    if args.json:
        print(json.dumps(doc, default=str, indent=1))
        return 0
    for key in ("device_id", "profile", "kind", "status", "name", "lon", "lat", "elevation_m",
                "installed_on", "hazard_id", "site_id", "reporting_interval_s"):
        if doc[key] is not None:
            print(f"{key:<21} {doc[key]}")
    print("channels:")
    for c in doc["channels"]:
        print(f"  {c['channel']:<24} {c['kind']:<18} {c['unit']:<8} "
              f"scale {c['scale']:g} offset {c['offset']:g}{'  (learnt)' if c['learnt'] else ''}")
    problems = health.device_problems(row)
    print(f"health: {assessed.describe() if assessed else 'unknown (no reporting interval)'}"
          + "".join(f"; {p}" for p in problems))
    for key in ("online", "last_seen", "battery_pct", "battery_v", "signal_dbm", "firmware"):
        if row.get(key) is not None:
            print(f"  {key:<19} {row[key]}")
    print(f"secret: {'never issued' if cred is None else 'revoked' if cred[2] else 'issued'}")
    print(f"pending commands: {len(pending) or 'none'}")
    for c in pending:
        print(f"  {c.command_id} {c.name} {c.state} until {c.deadline:%Y-%m-%d %H:%M:%S}Z")
    return 0


def _set_status(args: argparse.Namespace) -> int:
    if args.action == "maintenance" and (args.starts or args.ends or args.reason):
        return maintenance_cli.add(args)
    with connect(autocommit=True) as conn:
        if args.action == "retire":
            device = registry.retire_device(conn, args.device_id, actor=_actor())
        else:
            status = "active" if args.action == "activate" else "maintenance"
            device = registry.set_status(conn, args.device_id, status, actor=_actor())
    print(f"{device.device_id}: {device.status}")
    if args.action == "retire":
        print(f"secret revoked; so the broker refuses it too: {BROKER_HINT}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        ch = registry.set_calibration(conn, args.device_id, args.channel, args.scale,
                                      args.offset, actor=_actor())
    print(f"{args.device_id}.{ch.channel}: scale {ch.calibration.scale:g} "
          f"offset {ch.calibration.offset:g}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        secret = credentials.issue_secret(conn, args.device_id, actor=_actor())
    _print_secret(args.device_id, secret)
    print(f"next, so the broker accepts it (the old secret works until then): {BROKER_HINT}")
    return 0


def _command(args: argparse.Namespace) -> int:
    params = dict(args.param)
    with connect(autocommit=True) as conn:
        command_id = commands.queue_command(conn, args.device_id, args.name, params,
                                            _actor(), args.timeout)
    print(f"queued {args.name} for {args.device_id}: command {command_id} "
          f"(times out in {args.timeout:g} s)")
    return 0
