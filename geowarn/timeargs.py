"""Times and durations typed on the command line, parsed in one place.

A time is ISO 8601 with a UTC offset (2026-07-01T08:00+08:00, or Z), `now`, or a duration back
from now (90s, 30m, 24h, 7d, 2w). A time without an offset is refused rather than guessed:
operators work in Beijing time and servers in UTC.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from geowarn.errors import InvalidInput

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '24h', '7d', '2w' -> timedelta."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise InvalidInput(f"{text!r} is not a duration like 30m, 24h, 7d or 2w")
    value = timedelta(**{_UNIT[m.group(2)]: float(m.group(1))})
    if value <= timedelta(0):
        raise InvalidInput(f"duration {text!r} must be positive")
    return value


def parse_time(text: str, now: datetime) -> datetime:
    """ISO 8601 with an offset, 'now', or a duration meaning that long before `now`."""
    text = text.strip()
    if text.lower() == "now":
        return now
    if _DURATION.match(text.lower()):
        return now - parse_duration(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is neither an ISO 8601 time (2026-07-01T08:00+08:00) "
                           "nor a relative time (24h, 7d)") from None
    if t.tzinfo is None:
        raise InvalidInput(f"time {text!r} has no UTC offset (a time needs a UTC offset), "
                           f"e.g. {text}+08:00 "
                           f"or {text}Z")
    return t


def is_duration(text: str) -> bool:
    return bool(_DURATION.match(text.strip().lower()))


def time_arg(text: str) -> datetime:
    """argparse `type=` for a time option: an argparse error names what is wrong."""
    try:
        return parse_time(text, datetime.now(UTC))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
