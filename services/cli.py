"""`geowarn run` (gateway, engine, notifier and API of a small deployment in one process,
under services/supervisor.py) and `geowarn health` (container healthchecks).

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

from geowarn import migrate
from geowarn.db import connect
from geowarn.errors import ConfigurationError, InvalidInput
from geowarn.settings import Settings, get_settings
from services.supervisor import ApiService, Service, ThreadService, supervise

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the services of a small deployment in one process "
                                   "(ingest gateway, warning engine, notifier, API) until "
                                   "SIGTERM",
                       description="Needs GEOWARN_DATABASE_URL and GEOWARN_MQTT_URL: no "
                       "embedded defaults. One failing service stops all and fails the "
                       "process. Stops gracefully on SIGTERM or Ctrl-C.")
    r.add_argument("--no-engine", action="store_true", help="without the warning engine")
    r.add_argument("--no-notifier", action="store_true", help="without the notifier")
    r.add_argument("--no-api", action="store_true", help="without the API")
    r.add_argument("--api-host", help="API address (default GEOWARN_API_HOST)")
    r.add_argument("--api-port", type=int, help="API port (default GEOWARN_API_PORT)")
    r.add_argument("--notifier-name", default="notifier-1",
                   help="the notifier's name (default notifier-1; distinct per process)")
    r.set_defaults(func=_run)

    h = sub.add_parser("health", help="exit 0 if a gateway or engine reported to the "
                                      "database recently, or no notifier work waits past "
                                      "--max-age, else 1 (container healthchecks)")
    h.add_argument("service", choices=("gateway", "engine", "notifier"))
    h.add_argument("--name", help="gateway name (default GEOWARN_GATEWAY_NAME) or engine "
                                  "name (default engine)")
    h.add_argument("--max-age", type=float, default=60.0, metavar="SECONDS",
                   help="the latest report may be this old (default 60)")
    h.set_defaults(func=_health)


# --- run ---------------------------------------------------------------------------------------
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


def _engine(db_url: str, wake: Callable[[], None]) -> ThreadService:
    from alerts.engine.service import EngineConfig

    engine = _engine_service_class()(db_url, EngineConfig())
    return ThreadService("warning engine", engine.run, wake)


def _notifier(settings: Settings, db_url: str, name: str, wake: Callable[[], None]
              ) -> ThreadService:
    from notify import setup
    from notify.notifier import Notifier

    channels = setup.build_channels(settings, url=db_url, known_sid=setup.sid_recorder(db_url))
    notifier = Notifier(db_url, channels, name=name, routing=setup.build_routing(settings),
                        templates=setup.build_templates(settings),
                        hotline=settings.notify_hotline)

    def run(stop: threading.Event) -> None:
        try:
            notifier.run(stop)
        finally:
            notifier.close()

    return ThreadService("notifier", run, wake)


def _api(settings: Settings, db_url: str, host: str, port: int, wake: Callable[[], None]
         ) -> ApiService:
    from services.api_app import production_problems, served_app

    if settings.production and (problems := production_problems(settings)):
        raise ConfigurationError("production mode (GEOWARN_PRODUCTION) refuses to start the "
                                 "API:\n" + "\n".join(f"- {p}" for p in problems))
    return ApiService(served_app(settings, db_url), host, port, wake)


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
    if not args.no_engine:
        _engine_service_class()  # a clear error before anything starts
    connect(db_url).close()  # DatabaseUnavailable, with the reason, if it is not reachable
    pending = migrate.info(db_url).pending
    if pending:
        raise ConfigurationError(
            f"the database schema is {len(pending)} migration(s) behind (next: "
            f"{pending[0].version:04d}_{pending[0].name}): run `geowarn db upgrade` first")

    from ingest.gateway import Gateway, GatewayConfig

    stop = threading.Event()
    services: list[tuple[str, Service]] = [
        ("ingest gateway", Gateway(GatewayConfig.from_settings(settings), db_url=db_url))]
    if not args.no_engine:
        services.append(("warning engine", _engine(db_url, stop.set)))
    if not args.no_notifier:
        services.append(("notifier", _notifier(settings, db_url, args.notifier_name, stop.set)))
    host, port = args.api_host or settings.api_host, args.api_port or settings.api_port
    if not args.no_api:
        services.append((f"API on http://{host}:{port}/", _api(settings, db_url, host, port,
                                                                stop.set)))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def started(names: list[str]) -> None:
        print(f"geowarn run: {', '.join(names)} running against {settings.mqtt_host}:"
              f"{settings.mqtt_port}; SIGTERM stops", file=sys.stderr, flush=True)

    supervise(services, stop, started)
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


# The notifier saves no heartbeat; what shows it stuck or gone is work waiting: an outbox
# event or a delivery due longer than the limit (an idle notifier with nothing due is fine).
_NOTIFIER_SQL = (
    "SELECT coalesce(extract(epoch FROM now() - least("
    "(SELECT min(next_attempt_at) FROM notification_outbox WHERE state = 'pending' "
    " AND next_attempt_at <= now()), "
    "(SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' "
    " AND next_attempt_at <= now()))), 0)")


def _health(args: argparse.Namespace) -> int:
    if args.max_age <= 0:
        raise InvalidInput(f"--max-age must be positive, got {args.max_age:g}")
    settings = get_settings()
    if args.service == "notifier":
        return _notifier_health(settings, args.max_age)
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


def _notifier_health(settings: Settings, max_age: float) -> int:
    if not settings.database_url:
        raise ConfigurationError("geowarn health needs GEOWARN_DATABASE_URL")
    with connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(_NOTIFIER_SQL).fetchone()
    waited = float(row[0]) if row else 0.0
    if waited > max_age:
        print(f"notifier: work due {waited:.0f} s ago is still waiting (limit {max_age:g} s)")
        return 1
    print("notifier: nothing due is waiting" if waited == 0 else
          f"notifier: the oldest due work waited {waited:.0f} s")
    return 0
