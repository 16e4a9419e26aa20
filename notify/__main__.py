"""`python -m notify ...`: the notification commands alone, without loading the whole CLI
(the warning engine's scientific stack): a quicker start for notifier processes that a
supervisor restarts. Same commands and options as `geowarn people|duty|notify|...`."""

from __future__ import annotations

import argparse
import logging
import sys

from geowarn.errors import GeoWarnError
from notify import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notify")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except GeoWarnError as exc:
        print(f"geowarn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
