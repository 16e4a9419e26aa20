"""One process, several services: start them in order, watch them, stop them in reverse.

`geowarn run` puts the ingest gateway, the warning engine, the notifier and the API in one
process for small deployments. Each runs on its own threads; the supervisor wakes on SIGTERM
or SIGINT (the caller sets `stop`) and checks every second whether one has failed. One
failing service stops them all and fails the process: a deployment must not keep ingesting
while nothing is evaluated or sent, nor keep serving an API over a dead pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from geowarn.errors import GeoWarnError

log = logging.getLogger(__name__)


class ServiceFailed(GeoWarnError):
    """One of the services `geowarn run` started has died."""


class Service(Protocol):
    failed: BaseException | None

    def start(self) -> None: ...
    def stop(self) -> None: ...


class ThreadService:
    """`target(stop)` on its own thread; it fails if it raises or returns before `stop`."""

    def __init__(self, name: str, target: Callable[[threading.Event], None],
                 wake: Callable[[], None]) -> None:
        self.name = name
        self._target = target
        self._stop = threading.Event()
        self._wake = wake  # tells the supervisor at once when the service ends on its own
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.failed: BaseException | None = None

    def _main(self) -> None:
        try:
            self._target(self._stop)
        except Exception as exc:  # reported by the supervisor, which then stops the whole set
            log.exception("%s stopped", self.name)
            self.failed = exc
        finally:
            if not self._stop.is_set():
                self.failed = self.failed or ServiceFailed(f"the {self.name} returned")
                self._wake()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class ApiService:
    """The API app under uvicorn on a thread (uvicorn leaves signals to the main thread)."""

    def __init__(self, app: object, host: str, port: int, wake: Callable[[], None]) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", proxy_headers=False,  # type: ignore[arg-type]
            server_header=False))
        self._stopping = False
        self._wake = wake
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)
        self.failed: BaseException | None = None

    def _main(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self.failed = exc if isinstance(exc, Exception) else ServiceFailed(
                f"the API server exited ({type(exc).__name__}: {exc})")
        finally:
            if not self._stopping:
                self.failed = self.failed or ServiceFailed("the API server stopped")
                self._wake()

    def start(self) -> None:
        self._thread.start()
        # Up before `run` says it is running (or failed: the port is taken, say).
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.05)

    def stop(self) -> None:
        self._stopping = True
        self.server.should_exit = True
        self._thread.join(timeout=30)


def supervise(services: Sequence[tuple[str, Service]], stop: threading.Event,
              on_started: Callable[[list[str]], None]) -> None:
    """Start `services` in order, run until `stop` is set or one fails, stop them in reverse;
    ServiceFailed names the first that failed."""
    started: list[tuple[str, Service]] = []
    try:
        for name, service in services:
            service.start()
            started.append((name, service))
            if service.failed is not None:
                break
            log.info("%s started", name)
        else:
            on_started([n for n, _ in started])
        while not stop.is_set() and not any(s.failed for _, s in started):
            stop.wait(1.0)
        failed = [(n, s.failed) for n, s in started if s.failed is not None]
        if failed:
            name, exc = failed[0]
            raise ServiceFailed(f"{name} failed ({type(exc).__name__}: {exc}); see the log "
                                "above")
    finally:
        # Reverse order: the API and the notifier first, the gateway that feeds them last.
        for name, service in reversed(started):
            log.info("stopping %s", name)
            service.stop()
