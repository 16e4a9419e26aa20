"""What a device message means once decoded: the types every decoder returns and the ingest
gateway consumes. Pure data (frozen dataclasses); no I/O.

Channel keys: a native-profile device has one sensor kind, and its channel keys are the
catalogue's channel names ("opening", "rain"). A national-profile logger hosts several sensors,
so its channel keys are "{sensor_id}.{channel}", e.g. "L1_LF_1.opening", "L1_GP_1.disp_x".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Literal

from geowarn.errors import GeoWarnError

Profile = Literal["native", "national"]
DeviceStatus = Literal["active", "maintenance", "retired"]


class Quality(IntEnum):
    """Reliability of a stored reading (after Delft-FEWS: reliable, doubtful, unreliable).
    Only RELIABLE readings may raise a warning on their own."""

    RELIABLE = 0
    DOUBTFUL = 1
    UNRELIABLE = 2


class Reason:
    """Rejection reason codes: stored with every dead letter, counted by the gateway."""

    MALFORMED_JSON = "malformed_json"
    MALFORMED_FRAME = "malformed_frame"
    SCHEMA_VIOLATION = "schema_violation"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_DEVICE = "unknown_device"
    RETIRED_DEVICE = "retired_device"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_CHANNEL = "unknown_channel"
    UNKNOWN_SENSOR = "unknown_sensor"
    UNKNOWN_UNIT = "unknown_unit"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_FUTURE = "timestamp_future"
    TIMESTAMP_PAST = "timestamp_past"
    DUPLICATE_SEQUENCE = "duplicate_sequence"
    UNKNOWN_COMMAND = "unknown_command"  # a reply to a command GeoWarn never sent
    FOREIGN_REPLY = "foreign_reply"  # a reply to a command sent to another device
    INTERNAL_ERROR = "internal_error"  # GeoWarn failed on this message (a bug): class + message
    STORAGE_ERROR = "storage_error"  # the database refused this message alone


class DecodeError(GeoWarnError):
    """The whole message is rejected; `reason` is a Reason code, `detail` says exactly why."""

    def __init__(self, reason: str, detail: str, *, device_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.device_id = device_id


@dataclass(frozen=True)
class Calibration:
    """Per-channel correction from the registry: calibrated = canonical * scale + offset."""

    scale: float = 1.0
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.scale + self.offset


@dataclass(frozen=True)
class DeviceInfo:
    """What a decoder needs to know about the sending device (from the registry)."""

    device_id: str
    profile: Profile
    status: DeviceStatus
    # Native devices: their sensor kind. National loggers: None (any catalogue sensor, learnt)
    # or the kind they are registered as (only that kind's national code is accepted).
    kind: str | None = None
    calibration: Mapping[str, Calibration] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """One value in canonical units with calibration applied."""

    device_id: str
    channel: str  # channel key, see the module docstring
    kind: str  # catalogue sensor kind
    ts: datetime  # timezone-aware UTC
    value: float
    quality: Quality = Quality.RELIABLE


@dataclass(frozen=True)
class Rejection:
    """One part of a message that was refused while the rest was kept."""

    reason: str
    detail: str
    channel: str | None = None
    ts: datetime | None = None


@dataclass(frozen=True)
class Telemetry:
    device_id: str
    seq: int | None
    readings: tuple[Reading, ...]
    rejections: tuple[Rejection, ...] = ()
    # A national $dp frame may carry the logger's status group (S1_ZT_1) beside its readings.
    status: StatusReport | None = None


@dataclass(frozen=True)
class StatusReport:
    device_id: str
    ts: datetime
    battery_pct: float | None = None
    battery_v: float | None = None
    supply_v: float | None = None
    signal_dbm: float | None = None
    temperature_c: float | None = None
    firmware: str | None = None
    sensor_state: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Presence:
    device_id: str
    online: bool
    ts: datetime | None = None


@dataclass(frozen=True)
class CommandReply:
    command_id: str
    ok: bool
    device_id: str | None = None  # national replies on $dr carry no device id
    detail: str = ""
    data: Mapping[str, object] = field(default_factory=dict)


Decoded = Telemetry | StatusReport | Presence | CommandReply
