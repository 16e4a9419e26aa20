"""Recorded series: a device's history read from a CSV or JSON file, ready to replay.

A recorded file is a time column plus one or more value columns. A `SeriesMapping` says which
column is the time, how to read it (format, time zone, whether a row's time labels the start or
the end of its interval), and which value columns become which of the device's channels. It
comes from command-line options or a small JSON/YAML mapping file, e.g. for the Lamosano rain
gauge in ../shared/data:

    {"time": "date", "time_format": "%d/%m/%Y %H:%M", "timezone": "+01:00",
     "channels": {"rain": "rain"}}

Pure: reading returns a `RecordedSeries` (UTC times, one float array per channel, NaN where a
value is missing) or raises InvalidInput naming the file, line and column; nothing is
published here (simulators/replay.py does that).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from geowarn.errors import InvalidInput

# Column names taken as the time column when the mapping names none.
TIME_COLUMN_NAMES = ("ts", "time", "timestamp", "datetime", "date", "day", "date_time")
MISSING_VALUES = frozenset({"", "na", "nan", "null", "none", "-", "n/a"})
# Formats tried in order when none is given; ISO 8601 (with or without offset) is tried first.
AUTO_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d %H:%M:%S",
                     "%Y/%m/%d %H:%M", "%Y/%m/%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
                     "%d/%m/%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})?$")


@dataclass(frozen=True)
class SeriesMapping:
    """How to read one recorded file."""

    channels: Mapping[str, str] = field(default_factory=dict)  # value column -> channel
    time: str | None = None  # time column (None: the first column named like a time)
    time_format: str | None = None  # strptime format, "epoch_s", "epoch_ms" or None (auto)
    timezone: str = "UTC"  # for times without an offset: "+01:00" or an IANA name
    # "end" (default): a row's time is when its value was measured or its interval closed, as a
    # device would stamp it. "start": rows label the start of their interval (a daily total
    # dated by its day); each is then stamped when the interval closes.
    label: str = "end"
    units: Mapping[str, str] = field(default_factory=dict)  # channel -> unit sent with it
    scale: Mapping[str, float] = field(default_factory=dict)  # channel -> factor applied
    # Several files sharing one set of --channel options: a file uses the columns it has
    # (it must have at least one of them).
    partial: bool = False

    def __post_init__(self) -> None:
        if self.label not in ("start", "end"):
            raise InvalidInput(f"mapping: label must be 'start' or 'end', not {self.label!r}")
        tz_of(self.timezone)  # fail early, naming the bad zone


@dataclass(frozen=True)
class RecordedSeries:
    source: str
    times: tuple[datetime, ...]  # UTC, strictly increasing
    values: Mapping[str, np.ndarray]  # channel -> float64 array aligned with times (NaN: none)
    units: Mapping[str, str] = field(default_factory=dict)
    skipped_rows: int = 0  # rows with no value in any mapped column

    @property
    def readings(self) -> int:
        return int(sum(np.count_nonzero(~np.isnan(v)) for v in self.values.values()))

    @property
    def span(self) -> timedelta:
        return self.times[-1] - self.times[0] if self.times else timedelta(0)

    def shifted(self, delta: timedelta) -> RecordedSeries:
        return replace(self, times=tuple(t + delta for t in self.times))

    def shifted_to_end(self, end: datetime) -> RecordedSeries:
        """The same series moved in time so that its last sample is at `end`."""
        return self.shifted(end - self.times[-1]) if self.times else self

    def between(self, start: datetime | None, end: datetime | None) -> RecordedSeries:
        keep = [i for i, t in enumerate(self.times)
                if (start is None or t >= start) and (end is None or t <= end)]
        return replace(self, times=tuple(self.times[i] for i in keep),
                       values={ch: v[keep] for ch, v in self.values.items()})


def tz_of(name: str) -> tzinfo:
    """"UTC", "+01:00", "-0900", "UTC+8" or an IANA zone such as "America/Sitka"."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    m = _OFFSET.match(name.strip())
    if m:
        sign = -1 if m.group(1) == "-" else 1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise InvalidInput(f"time zone {name!r}: offsets run from -14:00 to +14:00")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}: give an offset like +08:00 or an "
                           "IANA name like Asia/Shanghai") from None


def load_mapping(path: Path) -> SeriesMapping:
    """A mapping file: JSON, or YAML when PyYAML is installed and the name ends .yaml/.yml."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read mapping file {path}: {exc.strerror}") from None
    data: Any
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InvalidInput("YAML mapping files need PyYAML (pip install pyyaml); "
                               "or write the mapping as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: not valid JSON: {exc}") from None
    return mapping_from_dict(data, str(path))


def mapping_from_dict(data: object, where: str = "mapping") -> SeriesMapping:
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: a mapping is an object with 'channels' (column -> channel)")
    known = set(SeriesMapping.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")
    for key in ("channels", "units", "scale"):
        if key in data and not isinstance(data[key], dict):
            raise InvalidInput(f"{where}: {key} must be an object")
    try:
        scale = {str(k): float(v) for k, v in data.get("scale", {}).items()}
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: scale values must be numbers") from None
    return SeriesMapping(
        channels={str(k): str(v) for k, v in data.get("channels", {}).items()},
        time=data.get("time"), time_format=data.get("time_format"),
        timezone=str(data.get("timezone", "UTC")), label=str(data.get("label", "end")),
        units={str(k): str(v) for k, v in data.get("units", {}).items()}, scale=scale)


def read_series(path: Path, mapping: SeriesMapping) -> RecordedSeries:
    """Read a CSV (any delimiter csv.Sniffer recognises) or JSON (a list of row objects, or
    {"rows": [...]}) file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    text = raw.decode("utf-8-sig", errors="strict") if _is_utf8(raw) else raw.decode("latin-1")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        header, rows = _json_rows(text, str(path))
        first_line = 1
    else:
        header, rows = _csv_rows(text, str(path))
        first_line = 2
    return series_from_rows(header, rows, mapping, str(path), first_line=first_line)


def series_from_rows(header: Sequence[str], rows: Iterable[Sequence[object]],
                     mapping: SeriesMapping, source: str, first_line: int = 2
                     ) -> RecordedSeries:
    columns = {name: i for i, name in enumerate(header)}
    time_col = mapping.time or next((c for c in header if c.strip().lower()
                                     in TIME_COLUMN_NAMES), None)
    if time_col is None or time_col not in columns:
        raise InvalidInput(f"{source}: no time column "
                           f"{'named ' + repr(time_col) if time_col else 'found'} "
                           f"(columns: {', '.join(header)}); name it with --time COLUMN")
    channel_of = dict(mapping.channels)
    if not channel_of:
        raise InvalidInput(f"{source}: say which columns to replay as which channels, e.g. "
                           "--channel rain=rain (columns: "
                           f"{', '.join(c for c in header if c != time_col)})")
    missing = [c for c in channel_of if c not in columns]
    if mapping.partial and len(missing) < len(channel_of):
        channel_of = {c: ch for c, ch in channel_of.items() if c in columns}
    elif missing:
        raise InvalidInput(f"{source}: no column {', '.join(map(repr, missing))} "
                           f"(columns: {', '.join(header)})")
    zone = tz_of(mapping.timezone)
    parse = _time_parser(mapping.time_format, zone)
    times: list[datetime] = []
    values: dict[str, list[float]] = {ch: [] for ch in channel_of.values()}
    skipped = 0
    for n, row in enumerate(rows):
        line = first_line + n
        cell = row[columns[time_col]] if columns[time_col] < len(row) else ""
        try:
            ts = parse(cell)
        except ValueError as exc:
            raise InvalidInput(f"{source} line {line}: time {str(cell)[:40]!r}: {exc}") from None
        parsed = {ch: _number(row, columns[col], source, line, col)
                  for col, ch in channel_of.items()}
        if all(math.isnan(v) for v in parsed.values()):
            skipped += 1
            continue
        if times and ts <= times[-1]:
            raise InvalidInput(f"{source} line {line}: time {ts.isoformat()} is not after the "
                               f"previous row's {times[-1].isoformat()} (sort the file; "
                               "duplicate times cannot both be stored)")
        times.append(ts)
        for ch, v in parsed.items():
            values[ch].append(v * mapping.scale.get(ch, 1.0))
    if not times:
        raise InvalidInput(f"{source}: no rows with values")
    if mapping.label == "start" and len(times) > 1:
        # Stamp each sample when its interval closes (when a gauge would have sent it), so a
        # day's total is not seen at the day's first minute.
        step = _median_step(times)
        times = [t + step for t in times]
    times = [t.astimezone(UTC) for t in times]
    return RecordedSeries(source, tuple(times),
                          {ch: np.asarray(v, dtype=np.float64) for ch, v in values.items()},
                          dict(mapping.units), skipped)


def _median_step(times: Sequence[datetime]) -> timedelta:
    gaps = sorted((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
    return timedelta(seconds=gaps[len(gaps) // 2])


def _number(row: Sequence[object], index: int, source: str, line: int, column: str) -> float:
    cell = row[index] if index < len(row) else None
    if cell is None or isinstance(cell, bool):
        if isinstance(cell, bool):
            raise InvalidInput(f"{source} line {line}: {column} is true/false, not a number")
        return math.nan
    if isinstance(cell, int | float):
        value = float(cell)
    else:
        text = str(cell).strip()
        if text.lower() in MISSING_VALUES:
            return math.nan
        # Only ASCII digits: a full-width digit in a recording is a mistake worth hearing of.
        if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text):
            raise InvalidInput(f"{source} line {line}: {column} = {text[:40]!r} is not a number")
        value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"{source} line {line}: {column} is not finite")
    return value


def _time_parser(fmt: str | None, zone: tzinfo) -> Callable[[object], datetime]:
    # Times stay in their own zone until any interval shift is applied (wall-clock arithmetic
    # keeps a daily series at local midnight across daylight-saving changes).
    def localise(ts: datetime) -> datetime:
        return ts if ts.tzinfo else ts.replace(tzinfo=zone)

    if fmt in ("epoch_s", "epoch_ms"):
        divisor = 1000.0 if fmt == "epoch_ms" else 1.0

        def from_epoch(cell: object) -> datetime:
            try:
                seconds = float(str(cell)) / divisor
                return datetime.fromtimestamp(seconds, UTC)
            except (ValueError, OverflowError, OSError):
                raise ValueError(f"not an epoch time in {fmt[6:]}") from None
        return from_epoch
    if fmt:
        def fixed(cell: object) -> datetime:
            return localise(datetime.strptime(str(cell).strip(), fmt))
        return fixed

    chosen: list[str] = []  # the first format that works is kept for the whole file

    def auto(cell: object) -> datetime:
        text = str(cell).strip()
        if chosen:
            return localise(datetime.strptime(text, chosen[0]))
        try:
            return localise(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            pass
        for candidate in AUTO_TIME_FORMATS:
            try:
                ts = datetime.strptime(text, candidate)
            except ValueError:
                continue
            chosen.append(candidate)
            return localise(ts)
        raise ValueError("unrecognised time format: give one with --time-format "
                         "(e.g. '%d/%m/%Y %H:%M', epoch_s, epoch_ms)")
    return auto


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _csv_rows(text: str, source: str) -> tuple[list[str], list[list[Any]]]:
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidInput(f"{source}: the file is empty") from None
    return header, [row for row in reader if any(cell.strip() for cell in row)]


def _json_rows(text: str, source: str) -> tuple[list[str], list[list[Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{source}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInput(f"{source}: JSON recordings are a list of row objects "
                           '([{"ts": ..., "rain": 0.2}, ...]) or {"rows": [...]}')
    header: list[str] = []
    for row in data:
        header.extend(k for k in row if k not in header)
    return header, [[row.get(k) for k in header] for row in data]
