"""Publishing simulated or recorded traffic over real MQTT with QoS 1.

Unacknowledged messages are capped here, in the application, with a semaphore released by
PUBACK: paho's own max_inflight setting halves QoS 1 throughput (measured on this machine),
and past 65,535 unacknowledged messages `publish()` returns an error code instead of raising,
so every return code is checked.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

import paho.mqtt.client as mqtt

from geowarn.errors import GeoWarnError
from ingest.mqtt_client import check_rc


class PublishError(GeoWarnError):
    pass


class Publisher:
    def __init__(self, host: str, port: int, *, client_id: str = "", inflight: int = 1000,
                 username: str | None = None, password: str | None = None,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
                 clean_session: bool = True) -> None:
        # A persistent session (clean_session False, fixed client id) lets paho resend
        # unacknowledged messages after the broker restarts, which the broker then accepts.
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol,
                                  clean_session=None if v5 else clean_session)
        self.client.max_inflight_messages_set(0)  # 0 = no paho-side cap: ours is below
        if username:
            self.client.username_pw_set(username, password)
        self.who = username or "anonymous"
        self._window = threading.BoundedSemaphore(inflight)
        self._unacked = 0
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._refused_connect: str | None = None
        self.sent = 0
        # MQTT 5 PUBACKs carry a reason: what the broker refused (e.g. "Not authorized" when
        # the ACL forbids the topic), by reason. MQTT 3.1.1 brokers drop such messages unsaid.
        self.refused: Counter[str] = Counter()
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        try:
            if v5:
                self.client.connect(host, port, keepalive=30, clean_start=clean_session)
            else:
                self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot reach the broker at {host}:{port}: "
                               f"{exc.strerror or exc}") from None
        self.client.loop_start()
        if not self._connected.wait(10):
            self.client.loop_stop()
            raise PublishError(f"could not connect to the broker at {host}:{port}")
        if self._refused_connect is not None:
            self.client.loop_stop()
            hint = ("it requires credentials" if not username else
                    "check the password (a device's is the secret devices import wrote)")
            raise PublishError(f"the broker at {host}:{port} refused {self.who}: "
                               f"{self._refused_connect}; {hint}")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: mqtt.ReasonCode, properties: object) -> None:
        if reason_code.is_failure and not self._connected.is_set():
            self._refused_connect = str(reason_code)
            client.disconnect()  # no reconnect loop with credentials that cannot work
        self._connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: mqtt.ReasonCode, properties: object) -> None:
        self._window.release()
        with self._lock:
            if reason_code.is_failure:
                self.refused[str(reason_code)] += 1
            self._unacked -= 1
            if self._unacked == 0:
                self._drained.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if qos == 0:
            info = self.client.publish(topic, payload, qos=0, retain=retain)
            check_rc(info.rc, f"publish to {topic}")
            self.sent += 1
            return
        if not self._window.acquire(timeout=60):
            raise PublishError("no PUBACK for 60 s: is the broker still there?")
        with self._lock:
            self._unacked += 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        # Not connected (the broker restarts): paho keeps a QoS 1 message and sends it after
        # reconnecting, and its PUBACK releases the window then. Anything else is a failure.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._window.release()
            with self._lock:
                self._unacked -= 1
            check_rc(info.rc, f"publish to {topic}")
        self.sent += 1

    def publish_all(self, messages: Iterable[tuple[str, bytes]], *, rate: float | None = None
                    ) -> int:
        """Publish at most `rate` messages per second (None: as fast as acks allow)."""
        started = time.perf_counter()
        n = 0
        for topic, payload in messages:
            if rate:
                due = started + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing to a target rate, not waiting for an event
            self.publish(topic, payload)
            n += 1
        return n

    def wait_acked(self, timeout: float = 60.0) -> bool:
        with self._lock:
            return self._drained.wait_for(lambda: self._unacked == 0, timeout=timeout)

    def close(self) -> None:
        self.wait_acked()
        self.client.disconnect()
        self.client.loop_stop()
