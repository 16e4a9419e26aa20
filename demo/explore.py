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


COMMANDS = ("alerts list",
            "alerts show 1",
            "readings DEMO-CM-01 --channel opening --since 2d",
            "readings DEMO-RG-01 --channel rain --since 1d",
            "notifications list",
            "hazards export --kind shelters",
            "hazards shelters DEMO-LS-01",
            "devices list",
            "duty list",
            "simulate --help")
"""Read-only commands over the story (without the `geowarn` in front)."""


def explore_lines(*, database_url_set: bool) -> list[str]:
    prefix, hint = geowarn_prefix()
    lines = ["  in another shell, try" + (" (with GEOWARN_DATABASE_URL set as for this run):"
                                       if database_url_set else ":")]
    lines += [f"    {prefix} {command}" for command in COMMANDS]
    if hint:
        lines.append(f"  {hint[0].upper()}{hint[1:]}.")
    return lines
