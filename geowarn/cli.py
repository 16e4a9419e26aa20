"""The `geowarn` command line.

Each capability contributes its subcommands from its own package through a `register(sub)`
function; this module only wires them together and turns GeoWarnError into a clean message
and exit status 2 (1 is reserved for "checked, and the answer is no", e.g. an invalid payload).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from geowarn.errors import GeoWarnError

# Modules that define `register(subparsers)`; imported lazily so `geowarn --help` stays fast
# and a capability that is missing a dependency does not break the others.
COMMAND_MODULES: tuple[str, ...] = (
    "geowarn.db_cli",
    "gis.cli",
    "devices.contracts_cli",
    "devices.cli",
    "geowarn.readings_cli",
    "ingest.cli",
    "simulators.cli",
    "simulators.replay_cli",
    "alerts.cli.engine_cli",
    "alerts.cli.alerts_cli",
    "geowarn.demo_cli",
    "notify.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geowarn",
        description="GeoWarn: early warning for geohazard, water and environment monitoring.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except GeoWarnError as exc:
        print(f"geowarn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
