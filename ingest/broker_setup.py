"""`geowarn devices broker-config DIR`: everything a Mosquitto needs to serve GeoWarn, in DIR.

- `passwd` and `acl` from the registry (devices/broker_acl.py), mode 0600, owned by the
  broker's user when run as root: Mosquitto started as root drops to its own user (default
  `mosquitto`) before it reads them;
- the plugin, compiled from source (or reused when that source was built before);
- `mosquitto.conf`: the shipped settings with limits for this fleet, an explicit listener
  (address and port given, never "all interfaces" by default), the password and ACL files,
  the plugin with the service accounts, `user` and a persistence folder `DIR/data` the
  broker's user can write.

It reports what it did (`BrokerSetup`) so the command can say so.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devices import broker_acl
from geowarn.errors import InvalidInput
from ingest.broker_config import (
    PLUGIN_SOURCE,
    BrokerLimits,
    BuiltPlugin,
    build_plugin,
    gateway_broker_config,
    plugin_buildable,
)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """'ADDRESS:PORT' ('127.0.0.1:1883', '[::1]:1883', '0.0.0.0:8883')."""
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInput(f"--listen {text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:1883")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def in_use(self) -> bool:
        """True when something already accepts connections there (another broker?)."""
        try:
            with socket.create_connection((self.host if self.host not in ("0.0.0.0", "::")
                                           else "127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


@dataclass(frozen=True)
class BrokerSetup:
    files: broker_acl.BrokerFiles
    conf: Path
    data_dir: Path
    listen: Listen
    limits: BrokerLimits
    plugin: BuiltPlugin | None
    plugin_missing: str | None  # what to install when the plugin could not be built
    owner: str  # the user that owns passwd, acl and data/
    run_as: str | None  # the `user` line: Mosquitto started as root drops to it
    warnings: tuple[str, ...]

    def report(self) -> list[str]:
        f = self.files
        lines = [f"wrote {f.passwd} ({f.devices} device(s) + gateway {f.gateway_user}) and "
                 f"{f.acl}: owner {self.owner}, mode 0600"]
        if self.plugin is not None:
            verb = "compiled" if self.plugin.compiled else "up to date (same source)"
            lines.append(f"plugin {verb}: {self.plugin.path} from {PLUGIN_SOURCE.name}")
        lines.append(
            f"wrote {self.conf}: listener {self.listen}, persistence in {self.data_dir}/, "
            + ", ".join(f"{k} {v}" for k, v in self.limits.lines().items()))
        if self.plugin is not None:
            lines.append(f"device publish rate (plugin): {self.limits.device_messages_per_s:g}"
                         f"/s, burst {self.limits.device_burst}")
        who = f" (as root it drops to user {self.run_as})" if self.run_as else ""
        lines.append(f"run: mosquitto -c {self.conf}{who}; SIGHUP rereads passwd and acl")
        return lines + [f"warning: {w}" for w in self.warnings]


def _owner(broker_user: str) -> tuple[str, tuple[int, int] | None, str | None]:
    """(owner name, (uid, gid) to chown to or None, `user` line or None)."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0:
        # Cannot chown: the broker must run as this user (Mosquitto only drops from root).
        return me, None, None
    try:
        entry = pwd.getpwnam(broker_user)
    except KeyError:
        raise InvalidInput(f"broker user {broker_user!r} does not exist; create it or pass "
                           "--broker-user (the user Mosquitto runs as)") from None
    return broker_user, (entry.pw_uid, entry.pw_gid), broker_user


def _unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder of `path` (or above) that user uid/gid cannot enter, if any."""
    groups = {g for g in os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)}
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


def write_broker_setup(conn: psycopg.Connection, directory: Path, *, listen: Listen,
                       gateway_user: str, gateway_password: str | None = None,
                       allow_bare_dp: bool = True, broker_user: str = "mosquitto",
                       max_payload_bytes: int = 256 * 1024,
                       inflight: int = 1000) -> BrokerSetup:
    if not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    directory = directory.resolve()
    owner_name, owner, run_as = _owner(broker_user)
    files = broker_acl.write_broker_config(conn, directory, gateway_user=gateway_user,
                                           gateway_password=gateway_password,
                                           allow_bare_dp=allow_bare_dp, owner=owner)
    warnings: list[str] = []
    if owner is None and owner_name != broker_user:
        warnings.append(f"not run as root, so the files belong to {owner_name}: run mosquitto "
                        f"as {owner_name}, or rerun this as root to give them to {broker_user}")
    data_dir = directory / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    if owner is not None:
        os.chown(data_dir, *owner)
        blocked = _unreachable(directory, *owner)
        if blocked is not None:
            warnings.append(f"user {owner_name} cannot enter {blocked}, so the broker cannot "
                            f"read its files: chmod o+x {blocked} or choose another folder")
    missing = plugin_buildable()
    plugin = None if missing else build_plugin(directory)
    if missing:
        warnings.append(f"the GeoWarn plugin was not built (install {missing}): national "
                        "loggers on bare $dp can speak for each other, client ids are not "
                        "bound to usernames and devices may join shared subscriptions")
    limits = BrokerLimits.for_fleet(max_payload_bytes=max_payload_bytes,
                                    devices=files.devices, inflight=inflight)
    text = gateway_broker_config(password_file=files.passwd, acl_file=files.acl,
                                 plugin=plugin.path if plugin else None,
                                 service_users=(gateway_user,), limits=limits)
    text += f"listener {listen.port} {listen.host}\npersistence_location {data_dir}/\n"
    if run_as:
        text += f"user {run_as}\n"
    conf = directory / "mosquitto.conf"
    conf.write_text(text)
    if listen.in_use():
        warnings.append(f"something already listens on {listen} (another broker?); choose "
                        "another --listen or stop it")
    return BrokerSetup(files=files, conf=conf, data_dir=data_dir, listen=listen, limits=limits,
                       plugin=plugin, plugin_missing=missing, owner=owner_name, run_as=run_as,
                       warnings=tuple(warnings))
