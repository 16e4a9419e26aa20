"""`geowarn simulate`: publish realistic streams (a simulated fleet, or a named scenario on
given devices) over real MQTT, as a live fleet would: data from now on, sent as its time
comes; history only when asked for (--start, --backfill)."""

from __future__ import annotations

import argparse
import getpass
import itertools
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devices import secrets_file
from devices.catalogue import load_catalogue
from geowarn.errors import InvalidInput
from geowarn.settings import Settings, get_settings
from geowarn.shutdown import stop_on_signals
from geowarn.timeargs import parse_duration, parse_time
from simulators import library, placement
from simulators.scenarios import messages as track_messages
from simulators.sending import Connections, SendReport, send
from simulators.streams import Faults, SimMessage, device_ids, generate, make_devices


def register(sub: argparse._SubParsersAction) -> None:
    scenarios = "\n".join(textwrap.fill(
        f"{s.name:<8} {s.summary}" + (f" (on {', '.join(s.kinds)})" if s.kinds
                                      else " (on any kind)"),
        92, initial_indent="  ", subsequent_indent=" " * 11)
        for s in library.SCENARIOS.values())
    examples = """
Examples:
  geowarn simulate --devices 4 --register            live data from now, until Ctrl-C
  geowarn simulate --backfill 24h --until now        yesterday's data, then exit
  geowarn simulate --scenario typhoon --hazard HP-001 --start 25h
                                                     the storm's peak is now, the rest live
  geowarn simulate --scenario quiet --device CM-0001 --secrets secrets.csv
"""
    p = sub.add_parser(
        "simulate", help="publish simulated device streams over MQTT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Publish simulated readings over MQTT as live devices do: the first readings are "
            "timestamped now and each later one is sent when its time comes, so `geowarn "
            "readings` shows them and the devices report on time. --start or --backfill "
            "sends history first (as fast as the broker acknowledges). Without --messages "
            "or --until it runs until SIGTERM or Ctrl-C.", 92),
        epilog="Scenarios (--scenario NAME, placed with --device or --hazard):\n" + scenarios
        + "\n\nCredentials: a broker with passwords needs --secrets FILE (the file `geowarn "
        "devices import\n--secrets-out` wrote, in any of its formats; each device publishes "
        "as itself) or\n--username/--password (one account for everything sent).\n"
        + examples)
    fleet = p.add_argument_group("a simulated fleet (the default)")
    fleet.add_argument("--devices", type=int, default=10, help="number of devices (default 10)")
    fleet.add_argument("--kinds", default="rain_gauge,gnss,crack_meter,water_level",
                       help="comma-separated catalogue kinds, cycled over the devices")
    fleet.add_argument("--profile", choices=("native", "national", "mixed"), default="native")
    fleet.add_argument("--messages", type=int,
                       help="messages per device, then stop (default: no limit)")
    fleet.add_argument("--readings-per-message", type=int,
                       help="readings in a message (default: one sample of every channel, "
                       "as a device reports)")
    fleet.add_argument("--step", type=float, help="seconds between samples (default: each "
                                                  "kind's reporting interval)")
    fleet.add_argument("--prefix", default="SIM", help="device id prefix (default SIM)")
    scen = p.add_argument_group("a scenario")
    scen.add_argument("--scenario", choices=tuple(library.SCENARIOS),
                      help="a scripted hazard (see below) instead of the fleet's ordinary data")
    scen.add_argument("--device", action="append", default=[], dest="devices_given",
                      metavar="ID", help="run the scenario on this registered device "
                      "(repeatable; default: the suitable devices of --hazard, else "
                      "PREFIX-SCENARIO-1)")
    p.add_argument("--hazard", help="the scenario's devices are those on this hazard point; "
                   "with --register, new devices are placed there")
    p.add_argument("--register", action="store_true",
                   help="register the devices first (existing ones are kept as they are)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--start", help="data time of the first reading: ISO 8601 with an "
                      "offset, or a duration back from now (24h); default now")
    when.add_argument("--backfill", metavar="DURATION",
                      help="start this long ago (24h, 7d): that history is sent at once, "
                      "then the stream goes on live")
    p.add_argument("--until", help="stop at this data time (ISO 8601, a duration back, or "
                   "now: --backfill 24h --until now sends only the last day)")
    p.add_argument("--rate", type=float, default=None,
                   help="at most this many messages per second in all")
    p.add_argument("--faults", default=None, help="e.g. duplicate=0.01,out_of_order=0.01,"
                   "gap=0.01,garbage=0.01,spoof=0.01 (spoof: the fleet only)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same data (default 1)")
    p.add_argument("--url", help="broker URL (default GEOWARN_MQTT_URL)")
    p.add_argument("--secrets", type=Path, metavar="FILE",
                   help="device secrets file (csv, json or env, as devices import writes)")
    p.add_argument("--username", help="one broker account for every message (e.g. a device's "
                   "id when simulating that device)")
    p.add_argument("--password", help="its password (asked for when omitted on a terminal)")
    p.add_argument("--exercise", metavar="NAME",
                   help="start exercise NAME (演练) in the database first: the alerts the "
                   "simulation raises are drills, sent only to its participants")
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    start = _start(args, now)
    until = parse_time(args.until, now) if args.until else None
    if until is not None and until < start:
        raise InvalidInput(f"--until {args.until} is before the start {start:%Y-%m-%d %H:%M}Z")
    stream, ids, what = (_scenario_stream(args, start) if args.scenario
                         else _fleet_stream(args, start, until))
    if until is not None:
        stream = itertools.takewhile(lambda m: m.data_time is None or m.data_time <= until,
                                     stream)
    if args.exercise:
        from notify import exercises

        exercises.start_in_database(args.exercise)
    connections = _connections(args, ids)
    connections.check(ids)
    stop = threading.Event()
    history = now - start > timedelta(seconds=1)
    parts = [f"simulate: {what}, data from {start:%Y-%m-%d %H:%M:%S}Z"]
    if history:
        parts.append(f"the {_span(now - start)} up to now sent at once (as fast as the broker "
                     "acknowledges)")
    if until is None or until > now:
        ending = (f"until data time {until:%Y-%m-%d %H:%M:%S}Z" if until else
                  "until the scenario ends" if args.scenario else
                  f"for {args.messages} messages a device" if args.messages else
                  "until SIGTERM or Ctrl-C")
        parts.append(f"{'then ' if history else ''}each reading sent when its time comes, "
                     f"{ending}")
    print("; ".join(parts), file=sys.stderr)
    started = time.perf_counter()
    with stop_on_signals(stop, "geowarn simulate", "publishing (messages in flight are still "
                         "acknowledged)"):
        report = send(stream, connections, stop, rate=args.rate, progress=_progress)
    return _summary(report, time.perf_counter() - started, ids)


def _start(args: argparse.Namespace, now: datetime) -> datetime:
    if args.backfill:
        start = now - parse_duration(args.backfill)
    elif args.start:
        start = parse_time(args.start, now)
    else:
        start = now
    return start.replace(microsecond=start.microsecond // 1000 * 1000)


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds / 86400:.1f} days" if seconds >= 2 * 86400 else \
        f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _faults(args: argparse.Namespace, default: Faults = Faults()) -> Faults:  # noqa: B008
    if args.faults is None:
        return default
    try:
        return Faults.parse(args.faults)
    except ValueError as exc:
        raise InvalidInput(f"--faults: {exc}") from None


def _fleet_stream(args: argparse.Namespace, start: datetime, until: datetime | None
                  ) -> tuple[Iterator[SimMessage], list[str], str]:
    if args.devices_given:
        raise InvalidInput("--device places a --scenario; for the fleet use --devices N "
                           "and --prefix")
    if args.devices < 1 or (args.messages is not None and args.messages < 1):
        raise InvalidInput("--devices and --messages must be at least 1")
    catalogue = load_catalogue()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        catalogue.kind(k)  # raises InvalidInput naming the known kinds
    faults = _faults(args)
    devices = make_devices(device_ids(kinds, args.devices, args.prefix), args.profile,
                           args.seed, catalogue)
    if args.register:
        placement.register_fleet(devices, args.hazard)
    step = None
    if args.step is not None:
        if args.step <= 0:
            raise InvalidInput(f"--step must be positive, got {args.step:g}")
        step = timedelta(seconds=args.step)
    stream = generate(devices, start=start, messages_per_device=args.messages,
                      readings_per_message=args.readings_per_message, step=step,
                      faults=faults, seed=args.seed, time_ordered=True)
    used = list(dict.fromkeys(d.kind.kind for d in devices))
    what = f"{len(devices)} simulated devices ({', '.join(used)})"
    return stream, [d.device_id for d in devices], what


def _scenario_stream(args: argparse.Namespace, start: datetime
                     ) -> tuple[Iterator[SimMessage], list[str], str]:
    if args.messages is not None:
        raise InvalidInput("--messages counts the fleet's messages; a scenario has its own "
                           "length (cut it with --until)")
    scenario = library.scenario(args.scenario)
    places = placement.place(scenario, args.devices_given, args.hazard, args.prefix,
                             register=args.register)
    tracks = scenario.tracks(places, start, args.seed)
    stream = library.with_faults(track_messages(tracks), _faults(args, scenario.faults),
                                 args.seed)
    what = (f"scenario {scenario.name} ({scenario.summary}) on "
            f"{', '.join(p.device_id for p in places)}")
    return stream, [p.device_id for p in places], what


def _connections(args: argparse.Namespace, ids: list[str]) -> Connections:
    url = args.url or get_settings().mqtt_url
    if not url:
        raise InvalidInput("set GEOWARN_MQTT_URL or pass --url mqtt://host:port")
    target = Settings(mqtt_url=url)
    if args.secrets and args.username:
        raise InvalidInput("give --secrets FILE (each device as itself) or --username, "
                           "not both")
    if args.secrets:
        secrets = secrets_file.read(args.secrets, ids)
        return Connections(target.mqtt_host, target.mqtt_port, secrets=secrets)
    password = args.password
    if args.username:
        others = [d for d in ids if d != args.username]
        if args.username in ids and others:
            raise InvalidInput(f"--username {args.username} may publish only as that device; "
                               f"{len(others)} other device(s) would be refused by the broker: "
                               "use --secrets FILE, or --device "
                               f"{args.username} / --devices 1")
        if password is None:
            if not sys.stdin.isatty():
                raise InvalidInput("give --password with --username")
            password = getpass.getpass(f"broker password for {args.username}: ")
    elif password is not None:
        raise InvalidInput("--password needs --username")
    return Connections(target.mqtt_host, target.mqtt_port, username=args.username,
                       password=password)


def _progress(report: SendReport) -> None:
    newest = f", data time {report.last_data:%Y-%m-%d %H:%M:%S}Z" if report.last_data else ""
    print(f"simulate: {report.published} messages published so far{newest}", file=sys.stderr)


def _summary(report: SendReport, elapsed: float, ids: list[str]) -> int:
    data = (f", data time {report.first_data:%Y-%m-%d %H:%M:%S}Z .. "
            f"{report.last_data:%Y-%m-%d %H:%M:%S}Z" if report.first_data and report.last_data
            else "")
    how = " (stopped)" if report.stopped else ""
    print(f"published {report.published} messages ({report.readings} readings) from "
          f"{len(report.devices)} devices in {elapsed:.1f} s{data}{how}", file=sys.stderr)
    if report.refused:
        for who, n in sorted(report.refused.items()):
            print(f"refused by the broker: {n} message(s) of {who}", file=sys.stderr)
        print("the broker's ACL lets a device publish only on its own topics: publish each "
              "device as itself (--secrets FILE), or check --username", file=sys.stderr)
        return 1
    if ids:
        print(f"see what was stored: geowarn readings {ids[0]}", file=sys.stderr)
    return 0
