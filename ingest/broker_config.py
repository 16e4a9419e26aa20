"""The Mosquitto configuration GeoWarn ships (ingest/mosquitto.conf) and its plugin.

The plugin (ingest/mosquitto_plugin/geowarn_national.c) binds national-profile messages to
the authenticated device: `$dp` from user X becomes `gw/nat/X/dp` (likewise `$dr` and
`$crsp/...`). It is built here from source with the system C compiler and Mosquitto's plugin
headers (Debian: mosquitto-dev), so it always matches the broker it is loaded into.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from geowarn.errors import ConfigurationError

SHIPPED_CONFIG = Path(__file__).with_name("mosquitto.conf")
PLUGIN_SOURCE = Path(__file__).parent / "mosquitto_plugin" / "geowarn_national.c"
PLUGIN_HEADER = Path("/usr/include/mosquitto_broker.h")


def gateway_broker_config(*, password_file: Path | None = None, acl_file: Path | None = None,
                          plugin: Path | None = None) -> str:
    """The shipped configuration, with authentication and the plugin appended when given."""
    text = SHIPPED_CONFIG.read_text()
    if password_file is None:
        text += "\nallow_anonymous true\n"
    else:
        text += f"\nallow_anonymous false\npassword_file {password_file}\n"
    if acl_file is not None:
        text += f"acl_file {acl_file}\n"
    if plugin is not None:
        text += f"plugin {plugin}\n"
    return text


def plugin_buildable() -> str | None:
    """None when the plugin can be built here, else what to install."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "a C compiler (apt-get install gcc)"
    if not PLUGIN_HEADER.exists():
        return "Mosquitto's plugin headers (apt-get install mosquitto-dev)"
    return None


def build_plugin(out_dir: Path) -> Path:
    """Compile the plugin into out_dir (once per source version) and return the .so path."""
    missing = plugin_buildable()
    if missing:
        raise ConfigurationError(f"cannot build the GeoWarn Mosquitto plugin: install {missing}")
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"geowarn_national-{digest}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc") or "cc"
    tmp = target.with_suffix(".tmp")
    result = subprocess.run(
        [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         "-o", str(tmp), str(PLUGIN_SOURCE)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigurationError(f"building the Mosquitto plugin failed:\n{result.stderr}")
    tmp.rename(target)
    return target
