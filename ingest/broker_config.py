"""The Mosquitto configuration GeoWarn ships (ingest/mosquitto.conf) and its plugin.

The plugin (ingest/mosquitto_plugin/geowarn_national.c) binds national-profile messages to
the authenticated device (`$dp` from user X becomes `gw/nat/X/dp/{broker receive time}`,
likewise `$dr` and `$crsp/...`), and, given the service accounts, binds client ids to
usernames and refuses device subscriptions outside their own command topics. It is built here
from source with the system C compiler and Mosquitto's plugin headers (Debian: mosquitto-dev
and libmosquitto-dev), so it always matches the broker it is loaded into.

Limits (see `BrokerLimits`) come from the device contract and the settings, so the broker
refuses what the gateway would refuse anyway before it costs memory anywhere.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from geowarn.errors import ConfigurationError

SHIPPED_CONFIG = Path(__file__).with_name("mosquitto.conf")
PLUGIN_SOURCE = Path(__file__).parent / "mosquitto_plugin" / "geowarn_national.c"
PLUGIN_HEADERS = (Path("/usr/include/mosquitto_broker.h"), Path("/usr/include/mosquitto.h"))
_HEADER_PACKAGES = {"mosquitto_broker.h": "mosquitto-dev", "mosquitto.h": "libmosquitto-dev"}

# MQTT topics are at most 65,535 bytes; the rest of a PUBLISH header and its properties fit in
# the remaining KiB. A packet above max_packet_size makes the broker disconnect the sender.
_PACKET_OVERHEAD = 65_536 + 1024
# Typical size of one device message on the wire (one sample set, native or national): the
# broker's per-client queue is sized for a day of one such message a minute per device.
_TYPICAL_MESSAGE_BYTES = 2048
_BACKLOG_MESSAGES_PER_DEVICE = 24 * 60
_MIN_QUEUE_BYTES = 64 * 1024 * 1024
_MAX_QUEUE_BYTES = 4 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class BrokerLimits:
    """What the broker accepts and holds per client.

    - message_size_limit: twice the gateway's payload limit (GEOWARN_MAX_PAYLOAD_BYTES,
      256 KiB by default, itself about twice the largest legitimate message: a backlog
      message of 1000 readings, the contract's maximum, with the longest channel keys and
      timestamps; see tests/test_broker_limits.py). A payload up to this size reaches the
      gateway, which dead-letters it as `payload_too_large` (a record the operator sees); a
      larger one is refused by the broker before it costs memory anywhere (MQTT 5: PUBACK
      0x95 packet too large; MQTT 3.1.1 clients get a PUBACK, and the message is dropped).
    - max_packet_size: the payload limit plus a maximal topic and properties.
    - max_queued_bytes: per client (in practice: the gateways' sessions, since devices
      receive only their own commands): a day of backlog, one typical message a minute, for
      every registered device (at least 64 MiB, at most 4 GiB); the count is unlimited so a
      large fleet's small messages are not dropped by count. Past it, Mosquitto drops QoS 1
      messages for that client: size it for the longest gateway outage you must absorb.
    - device rate (the plugin; Mosquitto 2.0 has no rate limit of its own): each device may
      publish a burst of 3000 messages (two days of one message a minute: a backlog upload
      after an outage goes through at once) refilled at 10 a second (600 times a device
      reporting every minute); past it, a publish is refused and the broker closes the
      connection. Service accounts are not limited.
    """

    message_size_limit: int
    max_packet_size: int
    max_queued_bytes: int
    max_queued_messages: int = 0
    max_inflight_messages: int = 1000
    device_messages_per_s: float = 10.0
    device_burst: int = 3000

    @classmethod
    def for_fleet(cls, *, max_payload_bytes: int, devices: int,
                  inflight: int = 1000) -> BrokerLimits:
        queue = devices * _BACKLOG_MESSAGES_PER_DEVICE * _TYPICAL_MESSAGE_BYTES
        return cls(message_size_limit=2 * max_payload_bytes,
                   max_packet_size=2 * max_payload_bytes + _PACKET_OVERHEAD,
                   max_queued_bytes=min(max(queue, _MIN_QUEUE_BYTES), _MAX_QUEUE_BYTES),
                   max_inflight_messages=inflight)

    def lines(self) -> dict[str, str]:
        return {"message_size_limit": str(self.message_size_limit),
                "max_packet_size": str(self.max_packet_size),
                "max_queued_bytes": str(self.max_queued_bytes),
                "max_queued_messages": str(self.max_queued_messages),
                "max_inflight_messages": str(self.max_inflight_messages)}


def _apply_limits(text: str, limits: BrokerLimits) -> str:
    """Replace the shipped values of the limit options (each appears once) by `limits`."""
    for option, value in limits.lines().items():
        text, count = re.subn(rf"^{option} .*$", f"{option} {value}", text, flags=re.M)
        if count != 1:
            raise ConfigurationError(f"{SHIPPED_CONFIG.name} must set {option} exactly once")
    return text


def gateway_broker_config(*, password_file: Path | None = None, acl_file: Path | None = None,
                          plugin: Path | None = None, service_users: tuple[str, ...] = (),
                          limits: BrokerLimits | None = None) -> str:
    """The shipped configuration, with limits, authentication and the plugin when given.

    `service_users` (with a password and ACL file) turns on the plugin's client-id binding
    and subscription policy; without a password file the broker is anonymous (development)."""
    text = SHIPPED_CONFIG.read_text()
    if limits is not None:
        text = _apply_limits(text, limits)
    if password_file is None:
        text += "\nallow_anonymous true\n"
    else:
        text += f"\nallow_anonymous false\npassword_file {password_file}\n"
    if acl_file is not None:
        text += f"acl_file {acl_file}\n"
    if plugin is not None:
        text += f"plugin {plugin}\n"
        if service_users:
            if password_file is None or acl_file is None:
                raise ConfigurationError("the plugin's service accounts need a password file "
                                         "and an ACL file")
            text += f"plugin_opt_service_users {','.join(service_users)}\n"
            if limits is not None:
                text += (f"plugin_opt_device_rate {limits.device_messages_per_s:g},"
                         f"{limits.device_burst}\n")
    return text


def plugin_buildable() -> str | None:
    """None when the plugin can be built here, else what to install."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "a C compiler (apt-get install gcc)"
    missing = [_HEADER_PACKAGES[h.name] for h in PLUGIN_HEADERS if not h.exists()]
    if missing:
        return f"Mosquitto's plugin headers (apt-get install {' '.join(missing)})"
    return None


@dataclass(frozen=True)
class BuiltPlugin:
    path: Path
    compiled: bool  # False: an up-to-date build of the same source was already there


def build_plugin(out_dir: Path) -> BuiltPlugin:
    """Compile the plugin into out_dir (once per source version)."""
    missing = plugin_buildable()
    if missing:
        raise ConfigurationError(f"cannot build the GeoWarn Mosquitto plugin: install {missing}")
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"geowarn_national-{digest}.so"
    if target.exists():
        return BuiltPlugin(target, compiled=False)
    compiler = shutil.which("cc") or shutil.which("gcc") or "cc"
    tmp = target.with_suffix(".tmp")
    result = subprocess.run(
        [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         "-o", str(tmp), str(PLUGIN_SOURCE)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigurationError(f"building the Mosquitto plugin failed:\n{result.stderr}")
    tmp.chmod(0o644)
    tmp.rename(target)
    return BuiltPlugin(target, compiled=True)
