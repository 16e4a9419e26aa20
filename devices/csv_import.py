"""Bulk registration of devices from a CSV file (`geowarn devices import`).

The file format is FORMAT_HELP below (also shown by `geowarn devices import --help`, with the
example file devices/examples/devices.csv that `--example` prints).

Every row is validated and bad rows are reported by line number; all good rows are written in
ONE transaction (a database error rolls back everything). Re-importing is safe: an existing
device with identical attributes is "unchanged"; one with different attributes is a conflict
unless `update` is given (kind and profile never change: retire and add instead). New devices
get a secret each, returned to the caller to be written once to a file of the operator's.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from devices import credentials
from devices.catalogue import load_catalogue
from devices.registry import (
    ATTRIBUTES,
    INSERT_CHANNEL,
    INSERT_DEVICE,
    DeviceSpec,
    insert_rows,
    planned_channels,
    validate_spec,
    with_defaults,
)
from geowarn.errors import GeoWarnError, InvalidInput

COLUMNS = ("device_id", "kind", "profile", "name", "lon", "lat", "elevation_m",
           "installed_on", "hazard_id", "site_id", "reporting_interval_s")
EXAMPLE_CSV = Path(__file__).parent / "examples" / "devices.csv"

FORMAT_HELP = """\
CSV format: UTF-8 (a byte-order mark is allowed), comma-separated, a header row naming some
of these columns in any order (unknown columns are an error), then one device a row; an
empty cell means "not given".

  device_id             REQUIRED. 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit;
                        it is the device's MQTT username and topic level
  kind                  REQUIRED for profile native: a catalogue sensor kind (list below);
                        national loggers may leave it empty (their sensors are learnt)
  profile               native (default) or national
  name                  free text, up to 200 characters
  lon, lat              WGS84 decimal degrees, both or neither
  elevation_m           metres above sea level
  installed_on          YYYY-MM-DD
  hazard_id, site_id    the hazard point or site the device watches
  reporting_interval_s  whole seconds (default: the kind's catalogue interval)

Example (`geowarn devices import --example` prints a complete file):

  device_id,kind,profile,name,lon,lat,elevation_m,installed_on,hazard_id
  RG-0001,rain_gauge,native,Rain gauge above the school,106.5512,29.5627,420,2026-05-01,HP-001
  LG-0001,,national,Slope logger,106.5520,29.5630,410,2026-05-01,HP-001
"""
_MAX_TEXT = {"name": 200, "hazard_id": 64, "site_id": 64}


class ImportRolledBack(GeoWarnError):
    """The database refused the import; nothing was written."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    device_id: str | None
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        who = f" ({self.device_id})" if self.device_id else ""
        return f"line {self.line}{who}: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class ParsedRow:
    line: int
    spec: DeviceSpec


@dataclass(frozen=True)
class ImportReport:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    conflicts: tuple[RowProblem, ...] = ()
    bad_rows: tuple[RowProblem, ...] = ()
    dry_run: bool = False
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def clean(self) -> bool:
        return not (self.conflicts or self.bad_rows)


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8: byte {exc.start} is invalid "
                           f"({data[exc.start:exc.start + 1]!r})") from None


def _parse_value(column: str, raw: str) -> Any:
    raw = raw.strip()
    if raw == "":
        return None
    if column in ("lon", "lat", "elevation_m"):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{column} {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{column} {raw!r} is not a finite number")
        return value
    if column == "reporting_interval_s":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"reporting_interval_s {raw!r} is not a whole number") from None
    if column == "installed_on":
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"installed_on {raw!r} is not a date YYYY-MM-DD") from None
    if column in _MAX_TEXT and len(raw) > _MAX_TEXT[column]:
        raise ValueError(f"{column} is longer than {_MAX_TEXT[column]} characters")
    return raw


def parse_csv(text: str) -> tuple[list[ParsedRow], list[RowProblem]]:
    """Validate every row (pure: no database). Header problems raise InvalidInput."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("the file is empty: expected a header row naming columns "
                           f"({', '.join(COLUMNS)})") from None
    except csv.Error as exc:
        raise InvalidInput(f"line 1: {exc}") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InvalidInput(f"line 1: unknown column(s) {', '.join(map(repr, unknown))} "
                           f"(allowed: {', '.join(COLUMNS)})")
    if "device_id" not in header:
        raise InvalidInput("line 1: the header has no device_id column (is the header missing?)")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InvalidInput(f"line 1: column(s) {', '.join(dupes)} appear more than once")
    catalogue = load_catalogue()
    rows: list[ParsedRow] = []
    problems: list[RowProblem] = []
    first_line: dict[str, int] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(RowProblem(start, None, (str(exc),)))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            problems.append(RowProblem(start, record[0].strip() or None, (
                f"{len(record)} fields where the header has {len(header)}",)))
            continue
        values: dict[str, Any] = {}
        reasons: list[str] = []
        for column, raw in zip(header, record, strict=True):
            try:
                values[column] = _parse_value(column, raw)
            except ValueError as exc:
                reasons.append(str(exc))
        device_id = values.get("device_id") or ""
        if not reasons:
            spec = DeviceSpec(**{**values, "device_id": device_id,
                                 "profile": values.get("profile") or "native"})
            reasons += validate_spec(spec, catalogue)
        if device_id in first_line:
            reasons.append(f"device id repeats line {first_line[device_id]}")
        elif device_id:
            first_line[device_id] = start
        if reasons:
            problems.append(RowProblem(start, device_id or None, tuple(reasons)))
        else:
            rows.append(ParsedRow(start, with_defaults(spec, catalogue)))
    return rows, problems


def _differences(spec: DeviceSpec, existing: Mapping[str, Any]) -> list[str]:
    return [f"{a}: {existing[a]!r} in the registry, {getattr(spec, a)!r} in the file"
            for a in ATTRIBUTES if existing[a] != getattr(spec, a)]


def import_devices(conn: psycopg.Connection, rows: list[ParsedRow],
                   bad_rows: list[RowProblem] | None = None, *, update: bool = False,
                   dry_run: bool = False, actor: str = "system", source: str = "") -> ImportReport:
    """Classify and write `rows` in one transaction (see the module docstring)."""
    created: list[ParsedRow] = []
    updated: list[ParsedRow] = []
    unchanged: list[str] = []
    conflicts: list[RowProblem] = []
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            existing = {r["device_id"]: r for r in cur.execute(
                "SELECT * FROM devices WHERE device_id = ANY(%s) FOR UPDATE",
                ([r.spec.device_id for r in rows],))}
            for row in rows:
                old = existing.get(row.spec.device_id)
                if old is None:
                    created.append(row)
                    continue
                diffs = _differences(row.spec, old)
                if not diffs:
                    unchanged.append(row.spec.device_id)
                elif old["status"] == "retired":
                    conflicts.append(RowProblem(row.line, row.spec.device_id, (
                        "this id belongs to a retired device; use a new id", *diffs)))
                elif not update or any(d.startswith(("kind:", "profile:")) for d in diffs):
                    conflicts.append(RowProblem(row.line, row.spec.device_id, tuple(diffs)))
                else:
                    updated.append(row)
            secrets: dict[str, str] = {}
            if not dry_run:
                secrets = _write(cur, created, updated, actor, source)
    except psycopg.Error as exc:
        raise ImportRolledBack(f"the database refused the import, nothing was written: "
                               f"{exc}".strip()) from exc
    return ImportReport(
        created=tuple(r.spec.device_id for r in created),
        updated=tuple(r.spec.device_id for r in updated), unchanged=tuple(unchanged),
        conflicts=tuple(conflicts), bad_rows=tuple(bad_rows or ()), dry_run=dry_run,
        secrets=secrets)


def _write(cur: psycopg.Cursor[Any], created: list[ParsedRow], updated: list[ParsedRow],
           actor: str, source: str) -> dict[str, str]:
    catalogue = load_catalogue()
    ids = [r.spec.device_id for r in created]
    secrets = {i: credentials.generate_secret() for i in ids}
    # pbkdf2_hmac releases the GIL, so hashing a thousand secrets uses every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        hashes = list(pool.map(credentials.hash_secret, secrets.values()))
    # executemany runs in pipeline mode: one round trip per batch, not per row.
    cur.executemany(INSERT_DEVICE, [insert_rows(r.spec) for r in created])
    cur.executemany(INSERT_CHANNEL, [
        (r.spec.device_id, key, kind, name, unit, 1.0, 0.0)
        for r in created for key, kind, name, unit in planned_channels(r.spec, catalogue)])
    cur.executemany("INSERT INTO device_credentials (device_id, secret_hash) VALUES (%s, %s)",
                    list(zip(ids, hashes, strict=True)))
    sets = ", ".join(f"{a} = %({a})s" for a in ATTRIBUTES if a not in ("kind", "profile"))
    cur.executemany(f"UPDATE devices SET {sets}, updated_at = now() "
                    "WHERE device_id = %(device_id)s",
                    [{a: getattr(r.spec, a) for a in ("device_id", *ATTRIBUTES)}
                     for r in updated])
    audit = [(actor, "import", r.spec.device_id, source, r.line) for r in created] + \
            [(actor, "import_update", r.spec.device_id, source, r.line) for r in updated]
    cur.executemany("INSERT INTO audit_log (actor, action, object_type, object_id, detail) "
                    "VALUES (%s, %s, 'device', %s, jsonb_build_object('file', %s::text, "
                    "'line', %s::int))", audit)
    return secrets
