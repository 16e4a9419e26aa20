"""The `geowarn` command line.

Each capability contributes its subcommands from its own package through a `register(sub)`
function; this module only wires them together and turns GeoWarnError into a clean message
and exit status 2 (1 is reserved for "checked, and the answer is no", e.g. an invalid payload).

Imports are lazy for real: `geowarn COMMAND ...` imports only the module that defines
COMMAND, so a capability that cannot be imported (a missing dependency, a broken module)
breaks its own commands and no other. Only the full listing (`geowarn --help`, or a command
nobody defines) imports every module, and shows a broken one as unavailable with its error.
The table names modules as strings: this is the composition root on top of every layer, and
plumbing's modules import no feature package (tests/test_layers.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from geowarn.errors import ConfigurationError, GeoWarnError
from geowarn.settings import get_settings

# Each command and the module whose `register(subparsers)` defines it; "PARENT CHILD" is a
# subcommand added under another module's command (see build_parser). tests/test_cli.py
# checks that every module defines exactly the commands listed here.
COMMANDS: dict[str, str] = {
    "db": "geowarn.db_cli",
    "readings-prune": "geowarn.readings_cli",
    "settings": "geowarn.settings_cli",
    "hazards": "gis.cli",
    "warnings": "gis.cli",
    "contracts": "devices.contracts_cli",
    "devices": "devices.cli",
    "devices broker-config": "ingest.broker_cli",
    "devices maintenance-list": "devices.maintenance_cli",
    "devices maintenance-cancel": "devices.maintenance_cli",
    "readings": "geowarn.readings_cli",
    "ingest": "ingest.cli",
    "deadletters": "ingest.cli",
    "simulate": "simulators.cli",
    "replay": "simulators.replay_cli",
    "engine": "alerts.cli.engine_cli",
    "alerts": "alerts.cli.alerts_cli",
    "people": "notify.cli",
    "duty": "notify.cli",
    "notify": "notify.cli",
    "notifications": "notify.cli",
    "exercise": "notify.exercise_cli",
    "users": "api.cli",
    "api": "services.api_cli",
    "run": "services.cli",
    "health": "services.cli",
    "demo": "demo.cli",
}

# Exit status of a command whose reader went away (`geowarn ... | head`), as a shell reports
# a process ended by SIGPIPE: the output was cut short, nothing failed.
EXIT_BROKEN_PIPE = 128 + 13


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option: the command, if it is one we know."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _unavailable(sub: argparse._SubParsersAction, commands: Sequence[str], module: str,
                 exc: BaseException) -> None:
    """Placeholders for the commands of a module that cannot be imported."""
    reason = f"{type(exc).__name__}: {exc}"
    for command in commands:
        # No option prefix: whatever follows the command is accepted, to fail with the reason.
        p = sub.add_parser(command.rpartition(" ")[2], help=f"(unavailable: {reason})",
                           add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs="*")

        def fail(args: argparse.Namespace, command: str = command) -> int:
            raise ConfigurationError(
                f"`geowarn {command}` is unavailable: {module} cannot be imported ({reason})")

        p.set_defaults(func=fail)


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The subcommands of a command's parser, where a higher layer adds its own (None for
    the placeholder of a command that could not be loaded)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _register(sub: argparse._SubParsersAction, keys: Sequence[str]) -> None:
    """Import each module of `keys` once and let it register its commands into `sub`."""
    for name in dict.fromkeys(COMMANDS[k] for k in keys):
        mine = [k for k in keys if COMMANDS[k] == name]
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import failure of one capability, reported per command
            _unavailable(sub, mine, name, exc)
            continue
        module.register(sub)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: with only the chosen command's modules when argv names one,
    else with every command (for the listing).

    A key "PARENT CHILD" in COMMANDS is a subcommand a higher layer adds under another
    capability's command (e.g. ingest's `devices broker-config`), so that the lower one
    need not import it."""
    parser = argparse.ArgumentParser(
        prog="geowarn",
        description="GeoWarn: early warning for geohazard, water and environment monitoring.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen_command(sys.argv[1:] if argv is None else argv)
    top = [k for k in COMMANDS if " " not in k and (chosen is None or k == chosen)]
    _register(sub, top)
    nested: dict[str, list[str]] = {}
    for key in COMMANDS:
        parent, _, child = key.partition(" ")
        if child and parent in top:
            nested.setdefault(parent, []).append(key)
    for parent, keys in nested.items():
        below = _subcommands(sub.choices[parent]) if parent in sub.choices else None
        if below is not None:
            _register(below, keys)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout has gone: point stdout at /dev/null so the interpreter's final
    flush does not raise again, and exit as a SIGPIPE'd process would, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _run(call: Callable[[], int]) -> int:
    try:
        status = call()
        sys.stdout.flush()  # a pipe closed early shows here, inside the handler below
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()


def main(argv: Sequence[str] | None = None) -> int:
    return _run(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # SystemExit for --help and usage errors, as argparse does
    try:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else get_settings().log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return int(args.func(args) or 0)
    except GeoWarnError as exc:
        print(f"geowarn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
