"""`geowarn replay FILE ...`: publish recorded series over MQTT as a device, then report from
the store what was stored, refused and raised.

Examples (the series in ../shared/data):

    geowarn replay lamosano_rain_hourly.csv --device RG-LAMO --kind rain_gauge \\
        --channel rain=rain --time-format '%d/%m/%Y %H:%M' --tz +01:00 --shift-to-now
    geowarn replay sitka.csv --mapping sitka.json --device RG-SITKA --speed 86400

Each file is one device's recording (`--device` once for all files, or once per file). With
several devices the messages are merged in data time, so the engine sees them as they happened.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devices.catalogue import SensorKind, load_catalogue
from devices.messages import Profile
from geowarn.errors import InvalidInput
from geowarn.settings import Settings, get_settings
from geowarn.timeargs import parse_duration, time_arg
from simulators.publisher import Publisher
from simulators.recorded import (
    RecordedSeries,
    SeriesMapping,
    load_mapping,
    read_series,
)
from simulators.replay import (
    Progress,
    ReplayMessage,
    format_summary,
    publish_replay,
    replay_messages,
    replay_summary,
    shift_for_now,
    wait_stored,
)
from simulators.replay_engine import DEFAULT_STEP

LEVEL_NAMES = {0: "none", 1: "blue (IV)", 2: "yellow (III)", 3: "orange (II)", 4: "red (I)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="publish recorded series (CSV/JSON) over MQTT as a device",
        description="Publish recorded series over MQTT as a given device, in data-time order, "
        "then report from the store what was stored, dead-lettered and raised. Readings older "
        "than the gateway's GEOWARN_MAX_BACKLOG_DAYS are refused by it: replay old recordings "
        "with --shift-to-now, or into a throwaway database whose gateway allows them.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", type=Path,
                   help="CSV (header line; , ; or tab) or JSON (list of row objects)")
    p.add_argument("--device", action="append", required=True, metavar="ID",
                   help="device to publish as: once for all files or once per file")
    p.add_argument("--kind", help="the device's catalogue kind (default: as registered)")
    p.add_argument("--profile", choices=("native", "national"), default="native")
    p.add_argument("--mapping", action="append", type=Path, metavar="FILE",
                   help="JSON/YAML mapping: time, time_format, timezone, label, channels, "
                   "units, scale (once for all files or once per file)")
    p.add_argument("--channel", action="append", default=[], metavar="COLUMN=CHANNEL",
                   help="replay COLUMN as the device's CHANNEL (repeatable)")
    p.add_argument("--time", dest="time_column", metavar="COLUMN",
                   help="the time column (default: one named ts/time/timestamp/date/day)")
    p.add_argument("--time-format", help="strptime format, epoch_s or epoch_ms (default: "
                   "ISO 8601 or a common date form, detected)")
    p.add_argument("--tz", default=None, help="zone of times without an offset: +08:00 or "
                   "an IANA name (default UTC)")
    p.add_argument("--label", choices=("end", "start"), default=None,
                   help="a row's time is its interval's end (default) or start (daily totals "
                   "dated by their day)")
    p.add_argument("--from", dest="start", type=time_arg,
                   help="replay only data at/after this time")
    p.add_argument("--to", dest="end", type=time_arg,
                   help="replay only data at/before this time")
    p.add_argument("--shift-to-now", action="store_true",
                   help="move all series so the newest sample is now (keeps their spacing)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="data seconds per wall second "
                      "(3600 = an hour a second); default: as fast as the broker acks")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker acks")
    p.add_argument("--readings-per-message", type=int, default=100,
                   help="readings batched per message (1-1000, default 100)")
    p.add_argument("--register", action="store_true",
                   help="register the device(s) first if missing (needs --kind)")
    p.add_argument("--url", help="broker URL (default GEOWARN_MQTT_URL)")
    p.add_argument("--username", help="broker username (default: the device id)")
    p.add_argument("--password", help="broker password (prefer --secrets)")
    p.add_argument("--secrets", type=Path, help="secrets file written by `devices import "
                   "--secrets-out` (csv, json or env): the device's password")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.add_argument("--engine", action="store_true",
                   help="once stored, judge the replayed data with a data-clock engine named "
                   "'replay' (its alerts are real alerts: replay into a throwaway database)")
    p.add_argument("--engine-step", type=_engine_step, default=DEFAULT_STEP,
                   metavar="DURATION|all",
                   help="with --engine: judge this much data time per engine step, each "
                   "committed (30m, 24h, 7d; default 7d); 'all': one step over everything. "
                   "The alerts are the same whatever the step (every sample is judged at its "
                   "own data time)")
    p.add_argument("--compare-rules", type=Path, metavar="FILE",
                   help="publish nothing: judge the series in memory under the rules in force "
                   "and under FILE's (the JSON `geowarn engine rules-list` prints) and report, "
                   "per hazard point, the alerts each would have raised, in data time")
    p.add_argument("--json", action="store_true", help="with --compare-rules: JSON output")
    p.add_argument("--exercise", metavar="NAME",
                   help="start exercise NAME (演练) in the database first: every alert the "
                   "replay raises is a drill, sent only to its participants (README: Drills)")
    p.add_argument("--no-summary", action="store_true",
                   help="do not read back from the store (no database needed)")
    p.add_argument("--wait", type=float, default=120.0,
                   help="seconds to wait for the gateway to store everything (default 120)")
    p.set_defaults(func=_replay)


def _per_file(values: list[Any] | None, files: list[Path], what: str) -> list[Any]:
    if not values:
        return [None] * len(files)
    if len(values) == 1:
        return values * len(files)
    if len(values) != len(files):
        raise InvalidInput(f"give {what} once, or once per file ({len(files)} files, "
                           f"{len(values)} given)")
    return values


def _mapping_for(args: argparse.Namespace, mapping_file: Path | None,
                 shared: bool) -> SeriesMapping:
    base = load_mapping(mapping_file) if mapping_file else SeriesMapping()
    channels = dict(base.channels)
    for item in args.channel:
        column, sep, channel = item.partition("=")
        if not sep or not column or not channel:
            raise InvalidInput(f"--channel {item!r}: write COLUMN=CHANNEL, e.g. rain=rain")
        channels[column] = channel
    return SeriesMapping(
        channels=channels, time=args.time_column or base.time,
        time_format=args.time_format or base.time_format,
        timezone=args.tz or base.timezone, label=args.label or base.label,
        units=base.units, scale=base.scale, partial=shared and bool(args.channel))


def _kind_of(device_id: str, given: str | None) -> str:
    if given:
        return given
    from devices.registry import device_info
    from geowarn.db import connect

    with connect() as conn:
        info = device_info(conn, device_id)
    if info is None:
        raise InvalidInput(f"device {device_id!r} is not registered: register it, or pass "
                           "--kind and --register")
    return str(info.kind)


def _replay(args: argparse.Namespace) -> int:
    files: list[Path] = args.files
    devices = _per_file(args.device, files, "--device")
    mappings = _per_file(args.mapping, files, "--mapping")
    catalogue = load_catalogue()
    start: datetime | None = args.start
    end: datetime | None = args.end
    series_of: list[tuple[str, RecordedSeries]] = []
    for path, device_id, mapping_file in zip(files, devices, mappings, strict=True):
        mapping = _mapping_for(args, mapping_file, shared=len(files) > 1)
        series = read_series(path, mapping).between(start, end)
        if not series.times:
            raise InvalidInput(f"{path}: no data between --from and --to")
        series_of.append((device_id, series))
    if args.shift_to_now:
        shift = min(shift_for_now(s) for _, s in series_of)
        series_of = [(d, s.shifted(shift)) for d, s in series_of]
    settings = get_settings()
    oldest = min(s.times[0] for _, s in series_of)
    if datetime.now(UTC) - oldest > timedelta(days=settings.max_backlog_days):
        print(f"note: data begin {oldest.date()}, older than GEOWARN_MAX_BACKLOG_DAYS="
              f"{settings.max_backlog_days:g}: a gateway with that setting refuses them "
              "(use --shift-to-now, or replay into a throwaway database whose gateway "
              "allows it)", file=sys.stderr)

    kinds = {d: catalogue.kind(_kind_of(d, args.kind)) for d in dict.fromkeys(devices)}
    for device_id, series in series_of:
        for channel in series.values:
            kinds[device_id].channel(channel)  # InvalidInput naming the kind's channels
    if args.compare_rules:
        return _compare(args, series_of)
    url = args.url or settings.mqtt_url
    if not url:
        raise InvalidInput("set GEOWARN_MQTT_URL or pass --url mqtt://host:port")
    if len(kinds) > 1 and (args.username or args.password):
        raise InvalidInput("several devices: give their passwords with --secrets FILE")
    if args.exercise:
        if args.no_summary:
            raise InvalidInput("--exercise needs the database: drop --no-summary")
        from notify import exercises

        exercises.start_in_database(args.exercise)
    if args.register:
        _register(kinds, args.profile)
    profile: Profile = args.profile
    show = sys.stderr.isatty() if args.progress is None else args.progress
    first_seq = int(time.time() * 1000)  # a fresh seq range, so no replay reuses one
    streams = [replay_messages(s, d, kinds[d], profile,
                               readings_per_message=args.readings_per_message,
                               first_seq=first_seq)
               for d, s in series_of]
    merged = heapq.merge(*streams, key=lambda m: m.last_time)
    total = sum(s.readings for _, s in series_of)
    target = Settings(mqtt_url=url)
    began = datetime.now(UTC)
    publishers: dict[str, Publisher] = {}
    try:
        for device_id in kinds:
            publishers[device_id] = _publisher(args, target, settings, device_id)
        progress = _run(publishers, merged, total, args.speed, show)
    finally:
        for publisher in publishers.values():
            publisher.close()
    print(f"published {progress.readings} readings in {progress.messages} messages "
          f"({progress.rate:.0f} readings/s)", file=sys.stderr)
    if args.no_summary:
        return 0
    from geowarn.db import connect

    incomplete = False
    with connect() as conn:
        for device_id, series in series_of:
            wait_stored(conn, device_id, series, series.readings, began, timeout=args.wait)
    if args.engine:
        _judge_in_data_time(series_of, args.engine_step, show)
    with connect() as conn:
        for device_id, series in series_of:
            summary = replay_summary(conn, device_id, series, series.readings, began)
            incomplete |= not summary.complete
            print("\n".join(format_summary(summary, LEVEL_NAMES)))
    return 1 if incomplete else 0


def _compare(args: argparse.Namespace, series_of: list[tuple[str, RecordedSeries]]) -> int:
    import json

    from alerts.engine.data import load_overrides
    from alerts.engine.service import EngineConfig
    from geowarn.db import connect
    from simulators import compare_rules

    other = compare_rules.load_rules_file(args.compare_rules)
    with connect() as conn:
        current = load_overrides(conn)
        inp = compare_rules.channels_and_samples(conn, series_of)
    started = time.perf_counter()
    result = compare_rules.compare(inp, current, other, args.compare_rules.name,
                                   EngineConfig().quiet_s)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=1))
    else:
        print("\n".join(compare_rules.format_table(result, LEVEL_NAMES)))
    print(f"judged {inp.samples.t.size} readings twice in memory in "
          f"{time.perf_counter() - started:.1f}s; nothing published or stored",
          file=sys.stderr)
    return 0


def _engine_step(text: str) -> timedelta | None:
    if text.strip().lower() == "all":
        return None
    try:
        return parse_duration(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or 'all'") from None


def _judge_in_data_time(series_of: list[tuple[str, RecordedSeries]], step: timedelta | None,
                        show_progress: bool) -> None:
    from tqdm import tqdm

    from alerts.engine.service import Engine, EngineConfig
    from geowarn.db import database_url
    from simulators.replay_engine import boundaries, judge_in_batches

    first = min(s.times[0] for _, s in series_of)
    last = max(s.times[-1] for _, s in series_of)
    started = time.perf_counter()
    engine = Engine(database_url(), EngineConfig(name="replay", clock="data"))
    with tqdm(total=sum(1 for _ in boundaries(first, last, step)), unit="step",
              desc="engine", file=sys.stderr, disable=not show_progress,
              mininterval=0.5) as bar:
        def progress(end: datetime, events: list[Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(f"data {end:%Y-%m-%d %H:%M}Z")
        try:
            judged = judge_in_batches(engine, first, last, step, progress)
        finally:
            engine.close()
    size = "all" if step is None else f"{step.total_seconds() / 3600:g} h"
    print(f"engine 'replay' judged the data in data time: {len(judged.events)} level changes "
          f"in {time.perf_counter() - started:.1f}s ({judged.steps} steps of {size})",
          file=sys.stderr)


def _publisher(args: argparse.Namespace, target: Settings, settings: Settings,
               device_id: str) -> Publisher:
    username: str | None = args.username
    password: str | None = args.password
    if args.secrets:
        from devices import secrets_file

        secrets = secrets_file.read(args.secrets, [device_id])
        if device_id not in secrets:
            raise InvalidInput(f"{args.secrets} holds no secret for {device_id}")
        username, password = device_id, secrets[device_id]
    elif username is None and settings.mqtt_username:
        username = settings.mqtt_username
        password = (settings.mqtt_password.get_secret_value()
                    if settings.mqtt_password else None)
    # A device connects with its own id as client id (native-v1.md); a clean session, since a
    # replay leaves nothing queued behind.
    return Publisher(target.mqtt_host, target.mqtt_port,
                     client_id=device_id if username == device_id else "",
                     username=username, password=password)


def _run(publishers: dict[str, Publisher], messages: Iterator[ReplayMessage], total: int,
         speed: float | None, show_progress: bool) -> Progress:
    from tqdm import tqdm

    with tqdm(total=total, unit="rd", desc="replay", file=sys.stderr,
              disable=not show_progress, mininterval=0.5) as bar:
        def show(progress: Progress, msg: ReplayMessage) -> None:
            bar.update(msg.readings)
            if progress.messages % 20 == 0 and progress.data_time:
                bar.set_postfix_str(f"data {progress.data_time:%Y-%m-%d %H:%M}Z")
        return publish_replay(publishers, messages, speed=speed, on_progress=show)


def _register(kinds: dict[str, SensorKind], profile: Profile) -> None:
    from devices.registry import DeviceSpec, add_device, device_info
    from geowarn.db import connect

    with connect() as conn:
        for device_id, kind in kinds.items():
            if device_info(conn, device_id) is None:
                add_device(conn, DeviceSpec(device_id=device_id, kind=kind.kind,
                                            profile=profile, name=f"replay of {device_id}"),
                           actor="replay")
                print(f"registered {device_id} ({kind.kind})", file=sys.stderr)
        conn.commit()
