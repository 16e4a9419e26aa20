"""From flat property mappings to domain records, with per-record errors and warnings.

The GeoJSON and CSV readers only find each record's properties and geometry and say where it
came from ("feature 3", "line 7"); the field rules live here once. A bad record never stops
the others: it becomes a Problem naming its place and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from shapely.geometry.base import BaseGeometry

from gis import model
from gis.geometry import Bbox, GeometryError
from gis.model import FieldError, HazardPoint, Household, Person, Shelter

KINDS = ("hazards", "shelters", "households")
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    where: str  # "feature 3" (0-based, as in the file's features array) or "line 7"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class ParseResult(Generic[T]):
    records: tuple[T, ...]
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    places: tuple[str, ...] = ()  # where each record came from, parallel to records


@dataclass
class Collector(Generic[T]):
    """Accumulates one file's records and problems; rejects duplicate ids within the file."""

    id_of: Callable[[T], str]
    records: list[T] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, build: Callable[[], tuple[T, list[str]]]) -> None:
        try:
            record, warnings = build()
        except (FieldError, GeometryError) as exc:
            self.errors.append(Problem(where, str(exc)))
            return
        rid = self.id_of(record)
        if rid in self._seen:
            self.errors.append(Problem(where, f"duplicate id {rid!r} (first at "
                                              f"{self._seen[rid]})"))
            return
        self._seen[rid] = where
        self.records.append(record)
        self.places.append(where)
        self.warnings.extend(Problem(where, w) for w in warnings)

    def error(self, where: str, reason: str) -> None:
        self.errors.append(Problem(where, reason))

    def result(self) -> ParseResult[T]:
        return ParseResult(tuple(self.records), tuple(self.errors), tuple(self.warnings),
                           tuple(self.places))


def record_id(record: HazardPoint | Shelter | Household) -> str:
    if isinstance(record, HazardPoint):
        return record.hazard_id
    if isinstance(record, Shelter):
        return record.shelter_id
    return record.household_id


def _monitors(value: Any) -> tuple[Person, ...]:
    if value is None or value == "":
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise FieldError("monitors must be a list of {name, phone} objects")
    people = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise FieldError(f"monitors[{i}] must be an object with name and phone")
        p = model.person(item, "name", "phone")
        if p is None:
            raise FieldError(f"monitors[{i}] has no name")
        people.append(p)
    return tuple(people)


def hazard(props: Mapping[str, Any], geometry: BaseGeometry) -> HazardPoint:
    status = model.choice(props, "status", model.STATUSES, default="active")
    cancelled_at = model.timestamp(props, "cancelled_at")
    model.check_cancellation(status, cancelled_at)
    people = model.count(props, "people")
    return HazardPoint(
        hazard_id=model.ident(props, "id"),
        name=model.req_str(props, "name"),
        hazard_type=model.choice(props, "type", model.HAZARD_TYPES),
        scale=model.choice(props, "scale", model.SCALES),
        county_code=model.county_code(props),
        geometry=geometry,
        households=model.count(props, "households"),
        people=people,
        property_10k_yuan=model.amount(props, "property_10k_yuan"),
        responsible=model.person(props, "responsible_name", "responsible_phone"),
        monitors=_monitors(props.get("monitors")),
        status=status,
        cancelled_at=cancelled_at,
        cancel_approved_by=model.opt_str(props, "cancel_approved_by"),
        cancel_document=model.opt_str(props, "cancel_document"),
        cancel_level=_cancel_level(props, people) if cancelled_at else None,
    )


def _cancel_level(props: Mapping[str, Any], people: int) -> str:
    # An exported record carries the level approved at the time; keep it (history), and
    # derive it from today's people only when the file does not say.
    if props.get("cancel_level") in (None, ""):
        return model.cancellation_level(people)
    return model.choice(props, "cancel_level", ("county", "city", "province"))


def shelter(props: Mapping[str, Any], lon: float, lat: float) -> Shelter:
    return Shelter(
        shelter_id=model.ident(props, "id"),
        name=model.req_str(props, "name"),
        lon=lon,
        lat=lat,
        capacity=model.count(props, "capacity", default=None, minimum=1),
        occupancy=model.count(props, "occupancy"),
        contact=model.person(props, "contact_name", "contact_phone"),
    )


def household(props: Mapping[str, Any]) -> Household:
    return Household(
        household_id=model.ident(props, "id"),
        hazard_id=model.ident(props, "hazard_id"),
        head=model.req_str(props, "head"),
        members=model.count(props, "members", default=None, minimum=1),
        phone=model.phone(props, "phone"),
    )


def flatten_person(props: dict[str, Any], key: str) -> None:
    """GeoJSON may nest {"responsible": {"name", "phone"}}; CSV has responsible_name/_phone."""
    nested = props.pop(key, None)
    if nested is None:
        return
    if not isinstance(nested, Mapping):
        raise FieldError(f"{key} must be an object with name and phone")
    for part in ("name", "phone"):
        flat = f"{key}_{part}"
        if flat in props and props[flat] != nested.get(part):
            raise FieldError(f"{key}.{part} and {flat} disagree")
        props[flat] = nested.get(part)


def parse_region(text: str | None) -> Bbox | None:
    """'118,27,123,31.5' (min_lon,min_lat,max_lon,max_lat) for --region."""
    if text is None:
        return None
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise FieldError(f"region {text!r} must be min_lon,min_lat,max_lon,max_lat") from None
    if len(parts) != 4 or not (parts[0] < parts[2] and parts[1] < parts[3]):
        raise FieldError(f"region {text!r} must be min_lon,min_lat,max_lon,max_lat "
                         "with min < max")
    return parts[0], parts[1], parts[2], parts[3]
