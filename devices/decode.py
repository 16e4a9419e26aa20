"""The one entry point the ingest gateway calls: `decode(topic, payload, ...)` picks the profile
from the topic, checks the sending device against the registry and returns a Decoded message.

Pure: no database, no network. The registry is reached through `lookup`, the clock through
`now`, so a test or `geowarn contracts check` can replay any payload at any moment.

Whole-message problems raise DecodeError; per-reading problems become Telemetry.rejections
while the good readings are kept. A device in maintenance still reports, but its readings are
marked DOUBTFUL: technicians moving a sensor must not raise a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from devices import national, national_commands, native
from devices.canonical import ReadingContext
from devices.catalogue import Catalogue, load_catalogue
from devices.messages import Decoded, DecodeError, DeviceInfo, Quality, Reason
from devices.timestamps import TimeWindow

Lookup = Callable[[str], DeviceInfo | None]
NATIONAL_BOUND_PREFIX = "gw/nat/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def decode(
    topic: str,
    payload: bytes,
    *,
    now: datetime,
    lookup: Lookup,
    catalogue: Catalogue | None = None,
    max_payload: int = 256 * 1024,
    max_clock_skew_s: float = 300,
    max_backlog_days: float = 90,
) -> Decoded:
    """Decode one uplink MQTT message; raises DecodeError when the whole message is refused."""
    if now.tzinfo is None:
        raise ValueError("decode needs a timezone-aware `now`")
    if len(payload) > max_payload:
        raise DecodeError(
            Reason.PAYLOAD_TOO_LARGE,
            f"payload of {len(payload)} bytes exceeds the limit of {max_payload} bytes",
        )
    catalogue = catalogue or load_catalogue()
    window = TimeWindow(now, max_clock_skew_s, max_backlog_days)
    topic, bound_device = _unbind(topic)

    if topic.startswith(native.TOPIC_PREFIX):
        device_id, _, _ = native.parse_topic(topic)
        device = _device(lookup, device_id, "native", topic)
        return native.decode_native(
            topic, payload, device=device, catalogue=catalogue, window=window,
            reading_ctx=_context(device, window),
        )
    if topic == "$dp" or topic.startswith("$dp/"):
        ftype, device_id, sensors = national.read_dp(topic, payload)
        device = _device(lookup, device_id, "national", topic)
        return national.decode_dp(
            ftype, sensors, device=device, catalogue=catalogue,
            ctx=_context(device, window), now=now,
        )
    if topic == "$dr" or topic.startswith(("$dr/", "$crsp/")):
        reply = national_commands.parse_national_reply(topic, payload)
        if bound_device is not None:
            reply = replace(reply, device_id=bound_device)
        if reply.device_id is not None:
            _device(lookup, reply.device_id, "national", topic)
        return reply
    raise DecodeError(
        Reason.UNKNOWN_TOPIC,
        f"topic {topic!r} belongs to no profile (native: gw/v1/{{device_id}}/...; "
        "national: $dp, $dr, $crsp/{command_id})",
    )


def broker_receive_time(topic: str) -> datetime | None:
    """The broker's receive time that GeoWarn's plugin writes into a bound `$dp` topic
    (gw/nat/{id}/dp/{microseconds since the epoch}), or None for any other topic. It is the
    time of the frame's untimestamped values, the same however often the frame is served."""
    if not topic.startswith(NATIONAL_BOUND_PREFIX):
        return None
    parts = topic.split("/")
    if len(parts) != 5 or parts[3] != "dp" or not parts[4].isascii() \
            or not parts[4].isdigit() or len(parts[4]) > 17:
        return None
    return _EPOCH + timedelta(microseconds=int(parts[4]))


def _unbind(topic: str) -> tuple[str, str | None]:
    """Topics as GeoWarn's Mosquitto plugin rewrites national messages, bound to the
    authenticated device (ingest/mosquitto_plugin): back to the protocol's own topic form.

    gw/nat/{id}/dp/{us} -> $dp/{id};  gw/nat/{id}/dr -> $dr/{id};
    gw/nat/{id}/crsp/{cmd} -> $crsp/{cmd}
    """
    if not topic.startswith(NATIONAL_BOUND_PREFIX):
        return topic, None
    parts = topic.split("/")
    if len(parts) == 5 and parts[3] == "dp" and broker_receive_time(topic) is not None:
        return f"$dp/{parts[2]}", parts[2]
    if len(parts) == 4 and parts[3] in ("dp", "dr"):
        return f"${parts[3]}/{parts[2]}", parts[2]
    if len(parts) == 5 and parts[3] == "crsp":
        return f"$crsp/{parts[4]}", parts[2]
    raise DecodeError(Reason.UNKNOWN_TOPIC, f"topic {topic!r} is not a bound national topic")


def _device(lookup: Lookup, device_id: str, profile: str, topic: str) -> DeviceInfo:
    device = lookup(device_id)
    if device is None:
        raise DecodeError(
            Reason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered",
            device_id=device_id,
        )
    if device.status == "retired":
        raise DecodeError(
            Reason.RETIRED_DEVICE, f"device {device_id!r} is retired", device_id=device_id
        )
    if device.profile != profile:
        raise DecodeError(
            Reason.TOPIC_MISMATCH,
            f"device {device_id!r} is registered with the {device.profile} profile but "
            f"published on {profile} topic {topic!r}",
            device_id=device_id,
        )
    return device


def _context(device: DeviceInfo, window: TimeWindow) -> ReadingContext:
    quality = Quality.DOUBTFUL if device.status == "maintenance" else Quality.RELIABLE
    return ReadingContext(
        device_id=device.device_id, window=window, calibration=device.calibration,
        quality=quality,
    )
