"""`geowarn run` (the service set of a deployment in one process) and `geowarn health`
(container healthchecks).

`run` never falls back to embedded services: a production service that silently starts its
own empty database would look healthy while storing data nobody reads. Nor does it run on
without the warning engine when the engine cannot be loaded: that is an error, unless
`--no-engine` asks for the gateway alone.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from geowarn import migrate
from geowarn.db import connect
from geowarn.errors import ConfigurationError, GeoWarnError, InvalidInput
from geowarn.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the services of a deployment (ingest gateway and "
                                   "warning engine) until SIGTERM",
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


# --- run ---------------------------------------------------------------------------------------
class ServiceFailed(GeoWarnError):
    """One of the services `geowarn run` started has died."""


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class _EngineThread:
    """alerts.engine.service.Service (leader election, LISTEN, periodic tick) on its own thread."""

    def __init__(self, db_url: str, service_class: type, wake: Callable[[], None]) -> None:
        from alerts.engine.service import EngineConfig

        self.service = service_class(db_url, EngineConfig())
        self._stop = threading.Event()
        self._wake = wake  # tells `run` at once when the engine ends on its own
        self._thread = threading.Thread(target=self._main, name="warning-engine", daemon=True)
        self.failed: BaseException | None = None

    def _main(self) -> None:
        try:
            self.service.run(self._stop)
        except Exception as exc:  # reported by `run`, which then stops the whole set
            log.exception("warning engine stopped")
            self.failed = exc
        finally:
            if not self._stop.is_set():
                self.failed = self.failed or ServiceFailed("the warning engine returned")
                self._wake()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _engine_service_class() -> type:
    """alerts.engine.service.Service, or a clear error: a deployment asked for warnings must not
    run on, ingesting without an engine, because that module cannot be imported."""
    try:
        from alerts.engine.service import Service as EngineService
    except ImportError as exc:
        raise ConfigurationError(
            f"the warning engine cannot be loaded ({type(exc).__name__}: {exc}); fix the "
            "installation, or run the gateway alone with `geowarn run --no-engine`") from exc
    return EngineService


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
    engine_class = None if args.no_engine else _engine_service_class()
    connect(db_url).close()  # DatabaseUnavailable, with the reason, if it is not reachable
    pending = migrate.info(db_url).pending
    if pending:
        raise ConfigurationError(
            f"the database schema is {len(pending)} migration(s) behind (next: "
            f"{pending[0].version:04d}_{pending[0].name}): run `geowarn db upgrade` first")

    from ingest.gateway import Gateway, GatewayConfig

    services: list[tuple[str, Service]] = [
        ("ingest gateway", Gateway(GatewayConfig.from_settings(settings), db_url=db_url))]
    stop = threading.Event()
    if engine_class is not None:
        services.append(("warning engine", _EngineThread(db_url, engine_class, stop.set)))
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
        # Woken by SIGTERM/SIGINT, or by an engine thread that ended on its own: a
        # deployment must not keep ingesting silently while no warnings are evaluated.
        stop.wait()
        failed = [(n, exc) for n, svc in started
                  if (exc := getattr(svc, "failed", None)) is not None]
        if failed:
            name, exc = failed[0]
            raise ServiceFailed(f"{name} failed ({type(exc).__name__}: {exc}); see the log "
                                "above")
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
