"""CSV import for hazards, shelters and households.

The header names the same fields as the GeoJSON properties (id, name, type, ...). Geometry:
hazards need a `wkt` column (POLYGON or MULTIPOLYGON, lon lat order); shelters take either
`wkt` (POINT) or `lon` and `lat` columns. Monitors go in one column as
"name:phone;name:phone". Problems name the CSV line (the header is line 1), which is what an
operator sees in a spreadsheet or editor. A UTF-8 byte-order mark (Excel's) is accepted.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import shapely

from gis import geometry, records
from gis.geojson_io import Record
from gis.geometry import Bbox, GeometryError
from gis.model import FieldError
from gis.records import Collector, ParseResult

_REQUIRED = {"hazards": {"id", "wkt"}, "shelters": {"id"}, "households": {"id"}}


def read(text: str, kind: str, *, region: Bbox | None = None) -> ParseResult[Record]:
    if kind not in records.KINDS:
        raise FieldError(f"unknown kind {kind!r} (one of {', '.join(records.KINDS)})")
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise FieldError("CSV file is empty (no header line)")
    reader.fieldnames = header
    missing = _REQUIRED[kind] - set(header)
    if kind == "shelters" and "wkt" not in header and not {"lon", "lat"} <= set(header):
        missing |= {"wkt or lon,lat"}
    if missing:
        raise FieldError(f"CSV header lacks column(s) {', '.join(sorted(missing))} "
                         f"needed for {kind}")
    out: Collector[Record] = Collector(records.record_id)
    start = 2
    for row in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        if None in row:
            out.error(where, f"{len(row[None])} more value(s) than header columns")
            continue
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if not any(values.values()):
            continue  # blank line
        out.add(where, lambda v=values: _build(v, kind, region))  # type: ignore[misc]
    return out.result()


def _build(row: dict[str, Any], kind: str, region: Bbox | None) -> tuple[Record, list[str]]:
    if kind == "hazards":
        wkt = row.get("wkt")
        if not wkt:
            raise GeometryError("missing wkt: hazard points need a POLYGON or MULTIPOLYGON")
        shape, warnings = geometry.area_from_wkt(wkt, region=region)
        row["monitors"] = _monitors(row.get("monitors"))
        return records.hazard(row, shape), warnings
    if kind == "shelters":
        lon, lat = _point(row, region)
        return records.shelter(row, lon, lat), []
    return records.household(row), []


def _point(row: dict[str, Any], region: Bbox | None) -> tuple[float, float]:
    wkt = row.get("wkt")
    if wkt:
        try:
            geom = shapely.from_wkt(wkt)
        except shapely.errors.ShapelyError as exc:
            raise GeometryError(f"unreadable WKT: {exc}") from None
        if geom is None or geom.geom_type != "Point" or geom.is_empty:
            raise GeometryError(f"shelters need a POINT, got {wkt[:40]!r}")
        return geometry.check_lonlat(geom.x, geom.y, region=region)
    if not row.get("lon") or not row.get("lat"):
        raise GeometryError("missing lon/lat (or a wkt POINT)")
    try:
        lon, lat = float(row["lon"]), float(row["lat"])
    except ValueError:
        raise GeometryError(f"lon/lat must be numbers, got {row.get('lon')!r}, "
                            f"{row.get('lat')!r}") from None
    return geometry.check_lonlat(lon, lat, region=region)


def _monitors(text: str | None) -> list[dict[str, str | None]]:
    if not text:
        return []
    result: list[dict[str, str | None]] = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, _, phone = item.partition(":")
        result.append({"name": name.strip(), "phone": phone.strip() or None})
    return result
