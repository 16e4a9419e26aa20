"""The demo's own broker when GEOWARN_MQTT_URL is unset: a Mosquitto with GeoWarn's shipped
configuration on a free local port if the binary is installed, else an in-process amqtt
broker (MQTT 3.1.1, QoS 0/1 only, 3-5x slower).

Either lives for one `with embedded_broker(...)` block: Mosquitto is stopped and its working
folder (configuration, log, persistence) removed when the block ends, so a demo run leaves
nothing behind in the temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from geowarn.embedded import free_port, start_mosquitto
from geowarn.errors import ConfigurationError
from ingest.broker_config import gateway_broker_config


@dataclass(frozen=True)
class EmbeddedBroker:
    url: str
    name: str  # "mosquitto" or "amqtt"
    mqtt5: bool  # amqtt speaks MQTT 3.1.1 only


def mosquitto_installed() -> bool:
    return bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())


@contextmanager
def embedded_broker(*, prefer_mosquitto: bool = True) -> Iterator[EmbeddedBroker]:
    """A local broker for the demo, stopped (and its files removed) when the block ends."""
    port = free_port()
    if prefer_mosquitto and mosquitto_installed():
        workdir = Path(tempfile.mkdtemp(prefix="geowarn-mosquitto-"))
        try:
            proc = start_mosquitto(gateway_broker_config(), port, workdir)
            try:
                yield EmbeddedBroker(f"mqtt://127.0.0.1:{port}", "mosquitto", mqtt5=True)
            finally:
                _stop(proc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    stop = _start_amqtt(port)
    try:
        yield EmbeddedBroker(f"mqtt://127.0.0.1:{port}", "amqtt", mqtt5=False)
    finally:
        stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_amqtt(port: int) -> Callable[[], None]:
    """Run an amqtt broker on `port` in a daemon thread of this process; returns its stop.

    Only the anonymous-auth plugin is loaded: the default set adds $SYS publishing and packet
    logging nobody reads here. broker.start() returns once the listener is bound, so no port
    probe is needed (a probe's bare connect would be logged by amqtt as a broken client).
    amqtt speaks MQTT 3.1.1 only and refuses topics that start with "$", so the national
    profile ($dp) cannot pass through it: the demo sends native-profile traffic there. It
    also did not deliver QoS 1 messages queued for a clean_session=False client that was
    offline (amqtt 0.12.1, measured): fine for the demo, whose gateway subscribes before
    anything is published, but not a broker to deploy.
    """
    try:
        from amqtt.broker import Broker
    except ImportError:
        raise ConfigurationError(
            "no broker configured and mosquitto is not installed: set GEOWARN_MQTT_URL, "
            "apt-get install mosquitto, or pip install -e .[embedded]"
        ) from None
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
            "allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="amqtt")
    thread.start()

    async def _start() -> Broker:
        # Constructed inside the loop: amqtt creates asyncio objects bound to it.
        broker = Broker(config, loop=loop)
        await broker.start()
        return broker

    try:
        broker = asyncio.run_coroutine_threadsafe(_start(), loop).result(timeout=10)
    except Exception as exc:  # amqtt raises its own BrokerError, OSError, or a timeout
        loop.call_soon_threadsafe(loop.stop)
        raise ConfigurationError(f"in-process MQTT broker did not start on port {port}: "
                                 f"{exc}") from exc

    def stop() -> None:
        # Best effort at the end of the demo: whatever amqtt raises here changes nothing.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return stop

