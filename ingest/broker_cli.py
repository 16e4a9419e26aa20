"""`geowarn devices broker-config DIR`: Mosquitto's passwd, acl and mosquitto.conf (with the
national-profile plugin) for the registered devices and the gateway.

It lives in ingest, beside the broker configuration and plugin it writes; the registry and
the password/ACL rules are devices'. geowarn/cli.py adds the command under `geowarn devices`
("devices broker-config" in its table), so devices, a layer below, does not import ingest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from devices import broker_acl
from geowarn.db import connect
from geowarn.settings import get_settings
from ingest.broker_setup import Listen, write_broker_setup


def register(sub: argparse._SubParsersAction) -> None:
    """Add `broker-config` to the subcommands of `geowarn devices`."""
    b = sub.add_parser("broker-config",
                        help="write Mosquitto's passwd, acl and mosquitto.conf (with plugin)")
    b.add_argument("dir", type=Path)
    b.add_argument("--listen", required=True, metavar="ADDRESS:PORT",
                   help="where the broker listens, e.g. 127.0.0.1:1883 (this host only) or "
                        "0.0.0.0:1883 (every interface)")
    b.add_argument("--broker-user", default="mosquitto",
                   help="the user Mosquitto runs as (it drops to it when started as root); "
                        "run as root, this owns passwd, acl and DIR/data (default mosquitto)")
    b.add_argument("--gateway-user", help="gateway account (default GEOWARN_MQTT_USERNAME "
                   f"or {broker_acl.DEFAULT_GATEWAY_USER})")
    b.add_argument("--no-bare-dp", action="store_true",
                   help="national loggers may publish on $dp/{id} only, not on bare $dp")
    b.set_defaults(func=_broker_config)


def _broker_config(args: argparse.Namespace) -> int:
    settings = get_settings()
    user = args.gateway_user or settings.mqtt_username or broker_acl.DEFAULT_GATEWAY_USER
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    listen = Listen.parse(args.listen)
    with connect(autocommit=True) as conn:
        setup = write_broker_setup(conn, args.dir, listen=listen, gateway_user=user,
                                   gateway_password=password,
                                   allow_bare_dp=not args.no_bare_dp,
                                   broker_user=args.broker_user,
                                   max_payload_bytes=settings.max_payload_bytes,
                                   inflight=settings.gateway_inflight)
    for line in setup.report():
        print(line)
    if setup.files.new_gateway_secret:
        print(f"gateway password for {setup.files.gateway_user} (shown once; set "
              f"GEOWARN_MQTT_PASSWORD to it): {setup.files.new_gateway_secret}")
    return 0
