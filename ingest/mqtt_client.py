"""The gateway's MQTT connection: paho-mqtt 2, MQTT 5, QoS 1, manual acknowledgement.

- Persistent session: clean_start off, a fixed client id, a session expiry, so messages that
  arrive while the gateway is down wait in the broker.
- Flow control by the broker: the CONNECT property Receive Maximum caps how many unacknowledged
  QoS 1 messages the broker sends us. paho's own max_inflight setting halves QoS 1 throughput
  (measured), so the cap lives here instead, and the receive queue can never overflow.
- Acks are sent only for messages of the current connection: after a reconnect the broker
  redelivers what was not acknowledged, and a packet id from the old connection may already
  name another message on the new one.
- MQTT 3.1.1 is a fallback for brokers without MQTT 5 (the in-process amqtt broker of the demo):
  it asks for a persistent session (clean_session=False), though whether messages wait for
  it while it is away is up to the broker (amqtt 0.12 does not queue them); there is no
  Receive Maximum, so the broker's own in-flight window and the bounded inbox are the only
  flow control.
- The network thread never blocks. When the inbox is full (the writer is behind, or the
  database is away) it stops reading the socket but goes on writing acknowledgements and
  sends its own PINGREQ every half keepalive: a thread blocked in a callback answers no
  keepalive, the broker or paho drops the connection, and every reconnect makes the broker
  send the whole in-flight window again (measured in the soak: 12 drops in 43 min, each with
  the inbox full, and Mosquitto 2.0.11 then exceeding the Receive Maximum).
- Our own reconnect loop with exponential backoff and full jitter; subscriptions are renewed on
  every connect (the session keeps them, but a broker that lost its state must not leave us deaf).
- Client id: `service_client_id`, "{username}:{name}" with a broker account, because GeoWarn's
  plugin binds client ids to usernames (a device can take no id but its own).
- A message served from the broker's retained store (retain flag set on delivery) is not new:
  its live copy was delivered when it was published. Only presence is retained by contract;
  any other retained message is acknowledged and counted (`retained_ignored`), never stored
  again on each reconnect.
- The time of an untimestamped national value is the broker's receive time that GeoWarn's
  plugin writes into the topic (`devices.decode.broker_receive_time`); it becomes the
  message's `received_at`, the same on every redelivery and at every gateway.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.decode import broker_receive_time
from geowarn.errors import GeoWarnError
from ingest.inbox import Inbox, InboxClosed
from ingest.pipeline import ReceivedMessage
from ingest.stats import IngestStats

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


def service_client_id(name: str, username: str | None) -> str:
    """The MQTT client id of gateway instance `name`: "{username}:{name}" when it logs in
    (the only form GeoWarn's plugin lets a service account use), else `name`."""
    return f"{username}:{name}" if username else name


def _is_presence(topic: str) -> bool:
    return topic.startswith("gw/v1/") and topic.endswith("/presence")


class MqttError(GeoWarnError):
    """A paho return code that is not success, translated in one place."""


def check_rc(rc: mqtt.MQTTErrorCode | int, what: str) -> None:
    if rc != mqtt.MQTT_ERR_SUCCESS:
        raise MqttError(f"{what} failed: {mqtt.error_string(int(rc))}")


@dataclass(frozen=True)
class AckToken:
    owner: str  # client id of the connection that received the message
    generation: int
    mid: int
    qos: int


class GatewayConnection:
    def __init__(self, *, host: str, port: int, client_id: str, topics: Sequence[str],
                 inbox: Inbox, receive_maximum: int,
                 username: str | None = None, password: str | None = None,
                 keepalive: int = 30, min_backoff: float = 0.2, max_backoff: float = 30.0,
                 mqtt5: bool = True, adopted: bool = False,
                 stats: IngestStats | None = None) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        # An adopted connection serves a dead peer's session (ingest.takeover): it never
        # reconnects, or it would take the session back from the peer that came back for it.
        self.adopted = adopted
        # Adopted, but the broker had no session under this id (a peer that never connected,
        # or whose session expired): nothing to serve; the session we made is dropped at once.
        self.no_session = False
        self.finished = threading.Event()
        self.stats = stats
        self.last_message_at = time.monotonic()  # when a message last arrived (drain checks)
        self.unacked = 0  # received on this connection and not yet acknowledged
        self.topics = list(topics)
        self.inbox = inbox
        self.receive_maximum = receive_maximum
        self.keepalive = keepalive
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.mqtt5 = mqtt5
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # SUBACK received on the current connection
        self._stop = threading.Event()
        self._generation = 0  # successful connections so far; acks carry it
        self._live = False  # the connection of `_generation` is up (acks may go out)
        self._paused_ping_at = 0.0  # when the paused loop last sent its own PINGREQ
        self._lock = threading.Lock()
        self._generation_changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        if mqtt5:
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv5, manual_ack=True)
        else:
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv311, clean_session=False,
                                      manual_ack=True)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # best effort while shutting down
            self.client.disconnect()
        if self._thread:
            self._thread.join(timeout=10)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _run(self) -> None:
        try:
            self._run_connection()
        except Exception as exc:  # the gateway sees `finished` and stops the process
            log.critical("MQTT network thread died (%s)", type(exc).__name__, exc_info=exc)
        finally:
            self.finished.set()

    def _run_connection(self) -> None:
        # paho writes a packet queued from another thread (our acks, from the writer) straight
        # to the socket unless it believes its own loop thread runs; two threads writing one
        # socket corrupt the stream. Naming this thread as paho's loop thread makes ack() only
        # queue the packet and wake select(), and this thread writes it.
        self.client._thread = threading.current_thread()
        attempt = 0
        while not self._stop.is_set():
            try:
                if self.mqtt5:
                    self.client.connect(self.host, self.port, keepalive=self.keepalive,
                                        clean_start=False,
                                        properties=self._connect_properties())
                else:
                    self.client.connect(self.host, self.port, keepalive=self.keepalive)
            except OSError as exc:
                if self.adopted:
                    return
                attempt += 1
                delay = self._backoff(attempt)
                log.warning("broker %s:%s unreachable (%s); retrying in %.1fs",
                            self.host, self.port, exc, delay)
                self._stop.wait(delay)
                continue
            attempt = 0
            # Runs until the connection drops; paho's own reconnect is not used.
            rc = mqtt.MQTT_ERR_SUCCESS
            paused = False
            while not self._stop.is_set() and rc == mqtt.MQTT_ERR_SUCCESS:
                if self.inbox.accepting():
                    if paused:
                        paused = False
                        self._resume_reading()
                    rc = self.client.loop(timeout=0.5)
                else:
                    if not paused:
                        paused = True
                        if self.stats is not None:
                            self.stats.add("read_pauses")
                    rc = self._loop_paused()
            self._connection_ended()
            if self.adopted:
                break
            if not self._stop.is_set():
                attempt += 1
                delay = self._backoff(attempt)
                log.warning("connection to broker lost (%s); reconnecting in %.1fs",
                            mqtt.error_string(int(rc)), delay)
                self._stop.wait(delay)

    # --- backpressure (network thread) ---------------------------------------------------
    def _loop_paused(self) -> mqtt.MQTTErrorCode:
        """One turn while the inbox is full: write what is queued (the writer's acks), keep
        the broker's keepalive with our own PINGREQ, read nothing. paho's keepalive check
        (loop_misc) is skipped: it would close a connection whose PINGRESP waits unread."""
        rc = self.client.loop_write() if self.client.want_write() else mqtt.MQTT_ERR_SUCCESS
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return rc
        now = time.monotonic()
        if now - self._paused_ping_at >= self.keepalive / 2:
            self._paused_ping_at = now
            rc = self.client._send_pingreq()  # paho has no public ping; queued, written below
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
            return self.client.loop_write()
        self.inbox.wait_for_room(0.05)  # acks queued meanwhile are written on the next turn
        return mqtt.MQTT_ERR_SUCCESS

    def _resume_reading(self) -> None:
        # Our PINGREQs' answers wait in the socket behind the messages not read yet: paho must
        # not count them as missing. Its own keepalive takes over from here.
        self.client._ping_t = 0

    def _connection_ended(self) -> None:
        self.connected.clear()
        with self._lock:
            self._live = False

    def _backoff(self, attempt: int) -> float:
        # Full jitter: many gateways restarting together do not reconnect in lockstep.
        return random.uniform(self.min_backoff,
                              min(self.max_backoff, self.min_backoff * 2 ** min(attempt, 16)))

    def wait_for_connections(self, count: int, timeout: float) -> bool:
        """Block until the broker accepted `count` connections in all (reconnects count)."""
        with self._lock:
            return self._generation_changed.wait_for(lambda: self._generation >= count, timeout)

    # --- callbacks (network thread) ----------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        if self.adopted and self.mqtt5 and not flags.session_present:
            # Subscribing would create a member of the share group that nobody serves.
            log.warning("adopted peer %s has no session at the broker; dropping it",
                        self.client_id)
            self.no_session = True
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            client.disconnect(properties=props)
            return
        with self._lock:
            self._generation += 1
            self._live = True
            self.unacked = 0  # the broker redelivers what the last connection left unacked
            self._generation_changed.notify_all()
        log.info("connected to %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        rc, _mid = client.subscribe([(t, 1) for t in self.topics])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", mqtt.error_string(int(rc)))
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: list[mqtt.ReasonCode], properties: Properties | None
                      ) -> None:
        refused = [f"{t} ({rc})" for t, rc in zip(self.topics, reason_codes, strict=False)
                   if rc.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
        log.info("subscribed to %d topics", len(self.topics) - len(refused))
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object,
                       flags: mqtt.DisconnectFlags, reason_code: mqtt.ReasonCode,
                       properties: Properties | None) -> None:
        self._connection_ended()
        self.subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        self.last_message_at = time.monotonic()
        # MQTT topics are UTF-8 and brokers check it; should one not be, it must still become a
        # dead letter rather than an exception that ends paho's network thread.
        topic = message._topic.decode("utf-8", "backslashreplace")
        if message.retain and not _is_presence(topic):
            if message.qos:
                client.ack(message.mid, message.qos)
            if self.stats is not None:
                self.stats.add("retained_ignored")
            log.info("ignored a retained message on %s (served again, not sent again)",
                     topic[:200])
            return
        token = AckToken(self.client_id, self._generation, message.mid, message.qos)
        received_at = broker_receive_time(topic) or datetime.now(UTC)
        # Never waits: a full inbox pauses reading in _run_connection instead.
        try:
            self.inbox.offer(ReceivedMessage(topic=topic, payload=bytes(message.payload),
                                           received_at=received_at, token=token))
        except InboxClosed:
            return  # stopping: not acknowledged, so the broker redelivers it
        if message.qos:
            with self._lock:
                self.unacked += 1

    def retire(self) -> None:
        """Leave every subscription (an expired peer's session stops getting a share); what
        the session still holds keeps arriving and is committed as usual."""
        if self.connected.is_set():
            self.client.unsubscribe(self.topics)

    def close_session(self) -> None:
        """Disconnect and have the broker delete this session (MQTT 5 session expiry 0)."""
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.disconnect(properties=props)
        if self._thread:
            self._thread.join(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish from any thread (command downlinks); raises MqttError if paho refuses."""
        if not self.connected.is_set():
            raise MqttError(f"not connected to the broker; {topic} not published")
        info = self.client.publish(topic, payload, qos=qos)
        check_rc(info.rc, f"publish to {topic}")

    # --- acknowledgement (writer thread) -----------------------------------------------------
    def ack(self, tokens: Sequence[object]) -> int:
        """Acknowledge committed messages; returns how many acks were queued.

        The lock is held throughout: the network thread takes it to mark the connection
        ended before it reconnects, so no PUBACK of an old packet id is queued once a new
        connection may exist (there the id may name another message)."""
        sent = 0
        with self._lock:
            if not self._live:
                return 0  # between connections: the broker redelivers them all
            for token in tokens:
                if (not isinstance(token, AckToken) or token.qos == 0
                        or token.owner != self.client_id):
                    continue
                if token.generation != self._generation:
                    continue  # from an earlier connection: the broker redelivers it
                rc = self.client.ack(token.mid, token.qos)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    # The connection dropped meanwhile; the redelivery is deduplicated.
                    log.debug("ack of mid %s not sent: %s", token.mid,
                              mqtt.error_string(int(rc)))
                    continue
                sent += 1
            self.unacked = max(0, self.unacked - sent)
        return sent
