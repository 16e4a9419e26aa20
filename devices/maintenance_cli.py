"""`geowarn devices maintenance DEVICE --from T --to T --reason TEXT` (a window, added through
devices/cli.py's `maintenance` command), `geowarn devices maintenance-list [DEVICE ...]` and
`geowarn devices maintenance-cancel WINDOW_ID`: maintenance windows (devices/maintenance.py)."""

from __future__ import annotations

import argparse
import getpass
import json

from devices import maintenance
from geowarn.db import connect
from geowarn.timeargs import time_arg


def add_window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="starts", type=time_arg, metavar="TIME",
                   help="a maintenance window instead of the status: its start (ISO 8601 "
                   "with offset, or now)")
    p.add_argument("--to", dest="ends", type=time_arg, metavar="TIME", help="its end")
    p.add_argument("--reason", help="what is done (antenna re-mount, sensor reset, ...)")


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("maintenance-list", help="maintenance windows of devices")
    ls.add_argument("device_id", nargs="*", help="these devices only")
    ls.add_argument("--all", action="store_true", help="cancelled windows too")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    c = sub.add_parser("maintenance-cancel", help="cancel a maintenance window")
    c.add_argument("window_id", type=int)
    c.set_defaults(func=_cancel)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def add(args: argparse.Namespace) -> int:
    if args.starts is None or args.ends is None or not args.reason:
        raise SystemExit("geowarn devices maintenance: a window needs --from, --to and "
                         "--reason (without them the command sets the device's status)")
    with connect(autocommit=True) as conn:
        w = maintenance.add_window(conn, args.device_id, args.starts, args.ends, args.reason,
                                   actor=_actor())
    print(f"maintenance window {w.window_id} on {w.device_id}: {w.starts_at.isoformat()} to "
          f"{w.ends_at.isoformat()} ({w.reason}); its readings raise nothing and its "
          f"offsets are expected")
    return 0


def _row(w: maintenance.Window) -> dict[str, object]:
    return {"id": w.window_id, "device_id": w.device_id, "from": w.starts_at.isoformat(),
            "to": w.ends_at.isoformat(), "reason": w.reason, "created_by": w.created_by,
            "cancelled_at": w.cancelled_at.isoformat() if w.cancelled_at else None}


def _list(args: argparse.Namespace) -> int:
    with connect() as conn:
        found = maintenance.list_windows(conn, args.device_id or None,
                                         include_cancelled=args.all)
    if args.json:
        print(json.dumps([_row(w) for w in found], ensure_ascii=False, indent=1))
        return 0
    if not found:
        print("no maintenance windows")
    for w in found:
        state = f" cancelled {w.cancelled_at:%Y-%m-%d %H:%M}Z" if w.cancelled_at else ""
        print(f"{w.window_id:>6}  {w.device_id:<16} {w.starts_at.isoformat()} -> "
              f"{w.ends_at.isoformat()}  {w.reason}{state}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        w = maintenance.cancel_window(conn, args.window_id, actor=_actor())
    print(f"maintenance window {w.window_id} on {w.device_id} cancelled")
    return 0
