"""GeoJSON (RFC 7946) FeatureCollections in and out, for hazards, shelters and households.

Reading: every feature is judged on its own and a bad one becomes a Problem saying
"feature N" (its 0-based index in `features`) and why; the rest still import.
Hazards need a Polygon/MultiPolygon, shelters a Point, households no geometry (null).
Properties: see gis/examples/*.geojson; the feature's top-level "id" may stand in for
properties.id. Writing produces RFC 7946 output: CCW exteriors, lon/lat, no "crs" member,
phones masked unless the caller may see them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from gis import geometry, records
from gis.geometry import Bbox, GeometryError
from gis.model import FieldError, HazardPoint, Household, Person, Shelter, mask_phone
from gis.records import Collector, ParseResult, Problem

Record = HazardPoint | Shelter | Household


def load_document(text: str) -> Mapping[str, Any]:
    """The FeatureCollection in `text`; FieldError when it is not one."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FieldError(f"not JSON: {exc}") from None
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise FieldError("a GeoJSON FeatureCollection is required "
                         f"(got type {doc.get('type') if isinstance(doc, Mapping) else doc!r})")
    if not isinstance(doc.get("features"), list):
        raise FieldError("FeatureCollection has no 'features' list")
    if "crs" in doc:
        # RFC 7946 removed crs; anything but WGS84 lon/lat would be misread silently.
        name = json.dumps(doc["crs"])
        if "4326" not in name and "CRS84" not in name and "4490" not in name:
            raise FieldError(f"unsupported crs {name}: coordinates must be WGS84/CGCS2000 "
                             "lon/lat (RFC 7946)")
    return doc


def read(text: str, kind: str, *, region: Bbox | None = None) -> ParseResult[Record]:
    doc = load_document(text)
    out: Collector[Record] = Collector(records.record_id)
    for index, feature in enumerate(doc["features"]):
        where = f"feature {index}"
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            out.error(where, "not a GeoJSON Feature")
            continue
        out.add(where, lambda f=feature: _build(f, kind, region))  # type: ignore[misc]
    return out.result()


def _properties(feature: Mapping[str, Any]) -> dict[str, Any]:
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        raise FieldError("properties must be an object")
    props = dict(props)
    fid = feature.get("id")
    if fid is not None:
        if props.get("id") not in (None, fid):
            raise FieldError(f"feature id {fid!r} and properties.id {props['id']!r} disagree")
        props["id"] = fid
    return props


def _build(feature: Mapping[str, Any], kind: str,
           region: Bbox | None) -> tuple[Record, list[str]]:
    props = _properties(feature)
    geom = feature.get("geometry")
    if kind == "hazards":
        records.flatten_person(props, "responsible")
        shape, warnings = geometry.parse_area(geom, region=region)
        return records.hazard(props, shape), warnings
    if kind == "shelters":
        records.flatten_person(props, "contact")
        lon, lat = geometry.parse_point(geom, region=region)
        return records.shelter(props, lon, lat), []
    if kind == "households":
        if geom is not None:
            raise GeometryError("households carry no geometry (set it to null)")
        return records.household(props), []
    raise FieldError(f"unknown kind {kind!r} (one of {', '.join(records.KINDS)})")


# --- writing --------------------------------------------------------------------------------

def _person(p: Person | None, reveal: bool) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"name": p.name, "phone": p.phone if reveal else mask_phone(p.phone)}


def feature(record: Record, *, reveal_phones: bool = False) -> dict[str, Any]:
    if isinstance(record, HazardPoint):
        props: dict[str, Any] = {
            "id": record.hazard_id, "name": record.name, "type": record.hazard_type,
            "scale": record.scale, "county_code": record.county_code,
            "households": record.households, "people": record.people,
            "property_10k_yuan": record.property_10k_yuan,
            "responsible": _person(record.responsible, reveal_phones),
            "monitors": [_person(m, reveal_phones) for m in record.monitors],
            "status": record.status,
        }
        if record.cancelled_at is not None:
            props.update(cancelled_at=record.cancelled_at.isoformat(),
                         cancel_level=record.cancel_level,
                         cancel_approved_by=record.cancel_approved_by,
                         cancel_document=record.cancel_document)
        return {"type": "Feature", "id": record.hazard_id,
                "geometry": geometry.to_geojson(record.geometry), "properties": props}
    if isinstance(record, Shelter):
        props = {"id": record.shelter_id, "name": record.name, "capacity": record.capacity,
                 "occupancy": record.occupancy, "free": record.free,
                 "contact": _person(record.contact, reveal_phones)}
        return {"type": "Feature", "id": record.shelter_id,
                "geometry": {"type": "Point", "coordinates": [record.lon, record.lat]},
                "properties": props}
    props = {"id": record.household_id, "hazard_id": record.hazard_id, "head": record.head,
             "members": record.members,
             "phone": record.phone if reveal_phones else mask_phone(record.phone)}
    return {"type": "Feature", "id": record.household_id, "geometry": None,
            "properties": props}


def feature_collection(items: Iterable[Record], *,
                       reveal_phones: bool = False) -> dict[str, Any]:
    return {"type": "FeatureCollection",
            "features": [feature(r, reveal_phones=reveal_phones) for r in items]}


def dumps(items: Iterable[Record], *, reveal_phones: bool = False) -> str:
    return json.dumps(feature_collection(items, reveal_phones=reveal_phones),
                      ensure_ascii=False, indent=1)


__all__ = ["Problem", "ParseResult", "read", "feature", "feature_collection", "dumps",
           "load_document"]
