"""`geowarn demo`: try GeoWarn on one machine.

The demo falls back to an embedded PostgreSQL and a local broker when GEOWARN_DATABASE_URL /
GEOWARN_MQTT_URL are unset, so it works with nothing but Python. `geowarn run` (services/)
never does: a production service that silently starts its own empty database would look
healthy while storing data nobody reads.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from demo.broker import embedded_broker
from demo.pipeline import BrokerTarget, DemoOptions, run_demo
from geowarn import migrate
from geowarn.embedded import embedded_database_url
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="run the whole pipeline on simulated devices and explain it",
                       description="Import example GIS data, register simulated devices, "
                       "stream their data through a broker into the ingest gateway and show "
                       "what was stored. Uses GEOWARN_DATABASE_URL / GEOWARN_MQTT_URL when "
                       "set, else an embedded PostgreSQL and a local broker. Idempotent.")
    d.add_argument("--hours", type=float, default=12.0,
                   help="hours of simulated history, ending now (default 12, at most 72)")
    d.add_argument("--devices-per-kind", type=int, default=2,
                   help="simulated devices of each kind (default 2, at most 50)")
    d.add_argument("--in-process-broker", action="store_true",
                   help="use the in-process amqtt broker even if Mosquitto is installed "
                        "(ignored when GEOWARN_MQTT_URL is set)")
    d.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    d.set_defaults(func=_demo)


# --- demo --------------------------------------------------------------------------------------
def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _demo(args: argparse.Namespace) -> int:
    if not 0 < args.hours <= 72:
        raise InvalidInput(f"--hours must be in (0, 72], got {args.hours:g}")
    if not 1 <= args.devices_per_kind <= 50:
        raise InvalidInput(f"--devices-per-kind must be 1..50, got {args.devices_per_kind}")
    with _quiet(not getattr(args, "verbose", False)):
        return _demo_story(args)


@contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """The story is the output; the services' INFO lines would drown it."""
    loggers = [logging.getLogger(name) for name in
               ("ingest", "geowarn.migrate", "alerts", "amqtt", "transitions")]
    saved = [lg.level for lg in loggers]
    if enabled:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def _demo_story(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = sys.stdout
    settings = get_settings()
    # SIGTERM ends the demo like Ctrl-C does, through the `finally` blocks that stop the
    # gateway and the demo's own broker and remove its files.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with ExitStack() as stack:
            print("[1/6] Database and broker", file=out)
            if settings.database_url:
                db_url = settings.database_url
                print(f"  database: {_redact(db_url)} (GEOWARN_DATABASE_URL)", file=out)
            else:
                db_url = embedded_database_url()
                print(f"  database: embedded demo database in {_shown(settings.data_dir)}"
                      "/pgdata (set GEOWARN_DATABASE_URL to use your own)", file=out)
            target = _broker_target(args, stack, out)
            applied = migrate.upgrade(db_url)
            print(f"  schema:   {len(applied)} migrations applied" if applied
                  else "  schema:   up to date", file=out)
            result = run_demo(db_url, target, out, DemoOptions(
                devices_per_kind=args.devices_per_kind, hours=args.hours, seed=args.seed))
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s: "
          f"{result.readings_stored} new readings stored, "
          f"{sum(result.dead_letters.values())} dead letters", file=out)
    if result.engine_error:
        print(f"geowarn demo: the warning engine failed ({result.engine_error})",
              file=sys.stderr)
        return 1
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _shown(path: Path) -> str:
    """A path as the operator would type it: relative to the working directory if inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _broker_target(args: argparse.Namespace, stack: ExitStack, out: TextIO) -> BrokerTarget:
    settings = get_settings()
    if settings.mqtt_url:
        print(f"  broker:   {settings.mqtt_host}:{settings.mqtt_port} (GEOWARN_MQTT_URL)",
              file=out)
        return BrokerTarget(settings.mqtt_host, settings.mqtt_port, mqtt5=True,
                            description=f"the broker at {settings.mqtt_host}:"
                                        f"{settings.mqtt_port}")
    broker = stack.enter_context(embedded_broker(prefer_mosquitto=not args.in_process_broker))
    parts = urlsplit(broker.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    if broker.name == "mosquitto":
        label, description = "Mosquitto with GeoWarn's configuration", "the local Mosquitto"
    else:
        label, description = ("in-process amqtt broker (MQTT 3.1.1)",
                              "the in-process amqtt broker")
    print(f"  broker:   {label} on port {port}, for this run only "
          "(set GEOWARN_MQTT_URL to use your own)", file=out)
    return BrokerTarget(host, port, mqtt5=broker.mqtt5, description=description)
