"""The Mosquitto configuration GeoWarn ships (ingest/mosquitto.conf)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_CONFIG = Path(__file__).with_name("mosquitto.conf")


def gateway_broker_config(*, password_file: Path | None = None,
                          acl_file: Path | None = None) -> str:
    """The shipped configuration, with authentication appended when files are given."""
    text = SHIPPED_CONFIG.read_text()
    if password_file is None:
        text += "\nallow_anonymous true\n"
    else:
        text += f"\nallow_anonymous false\npassword_file {password_file}\n"
    if acl_file is not None:
        text += f"acl_file {acl_file}\n"
    return text
