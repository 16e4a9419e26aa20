"""The ingest gateway's configuration: broker, batching, memory bound, takeover, and the
topics it subscribes to (ingest.gateway runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from geowarn.settings import Settings

NATIVE_TOPICS = ("gw/v1/+/telemetry", "gw/v1/+/status", "gw/v1/+/presence", "gw/v1/+/reply/+")
# National devices' topics as GeoWarn's Mosquitto plugin rewrites them (bound to the device).
# $dp carries the broker's receive time as the last level (the time of untimestamped values);
# gw/nat/+/dp without it is what earlier builds of the plugin wrote.
NATIONAL_TOPICS = ("gw/nat/+/dp/+", "gw/nat/+/dp", "gw/nat/+/dr", "gw/nat/+/crsp/+")
# The raw national topics, for brokers without the plugin (development): Mosquitto does not
# deliver "$" topics to shared subscriptions, so these are subscribed unshared.
NATIONAL_RAW_TOPICS = ("$dp", "$dp/+", "$dr", "$dr/+", "$crsp/+")
# Room kept outside the inbox's byte budget, in messages of the largest size: paho's read
# buffer (it grows by doubling, so up to two), the message waiting for room in the inbox, the
# decoder's text of one message and its parse, and allocator slack, with a margin (measured
# with 1 MiB messages: tests/test_ingest_memory.py). GEOWARN_GATEWAY_MEMORY_BYTES bounds all.
_TRANSIENT_MESSAGES = 8


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    group: str | None
    host: str
    port: int
    username: str | None
    password: str | None
    inflight: int
    batch_messages: int
    batch_seconds: float
    keepalive: int
    max_payload: int
    max_clock_skew_s: float
    max_backlog_days: float
    duplicate_seq_window: timedelta
    stats_interval_s: float = 10.0  # counters saved to ingest_stats (`geowarn health`)
    log_interval_s: float = 60.0  # a one-line summary in the log (full JSON at debug level)
    # A peer of the group silent this long, whose instance lock is free, is adopted.
    takeover_after: timedelta = timedelta(seconds=15)
    # False: MQTT 3.1.1 for brokers without MQTT 5 (the demo's in-process amqtt broker). Such
    # brokers have no shared subscriptions either, so run one gateway with group=None there.
    mqtt5: bool = True
    # Message bytes the gateway holds at most, from receipt to acknowledgement.
    memory_bytes: int = 64 * 1024 * 1024
    # A peer silent this long is forgotten; one being served has its session retired.
    peer_expiry: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.memory_bytes < 2 * _TRANSIENT_MESSAGES * self.max_payload:
            from geowarn.errors import ConfigurationError

            raise ConfigurationError(
                f"GEOWARN_GATEWAY_MEMORY_BYTES ({self.memory_bytes}) must be at least "
                f"{2 * _TRANSIENT_MESSAGES} x GEOWARN_MAX_PAYLOAD_BYTES ({self.max_payload})")

    @property
    def inbox_bytes(self) -> int:
        """The inbox's byte budget: the memory bound less room for transient copies."""
        return self.memory_bytes - _TRANSIENT_MESSAGES * self.max_payload

    @property
    def batch_bytes(self) -> int:
        """A batch closes at this many payload bytes: at most four batches are alive (being
        built, two decoded and waiting, one committing), so their decoded readings, a few
        times their payload, stay a fraction of the memory bound."""
        return max(self.memory_bytes // 16, 1)

    @classmethod
    def from_settings(cls, s: Settings, **overrides: object) -> GatewayConfig:
        values: dict[str, object] = dict(
            name=s.gateway_name, group=s.gateway_group, host=s.mqtt_host, port=s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            inflight=s.gateway_inflight, batch_messages=s.gateway_batch_messages,
            batch_seconds=s.gateway_batch_ms / 1000.0, keepalive=s.mqtt_keepalive_s,
            max_payload=s.max_payload_bytes, max_clock_skew_s=s.max_clock_skew_s,
            max_backlog_days=s.max_backlog_days,
            duplicate_seq_window=timedelta(seconds=s.duplicate_seq_window_s),
            takeover_after=timedelta(seconds=s.gateway_takeover_s),
            memory_bytes=s.gateway_memory_bytes,
            peer_expiry=timedelta(seconds=s.gateway_peer_expiry_s))
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def topics(self) -> list[str]:
        topics = [*NATIVE_TOPICS, *NATIONAL_TOPICS]
        if self.group:
            # MQTT 5 shared subscriptions: the gateways of one group split the stream.
            topics = [f"$share/{self.group}/{t}" for t in topics]
        return [*topics, *NATIONAL_RAW_TOPICS]
