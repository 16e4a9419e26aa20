"""`geowarn hazards ...` and `geowarn warnings ...`: GIS data in and out, and spatial queries.

Imports print one line per rejected feature ("feature 3: ..." / "line 7: ...") and per
warning, then a summary; they exit 1 when any feature was rejected (the good ones are still
imported, in one transaction) and 0 when all were accepted.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import psycopg

from geowarn.db import connect
from geowarn.errors import InvalidInput
from geowarn.timeargs import time_arg
from gis import csv_io, geojson_io, records, regional, store
from gis.model import LEVEL_NAMES, FieldError
from gis.records import ParseResult
from gis.store import ImportReport


def register(sub: argparse._SubParsersAction) -> None:
    hz = sub.add_parser("hazards", help="hazard points, shelters, households: import, export, "
                                        "cancel, shelters, match-devices")
    hsub = hz.add_subparsers(dest="hazards_command", metavar="ACTION", required=True)

    imp = hsub.add_parser("import", help="import a GeoJSON FeatureCollection or CSV file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--kind", choices=records.KINDS, default="hazards")
    imp.add_argument("--region", metavar="MINLON,MINLAT,MAXLON,MAXLAT",
                     help="reject features outside this box, e.g. 118,27,123,31.5 (Zhejiang)")
    imp.add_argument("--dry-run", action="store_true", help="check only, store nothing")
    imp.set_defaults(func=_import)

    exp = hsub.add_parser("export", help="export as an RFC 7946 FeatureCollection")
    exp.add_argument("--kind", choices=records.KINDS, default="hazards")
    exp.add_argument("--out", type=Path, help="file to write (default: standard output)")
    exp.add_argument("--reveal-phones", action="store_true",
                     help="write phone numbers unmasked (personal data: only when allowed)")
    exp.set_defaults(func=_export)

    can = hsub.add_parser("cancel", help="record 销号 (cancellation) of a hazard point")
    can.add_argument("hazard_id")
    can.add_argument("--approved-by", required=True, help="approving authority")
    can.add_argument("--level", choices=("county", "city", "province"),
                     help="the approver's level; refused if below what the people require")
    can.add_argument("--document", help="approval document number")
    can.add_argument("--at", type=time_arg, help="approval time (default: now)")
    can.set_defaults(func=_cancel)

    sh = hsub.add_parser("shelters", help="nearest shelters with free places for a hazard point")
    sh.add_argument("hazard_id")
    sh.add_argument("--max-distance", type=float, default=10_000.0, metavar="METRES")
    sh.add_argument("--min-free", type=int, default=1)
    sh.set_defaults(func=_shelters)

    md = hsub.add_parser("match-devices", help="match located devices to hazard points")
    md.add_argument("--within", type=float, default=200.0, metavar="METRES",
                    help="also match devices this close outside a polygon (default 200)")
    md.add_argument("--apply", action="store_true",
                    help="set devices.hazard_id where it is still empty")
    md.set_defaults(func=_match_devices)

    wa = sub.add_parser("warnings", help="regional geohazard risk warnings: import, floor")
    wsub = wa.add_subparsers(dest="warnings_command", metavar="ACTION", required=True)
    wimp = wsub.add_parser("import", help="import a CAP 1.2 XML alert or a GeoJSON file")
    wimp.add_argument("file", type=Path)
    wimp.set_defaults(func=_import_warnings)
    fl = wsub.add_parser("floor", help="regional floor level of hazard points at a time")
    fl.add_argument("hazard_ids", nargs="+")
    fl.add_argument("--at", type=time_arg, required=True,
                    help="event time, ISO 8601 with offset")
    fl.set_defaults(func=_floor)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None


def _connect() -> psycopg.Connection:
    # Autocommit: each store function opens its own transaction where it needs one.
    return connect(autocommit=True)


def _parse(path: Path, kind: str, region_text: str | None) -> ParseResult[geojson_io.Record]:
    text = _read_text(path)
    try:
        region = records.parse_region(region_text)
        if path.suffix.lower() == ".csv" or (path.suffix.lower() not in (".json", ".geojson")
                                             and not text.lstrip().startswith("{")):
            return csv_io.read(text, kind, region=region)
        return geojson_io.read(text, kind, region=region)
    except FieldError as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def _report(path: Path, report: ImportReport, *, dry_run: bool = False) -> int:
    for problem in report.warnings:
        print(f"{path}: warning: {problem}", file=sys.stderr)
    for problem in report.errors:
        print(f"{path}: rejected: {problem}", file=sys.stderr)
    verb = "would import" if dry_run else "imported"
    print(f"{path}: {verb} {report.inserted} new, {report.updated} updated, "
          f"{report.unchanged} unchanged; {len(report.errors)} rejected")
    return 1 if report.errors else 0


def _import(args: argparse.Namespace) -> int:
    parsed = _parse(args.file, args.kind, args.region)
    if args.dry_run:
        return _report(args.file, ImportReport(len(parsed.records), 0, 0, parsed.errors,
                                               parsed.warnings), dry_run=True)
    with _connect() as conn:
        return _report(args.file, store.import_records(conn, args.kind, parsed))


def _export(args: argparse.Namespace) -> int:
    with _connect() as conn:
        items: list[geojson_io.Record]
        if args.kind == "hazards":
            items = list(store.list_hazards(conn, reveal_phones=args.reveal_phones))
        elif args.kind == "shelters":
            items = list(store.list_shelters(conn, reveal_phones=args.reveal_phones))
        else:
            items = list(store.list_households(conn, reveal_phones=args.reveal_phones))
    # Listing already masked unless allowed; dumps must not mask a second time.
    text = geojson_io.dumps(items, reveal_phones=True)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {len(items)} {args.kind} to {args.out}")
    else:
        print(text)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    at = args.at or datetime.now().astimezone()
    with _connect() as conn:
        level = store.cancel_hazard(conn, args.hazard_id, at=at, approved_by=args.approved_by,
                                    document=args.document, approver_level=args.level)
    print(f"{args.hazard_id}: cancelled at {at.isoformat()} ({level}-level approval)")
    return 0


def _shelters(args: argparse.Namespace) -> int:
    with _connect() as conn:
        ranked = store.nearest_shelters(conn, args.hazard_id, max_distance_m=args.max_distance,
                                        min_free=args.min_free)
    if not ranked:
        print(f"{args.hazard_id}: no shelter with {args.min_free}+ free places within "
              f"{args.max_distance:.0f} m")
        return 1
    for r in ranked:
        print(f"{r.shelter_id}\t{r.distance_m:.0f} m\t{r.free} free")
    return 0


def _match_devices(args: argparse.Namespace) -> int:
    if args.within < 0:
        raise InvalidInput("--within must be >= 0 metres")
    with _connect() as conn:
        matches = store.match_devices(conn, args.within)
        for device_id, m in matches.items():
            where = "-" if m is None else (
                f"{m.area_id} (inside)" if m.distance_m == 0 else
                f"{m.area_id} ({m.distance_m:.0f} m outside)")
            print(f"{device_id}\t{where}")
        if args.apply:
            print(f"assigned {store.apply_device_matches(conn, matches)} device(s)")
    return 0


def _import_warnings(args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    with _connect() as conn:
        if text.lstrip().startswith("<"):
            report = regional.import_cap(conn, text.encode("utf-8"))
        else:
            try:
                parsed = regional.read_geojson(text)
            except FieldError as exc:
                raise InvalidInput(f"{args.file}: {exc}") from None
            report = regional.store_warnings(conn, parsed)
    return _report(args.file, report)


def _floor(args: argparse.Namespace) -> int:
    with _connect() as conn:
        floors = regional.regional_floor(conn, args.hazard_ids, args.at)
    for hid, level in floors.items():
        print(f"{hid}\t{LEVEL_NAMES.get(int(level), 'none')}")
    return 0
