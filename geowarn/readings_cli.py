"""`geowarn readings DEVICE_ID ...` (show stored readings) and `geowarn readings-prune`.

Times on the command line are ISO 8601 with a UTC offset (2026-07-01T08:00+08:00, or Z) or
relative to now (30m, 24h, 7d, 2w, 90s); a time without an offset is refused rather than
guessed, since operators work in Beijing time and servers in UTC.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import psycopg

from geowarn import readings
from geowarn.db import connect
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings
from geowarn.timeargs import is_duration, parse_duration, parse_time

# The readings.quality codes (devices.messages.Quality) as words an operator can act on.
QUALITY_WORDS = {0: "reliable", 1: "doubtful", 2: "unreliable"}
QUALITY_LEGEND = ("reliable = may raise a warning on its own; doubtful = sent while the device "
                  "was in maintenance or flagged 'no data' by its logger; unreliable = the "
                  "logger reported a sensor fault")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("readings", help="show a device's stored readings",
                       description="Show a device's stored readings, oldest first. Times are "
                       "ISO 8601 with an offset or relative to now (24h, 7d).")
    p.add_argument("device_id", metavar="DEVICE_ID")
    p.add_argument("--channel", help="one channel key, e.g. opening or L1_LF_1.opening")
    p.add_argument("--since", default="24h", help="from this time, inclusive (default 24h)")
    p.add_argument("--until", default="now", help="to this time, exclusive (default now)")
    p.add_argument("--limit", type=int, default=1000,
                   help="show at most the newest N readings (default 1000)")
    p.add_argument("--json", action="store_true", help="print a JSON array (quality as its "
                   "code 0/1/2 and as a word)")
    p.set_defaults(func=_show)

    prune = sub.add_parser(
        "readings-prune", help="delete raw readings older than the retention",
        description="Delete raw readings older than --older-than (default GEOWARN_RETENTION). "
        "On TimescaleDB whole chunks are dropped, as its retention policy does on its own.")
    prune.add_argument("--older-than", help="a duration such as 400d (default: the retention "
                       "setting, as a duration)")
    prune.set_defaults(func=_prune)


def _show(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    start, end = parse_time(args.since, now), parse_time(args.until, now)
    if args.limit <= 0:
        raise InvalidInput(f"--limit must be positive, got {args.limit}")
    with connect(autocommit=True) as conn:
        rows = readings.device_readings(conn, args.device_id, start, end,
                                        channel=args.channel, limit=args.limit)
        calibrated = conn.execute(
            "SELECT channel, cal_scale, cal_offset FROM channels WHERE device_id = %s "
            "AND (cal_scale <> 1 OR cal_offset <> 0) ORDER BY channel",
            (args.device_id,)).fetchall()
    if args.json:
        json.dump([{"channel": r.channel, "ts": r.ts.astimezone(UTC).isoformat(),
                    "value": r.value, "unit": r.unit, "quality": r.quality,
                    "quality_word": QUALITY_WORDS.get(r.quality)} for r in rows],
                  sys.stdout, ensure_ascii=False)
        print()
        return 0
    if not rows:
        print(f"no readings of {args.device_id} from {_utc(start)} to {_utc(end)}; try a "
              f"longer --since (7d), or `geowarn deadletters --device {args.device_id}` for "
              "messages that were refused", file=sys.stderr)
        return 0
    print(f"readings of {args.device_id} from {_utc(start)} to {_utc(end)}, oldest first"
          + (f" (the newest {args.limit}; --limit shows more)" if len(rows) == args.limit
             else ""))
    table = [(_utc(r.ts), r.channel, f"{r.value:g}", r.unit, QUALITY_WORDS.get(
        r.quality, f"code {r.quality}")) for r in rows]
    header = ("TIME (UTC)", "CHANNEL", "VALUE", "UNIT", "QUALITY")
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    for row in (header, *table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} reading(s). QUALITY: {QUALITY_LEGEND}")
    shown = {r.channel for r in rows}
    for channel, scale, offset in calibrated:
        if channel in shown:
            print(f"{channel}: corrected by its calibration (value = {scale:g} x sent "
                  f"{offset:+g}) since that was set; otherwise values are as the device sent them")
    return 0


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _prune(args: argparse.Namespace) -> int:
    text = args.older_than or get_settings().retention
    if not text:
        raise InvalidInput("give --older-than (e.g. 400d) or set GEOWARN_RETENTION")
    with connect(autocommit=True) as conn:
        if is_duration(text):
            older_than = parse_duration(text)
        else:
            # GEOWARN_RETENTION is a PostgreSQL interval ('400 days'), as the migration reads it.
            try:
                row = conn.execute("SELECT %s::interval", (text,)).fetchone()
            except psycopg.DataError:
                raise InvalidInput(f"{text!r} is neither a duration (400d) nor a PostgreSQL "
                                   "interval ('400 days')") from None
            assert row is not None
            older_than = row[0]
        pruned = readings.prune(conn, older_than)
    print(f"pruned {pruned.count} {pruned.unit} older than {older_than}")
    return 0
