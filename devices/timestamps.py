"""Device timestamps: parsing the forms firmware sends, and the window a reading must fall in.

Accepted forms (both profiles): RFC 3339 text with a UTC offset or `Z`
("2026-03-31T04:05:55.000Z", "2026-03-31T12:05:55+08:00") and integer epoch milliseconds.
Text without an offset is refused rather than guessed: loggers in China often keep local time
(UTC+8), and reading it as UTC would shift every value by eight hours without anyone noticing.
Digits are ASCII only (a full-width or Arabic-Indic digit is no digit here), offsets lie within
±23:59, and a time that falls outside the years 0001..9999 once its offset is applied
(`0001-01-01T00:30:00+01:00`) is refused as bad_timestamp like any impossible date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devices.messages import Reason
from devices.text import printable, quoted

# RFC 3339 section 5.6 date-time; `T` or a space between date and time (RFC 3339 allows the
# space "for readability"), fractional seconds of any length, offset mandatory.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", re.ASCII)
_MAX_TEXT = 64
# Epoch milliseconds from 2001-09-09 to 2286: a plain seconds value (10 digits) is rejected
# because mistaking seconds for milliseconds would put the reading in January 1970.
_MIN_EPOCH_MS = 1_000_000_000_000
_MAX_EPOCH_MS = 9_999_999_999_999


class TimestampError(ValueError):
    """A timestamp is unparsable or outside the accepted window; `reason` is a Reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_timestamp(value: object, *, digits_are_epoch_ms: bool = False) -> datetime:
    """A timezone-aware UTC datetime from RFC 3339 text or integer epoch milliseconds.

    `digits_are_epoch_ms` lets a string of digits stand for epoch ms (national frames key
    values by timestamp strings, and some vendors put epoch ms there)."""
    if isinstance(value, bool):  # bool is an int subclass; `true` is no timestamp
        raise TimestampError(Reason.BAD_TIMESTAMP, f"timestamp {value!r} is a boolean")
    if (isinstance(value, str) and digits_are_epoch_ms and value.isascii() and value.isdigit()
            and len(value) <= 16):
        value = int(value)
    if isinstance(value, int):
        if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
            raise TimestampError(
                Reason.BAD_TIMESTAMP,
                f"epoch timestamp {value} is not milliseconds since 1970 in a plausible range "
                f"({_MIN_EPOCH_MS}..{_MAX_EPOCH_MS}); seconds must be multiplied by 1000",
            )
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str):
        raise TimestampError(
            Reason.BAD_TIMESTAMP,
            f"timestamp {printable(value, 40)} must be RFC 3339 text or integer epoch "
            "milliseconds",
        )
    m = _RFC3339.fullmatch(value) if len(value) <= _MAX_TEXT else None
    if m is None:
        shown = quoted(value, 40)
        hint = ""
        if _NO_OFFSET.fullmatch(value):
            hint = " (no UTC offset: append Z for UTC or the offset, e.g. +08:00)"
        elif not value.isascii():
            hint = " (only ASCII digits and separators are accepted)"
        raise TimestampError(Reason.BAD_TIMESTAMP, f"timestamp {shown} is not RFC 3339{hint}")
    frac = m.group(7) or ""
    # datetime.fromisoformat takes at most microseconds; extra digits carry no information.
    text = value[: m.start(7)] + frac[:7] if frac else value[: m.start(8)]
    offset = m.group(8).upper()
    text = text.replace("t", "T").replace(" ", "T") + ("+00:00" if offset == "Z" else offset)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise TimestampError(
            Reason.BAD_TIMESTAMP, f"timestamp {quoted(value)} is not a real date and time: {exc}"
        ) from None
    except OverflowError:
        raise TimestampError(
            Reason.BAD_TIMESTAMP,
            f"timestamp {quoted(value)} lies outside the years 0001..9999 once its offset is "
            "applied",
        ) from None


@dataclass(frozen=True)
class TimeWindow:
    """Readings must lie in [now - max_backlog, now + max_clock_skew]."""

    now: datetime
    max_clock_skew_s: float
    max_backlog_days: float

    def check(self, ts: datetime) -> None:
        if ts > self.now + timedelta(seconds=self.max_clock_skew_s):
            raise TimestampError(
                Reason.TIMESTAMP_FUTURE,
                f"timestamp {_iso(ts)} is more than {self.max_clock_skew_s:g} s ahead of the "
                f"server clock ({_iso(self.now)}); is the device clock set?",
            )
        if ts < self.now - timedelta(days=self.max_backlog_days):
            raise TimestampError(
                Reason.TIMESTAMP_PAST,
                f"timestamp {_iso(ts)} is more than {self.max_backlog_days:g} days before the "
                f"server clock ({_iso(self.now)})",
            )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_timestamp(ts: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`, the form GeoWarn sends to devices."""
    if ts.tzinfo is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
