"""`geowarn simulate`: publish realistic streams for N devices over real MQTT."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from devices.catalogue import load_catalogue
from geowarn.errors import InvalidInput
from geowarn.settings import Settings, get_settings
from simulators.publisher import Publisher
from simulators.streams import Faults, SimDevice, device_ids, generate, make_devices


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="publish simulated device streams over MQTT")
    p.add_argument("--devices", type=int, default=10, help="number of devices (default 10)")
    p.add_argument("--kinds", default="rain_gauge,gnss,crack_meter,water_level",
                   help="comma-separated catalogue kinds, cycled over the devices")
    p.add_argument("--profile", choices=("native", "national", "mixed"), default="native")
    p.add_argument("--messages", type=int, default=10, help="messages per device")
    p.add_argument("--readings-per-message", type=int, default=1)
    p.add_argument("--rate", type=float, default=None,
                   help="messages per second in all (default: as fast as the broker acks)")
    p.add_argument("--faults", default="",
                   help="e.g. duplicate=0.01,out_of_order=0.01,gap=0.01,garbage=0.01,spoof=0.01")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="event time of the first reading (ISO 8601; default: now "
                                   "minus the span of the stream, so nothing is in the future)")
    p.add_argument("--step", type=float, help="seconds between samples (default: each "
                                              "kind's reporting interval)")
    p.add_argument("--prefix", default="SIM", help="device id prefix")
    p.add_argument("--register", action="store_true",
                   help="register the simulated devices first (skipping existing ones)")
    p.add_argument("--url", help="broker URL (default GEOWARN_MQTT_URL)")
    p.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    catalogue = load_catalogue()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        catalogue.kind(k)  # raises InvalidInput naming the known kinds
    try:
        faults = Faults.parse(args.faults)
    except ValueError as exc:
        raise InvalidInput(f"--faults: {exc}") from None
    pairs = device_ids(kinds, args.devices, args.prefix)
    devices = make_devices(pairs, args.profile, args.seed, catalogue)
    if args.register:
        _register(devices)
    step = timedelta(seconds=args.step) if args.step else None
    if args.start:
        start = datetime.fromisoformat(args.start)
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    else:
        longest = max((step or timedelta(seconds=d.kind.reporting_interval_s))
                      * args.messages * args.readings_per_message for d in devices)
        start = (datetime.now(UTC) - longest).replace(microsecond=0)
    settings = get_settings()
    url = args.url or settings.mqtt_url
    if not url:
        raise InvalidInput("set GEOWARN_MQTT_URL or pass --url mqtt://host:port")
    target = Settings(mqtt_url=url)
    publisher = Publisher(target.mqtt_host, target.mqtt_port,
                          username=settings.mqtt_username,
                          password=settings.mqtt_password.get_secret_value()
                          if settings.mqtt_password else None)
    messages = (
        (m.topic, m.payload)
        for m in generate(devices, start=start, messages_per_device=args.messages,
                          readings_per_message=args.readings_per_message, step=step,
                          faults=faults, seed=args.seed)
        if m.fault != "gap")
    started = time.perf_counter()
    sent = publisher.publish_all(messages, rate=args.rate)
    publisher.close()
    elapsed = time.perf_counter() - started
    print(f"published {sent} messages from {len(devices)} devices in {elapsed:.2f}s "
          f"({sent / elapsed if elapsed else 0:.0f} msg/s)", file=sys.stderr)
    return 0


def _register(devices: list[SimDevice]) -> None:
    from devices.registry import DeviceSpec, add_device
    from geowarn.db import connect

    with connect() as conn:
        existing = {row[0] for row in conn.execute("SELECT device_id FROM devices")}
        added = 0
        for d in devices:
            if d.device_id in existing:
                continue
            add_device(conn, DeviceSpec(device_id=d.device_id, kind=d.kind.kind,
                                        profile=d.profile, name=f"simulated {d.kind.kind}"),
                       actor="simulator")
            added += 1
        conn.commit()
    print(f"registered {added} simulated devices", file=sys.stderr)
