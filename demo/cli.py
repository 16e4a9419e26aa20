"""`geowarn demo`: the whole story on one machine, then the API and console until Ctrl-C.

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
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TextIO
from urllib.parse import urlsplit

import psycopg

from demo.broker import embedded_broker
from demo.database import start_afresh
from demo.explore import explore_lines
from demo.pipeline import BrokerTarget, DemoOptions, run_story, shown_path
from geowarn.embedded import embedded_database_url
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="tell the whole story on simulated devices, then serve "
                                    "the API and console until Ctrl-C",
                       description="A sample county (示例县), a typhoon rainband that raises "
                       "yellow then orange, an accelerating slope that reaches red with a "
                       "failure forecast, the SMS that went out, then the API and console on "
                       "localhost with a demo login. Uses GEOWARN_DATABASE_URL / "
                       "GEOWARN_MQTT_URL when set, else an embedded PostgreSQL and a local "
                       "broker. The database is started afresh on every run.")
    d.add_argument("--no-serve", action="store_true",
                   help="exit after the story instead of serving the API (tests, CI)")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default "
                                                       "127.0.0.1)")
    d.add_argument("--port", type=int, default=None,
                   help="port to serve on (default GEOWARN_API_PORT, or a free one if taken)")
    d.add_argument("--reset", action="store_true",
                   help="start the database afresh even if it holds data that is not the "
                        "demo's (deletes it)")
    d.add_argument("--in-process-broker", action="store_true",
                   help="use the in-process amqtt broker even if Mosquitto is installed "
                        "(ignored when GEOWARN_MQTT_URL is set)")
    d.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    d.set_defaults(func=_demo)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _demo(args: argparse.Namespace) -> int:
    if args.port is not None and not 0 < args.port < 65536:
        raise InvalidInput(f"--port must be 1..65535, got {args.port}")
    with _quiet(not getattr(args, "verbose", False)):
        return _demo_story(args)


@contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """The story is the output; the services' INFO lines would drown it."""
    loggers = [logging.getLogger(name) for name in
               ("ingest", "geowarn.migrate", "alerts", "notify", "amqtt", "transitions")]
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
    stop = threading.Event()
    # SIGTERM ends the demo like Ctrl-C does, through the `finally` blocks that stop the
    # gateway, the API and the demo's own broker and remove its files.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with ExitStack() as stack:
            print("[1/6] Database and broker", file=out)
            if settings.database_url:
                db_url, shown = settings.database_url, "GEOWARN_DATABASE_URL"
                print(f"  database: {_redact(db_url)} (GEOWARN_DATABASE_URL), started afresh",
                      file=out)
            else:
                db_url = embedded_database_url()
                shown = f"the embedded demo database in {shown_path(settings.data_dir)}/pgdata"
                print(f"  database: {shown}, started afresh (set GEOWARN_DATABASE_URL to use "
                      "your own)", file=out)
            target = _broker_target(args, stack, out)
            applied = start_afresh(db_url, reset=args.reset, shown=shown)
            print(f"  schema:   {applied} migrations applied", file=out)
            notifications = settings.data_dir / "demo-notifications.jsonl"
            result = run_story(db_url, target, out, notifications,
                               DemoOptions(seed=args.seed))
            stack.close()  # the broker is not needed to serve
            print(f"\nstory told in {time.perf_counter() - started:.0f} s: "
                  f"{result.readings_stored} readings, {len(result.events)} alert events, "
                  f"{len(result.messages)} messages", file=out, flush=True)
            print("\n[6/6] Explore", file=out)
            for line in explore_lines(database_url_set=bool(settings.database_url)):
                print(line, file=out)
            if args.no_serve:
                return 0
            return _serve(args, db_url, out, stop)
    except KeyboardInterrupt:
        print("\ndemo stopped", file=out)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(args: argparse.Namespace, db_url: str, out: TextIO, stop: threading.Event) -> int:
    from demo.serve import choose_port, create_demo_user, serve
    from geowarn.settings import override_settings

    settings = get_settings()
    with psycopg.connect(db_url) as conn:
        login = create_demo_user(conn)
        conn.commit()
    # The API reads its database from the settings: the demo's, also when it is embedded.
    override_settings(database_url=db_url)
    port = choose_port(args.host, args.port or settings.api_port)
    print("\nServing the API and console:", file=out)
    serve(args.host, port, login, out, stop)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
