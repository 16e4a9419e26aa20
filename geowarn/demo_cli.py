"""`geowarn demo` (try GeoWarn on one machine) and `geowarn run` (the service set of a
deployment).

The two differ on purpose in how they find their services: `demo` falls back to an embedded
PostgreSQL and a local broker when GEOWARN_DATABASE_URL / GEOWARN_MQTT_URL are unset, so it
works with nothing but Python; `run` never does, because a production service that silently
starts its own empty database would look healthy while storing data nobody reads.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import urlsplit

from geowarn import migrate
from geowarn.db import connect
from geowarn.demo import BrokerTarget, DemoOptions, run_demo
from geowarn.errors import ConfigurationError, GeoWarnError, InvalidInput
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

    r = sub.add_parser("run", help="run the services of a deployment (ingest gateway and, "
                                   "when installed, the warning engine) until SIGTERM",
                       description="Needs GEOWARN_DATABASE_URL and GEOWARN_MQTT_URL: no "
                       "embedded defaults. Stops gracefully on SIGTERM or Ctrl-C.")
    r.add_argument("--no-engine", action="store_true", help="run the ingest gateway only")
    r.set_defaults(func=_run)

    h = sub.add_parser("health", help="exit 0 if a gateway or engine reported to the "
                                      "database recently, else 1 (container healthchecks)")
    h.add_argument("service", choices=("gateway", "engine"))
    h.add_argument("--name", help="gateway name (default GEOWARN_GATEWAY_NAME) or engine "
                                  "name (default engine)")
    h.add_argument("--max-age", type=float, default=60.0, metavar="SECONDS",
                   help="the latest report may be this old (default 60)")
    h.set_defaults(func=_health)


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
    print("[1/6] Database and broker", file=out)
    if settings.database_url:
        db_url = settings.database_url
        print(f"  database: {_redact(db_url)} (GEOWARN_DATABASE_URL)", file=out)
    else:
        from geowarn.embedded import embedded_database_url

        # pgserver logs every initdb/pg_ctl command line, also when it stops the server at
        # exit (after the story ends); its warnings and errors still show.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir it does not use when it is unset.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            db_url = embedded_database_url()
        print(f"  database: embedded PostgreSQL, data in {settings.data_dir / 'pgdata'} "
              "(set GEOWARN_DATABASE_URL to use your own)", file=out)
    if settings.mqtt_url:
        target = BrokerTarget(settings.mqtt_host, settings.mqtt_port, mqtt5=True,
                              description=f"the broker at {settings.mqtt_host}:"
                                          f"{settings.mqtt_port}")
        print(f"  broker:   {settings.mqtt_host}:{settings.mqtt_port} (GEOWARN_MQTT_URL)",
              file=out)
    else:
        from geowarn.embedded import start_embedded_broker

        broker = start_embedded_broker(prefer_mosquitto=not args.in_process_broker)
        parts = urlsplit(broker.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
        if broker.name == "mosquitto":
            label, description = "Mosquitto with GeoWarn's configuration", "the local Mosquitto"
        else:
            label, description = ("in-process amqtt broker (MQTT 3.1.1)",
                                  "the in-process amqtt broker")
        target = BrokerTarget(host, port, mqtt5=broker.mqtt5, description=description)
        print(f"  broker:   {label} on port {port}, for this run only "
              "(set GEOWARN_MQTT_URL to use your own)", file=out)
    applied = migrate.upgrade(db_url)
    print(f"  schema:   {len(applied)} migrations applied" if applied
          else "  schema:   up to date", file=out)
    result = run_demo(db_url, target, out, DemoOptions(
        devices_per_kind=args.devices_per_kind, hours=args.hours, seed=args.seed))
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s: "
          f"{result.readings_stored} new readings stored, "
          f"{sum(result.dead_letters.values())} dead letters", file=out)
    if result.engine_error:
        print(f"geowarn demo: the warning engine failed ({result.engine_error})",
              file=sys.stderr)
        return 1
    return 0


# --- run ---------------------------------------------------------------------------------------
class ServiceFailed(GeoWarnError):
    """One of the services `geowarn run` started has died."""


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class _EngineThread:
    """alerts.engine.service.Service (leader election, LISTEN, periodic tick) on its own thread."""

    def __init__(self, db_url: str) -> None:
        from alerts.engine.service import EngineConfig
        from alerts.engine.service import Service as EngineService

        self.service = EngineService(db_url, EngineConfig())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="warning-engine", daemon=True)
        self.failed: BaseException | None = None

    def _main(self) -> None:
        try:
            self.service.run(self._stop)
        except Exception as exc:  # reported by `run`, which then stops the whole set
            log.exception("warning engine stopped")
            self.failed = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _engine(db_url: str) -> _EngineThread | None:
    if importlib.util.find_spec("alerts.engine.service") is None:
        log.warning("warning engine not installed (alerts/engine/service.py); running ingest only")
        return None
    return _EngineThread(db_url)


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    missing = [name for name, value in (("GEOWARN_DATABASE_URL", settings.database_url),
                                        ("GEOWARN_MQTT_URL", settings.mqtt_url)) if not value]
    if missing:
        raise ConfigurationError(
            f"geowarn run needs {' and '.join(missing)} (it never starts embedded services; "
            "try `geowarn demo` for that), e.g. GEOWARN_DATABASE_URL=postgresql://geowarn@db/"
            "geowarn GEOWARN_MQTT_URL=mqtt://broker:1883")
    db_url = settings.database_url
    assert db_url is not None
    connect(db_url).close()  # DatabaseUnavailable, with the reason, if it is not reachable
    pending = migrate.info(db_url).pending
    if pending:
        raise ConfigurationError(
            f"the database schema is {len(pending)} migration(s) behind (next: "
            f"{pending[0].version:04d}_{pending[0].name}): run `geowarn db upgrade` first")

    from ingest.gateway import Gateway, GatewayConfig

    services: list[tuple[str, Service]] = [
        ("ingest gateway", Gateway(GatewayConfig.from_settings(settings), db_url=db_url))]
    if not args.no_engine:
        engine = _engine(db_url)
        if engine is not None:
            services.append(("warning engine", engine))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started: list[tuple[str, Service]] = []
    try:
        for name, service in services:
            service.start()
            started.append((name, service))
            log.info("%s started", name)
        print(f"geowarn run: {', '.join(n for n, _ in started)} running against "
              f"{settings.mqtt_host}:{settings.mqtt_port}; SIGTERM stops", file=sys.stderr)
        # Wake now and then to notice an engine thread that died: a deployment must not
        # keep ingesting silently while no warnings are evaluated.
        while not stop.wait(1.0):
            failed = [n for n, svc in started if getattr(svc, "failed", None) is not None]
            if failed:
                raise ServiceFailed(f"{failed[0]} failed; see the log above")
    finally:
        # Reverse order: the engine stops before the gateway that feeds it.
        for name, service in reversed(started):
            log.info("stopping %s", name)
            service.stop()
    return 0


# --- health ------------------------------------------------------------------------------------
# A running gateway saves its counters every stats interval (10 s) even when idle, and the
# leading engine saves its state on every periodic tick (30 s): a stale row means the process
# is stuck or gone, whatever the container runtime thinks.
# A gateway also saves how long its pipeline has not advanced while messages wait
# (`stalled_s`, 0 when nothing waits): a report that is fresh but stalled is unhealthy too,
# e.g. a decoder stuck on one message while the writer thread still reports.
_HEALTH_SQL = {
    "gateway": "SELECT extract(epoch FROM now() - updated_at), "
               "coalesce((counters->>'stalled_s')::float8, 0), "
               "coalesce((counters->>'pending_messages')::bigint, 0) FROM ingest_stats "
               "WHERE gateway = %s",
    "engine": "SELECT extract(epoch FROM now() - saved_at), 0.0, 0 FROM engine_state "
              "WHERE engine = %s",
}


def _health(args: argparse.Namespace) -> int:
    if args.max_age <= 0:
        raise InvalidInput(f"--max-age must be positive, got {args.max_age:g}")
    settings = get_settings()
    name = args.name or (settings.gateway_name if args.service == "gateway" else "engine")
    if not settings.database_url:
        raise ConfigurationError("geowarn health needs GEOWARN_DATABASE_URL")
    with connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(_HEALTH_SQL[args.service], (name,)).fetchone()
    if row is None:
        print(f"{args.service} {name}: has never reported")
        return 1
    age, stalled, pending = float(row[0]), float(row[1]), int(row[2])
    if age > args.max_age:
        print(f"{args.service} {name}: last report {age:.0f} s ago (limit {args.max_age:g} s)")
        return 1
    if stalled > args.max_age:
        print(f"{args.service} {name}: stalled: {pending} message(s) waiting and no progress "
              f"for {stalled:.0f} s (limit {args.max_age:g} s)")
        return 1
    print(f"{args.service} {name}: last report {age:.0f} s ago")
    return 0
