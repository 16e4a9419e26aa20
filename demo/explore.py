"""The demo's last step: commands to try next, printed so that they run as printed.

A newcomer who ran `bash dev.sh demo` has no `geowarn` on PATH (it is in the project's
virtual environment), so the commands start with the path of the `geowarn` this demo runs
from, unless that one is what PATH finds, plus how to activate the environment instead. When
the demo ran on GEOWARN_DATABASE_URL, the commands need it too (they say so).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def geowarn_prefix() -> tuple[str, str | None]:
    """How to type `geowarn` in this shell, and a hint for a shorter way (or None)."""
    script = Path(sys.executable).parent / "geowarn"
    on_path = shutil.which("geowarn")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "geowarn", None
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m geowarn", None
    try:
        shown = str(script.relative_to(Path.cwd()))
    except ValueError:
        shown = str(script)
    activate = Path(shown).parent / "activate"
    return shlex.quote(shown), f"or first run `. {activate}`, then type plain `geowarn`"


def explore_commands(storm_device: str, crack_meter: str, gnss: str, hazard: str
                     ) -> list[str]:
    """The commands, without the `geowarn` in front (read-only; nothing is written)."""
    return [f"readings {storm_device} --channel rain --since 6h",
            "alerts list",
            f"readings {crack_meter} --channel opening --since 2h",
            "deadletters --since 1h",
            "devices list",
            f"devices show {gnss}",
            "hazards export --kind shelters",
            f"hazards shelters {hazard}",
            "ingest --stats",
            "simulate --help"]


def explore_lines(commands: list[str], *, database_url_set: bool) -> list[str]:
    prefix, hint = geowarn_prefix()
    lines = ["  try these" + (" (with GEOWARN_DATABASE_URL set as for this run):"
                          if database_url_set else ":")]
    lines += [f"    {prefix} {command}" for command in commands]
    if hint:
        lines.append(f"  {hint[0].upper()}{hint[1:]}.")
    return lines
