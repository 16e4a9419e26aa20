"""The GIS domain: hazard points, shelters, households, regional warnings, and their rules.

Pure values and rules only (no I/O): frozen dataclasses, field validation shared by the
GeoJSON and CSV readers, the cancellation (销号) approval level, and phone masking.

Levels are plain ints 0 none, 1 blue, 2 yellow, 3 orange, 4 red: the values of
alerts.methods.levels.Level, which the warning engine (a layer above) makes of them; gis
imports nothing from alerts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

HAZARD_TYPES = ("landslide", "collapse", "debris_flow", "ground_subsidence", "ground_fissure")
SCALES = ("small", "medium", "large", "giant")
STATUSES = ("active", "under_treatment", "cancelled")
LEVEL_NAMES = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}
LEVEL_BY_NAME = {name: value for value, name in LEVEL_NAMES.items()}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# GB/T 2260: two digits province, two city, two county; a leading zero does not exist.
_COUNTY_CODE = re.compile(r"^[1-9][0-9]{5}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")


class FieldError(ValueError):
    """One field of one record is invalid; the message names the field."""


@dataclass(frozen=True)
class Person:
    name: str
    phone: str | None = None


@dataclass(frozen=True)
class HazardPoint:
    hazard_id: str
    name: str
    hazard_type: str
    scale: str
    county_code: str
    geometry: BaseGeometry  # Polygon or MultiPolygon, lon/lat, exterior rings CCW
    households: int = 0
    people: int = 0
    property_10k_yuan: float = 0.0
    responsible: Person | None = None
    monitors: tuple[Person, ...] = ()
    status: str = "active"
    cancelled_at: datetime | None = None
    cancel_approved_by: str | None = None
    cancel_document: str | None = None
    # Approval level recorded at cancellation (from the people threatened then); kept as
    # stored so a later change of `people` does not rewrite history.
    cancel_level: str | None = None


@dataclass(frozen=True)
class Shelter:
    shelter_id: str
    name: str
    lon: float
    lat: float
    capacity: int
    occupancy: int = 0
    contact: Person | None = None

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.occupancy)


@dataclass(frozen=True)
class Household:
    household_id: str
    hazard_id: str
    head: str
    members: int
    phone: str | None = None


@dataclass(frozen=True)
class RegionalWarning:
    warning_id: str
    issuer: str
    level: int  # 1 blue .. 4 red
    valid_from: datetime
    valid_to: datetime
    county_codes: tuple[str, ...] = ()
    geometry: BaseGeometry | None = None
    headline: str | None = None
    source: str = "geojson"
    cancelled_at: datetime | None = None

    def active_at(self, at: datetime) -> bool:
        """Valid at event time `at`: [valid_from, valid_to), and not yet cancelled."""
        if self.cancelled_at is not None and at >= self.cancelled_at:
            return False
        return self.valid_from <= at < self.valid_to


def cancellation_level(people: int) -> str:
    """Who approves cancelling (销号) a hazard point threatening `people` people.

    Zhejiang 浙政办发〔2017〕25号 (seed 003): the province for 100 people or more, the city
    for 30 to 99, the county for fewer than 30.
    """
    if people < 0:
        raise FieldError(f"people must be >= 0, got {people}")
    if people >= 100:
        return "province"
    if people >= 30:
        return "city"
    return "county"


APPROVAL_RANK = {"county": 1, "city": 2, "province": 3}


def mask_phone(phone: str | None) -> str | None:
    """138****1234: keep the first three and last four digits, hide the rest.

    Numbers too short to keep seven digits visible keep only the last two, so a masked
    number never reveals most of itself.
    """
    if phone is None:
        return None
    for prefix in ("+86", "0086"):
        # The 3+4 rule applies to the national number, not the country code.
        if phone.startswith(prefix) and len(phone) > len(prefix):
            return prefix + (mask_phone(phone[len(prefix):].lstrip(" -")) or "")
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    hidden = set(digits[3:-4]) if len(digits) >= 9 else set(digits[:-2])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(phone))


# --- field validation shared by the GeoJSON and CSV readers --------------------------------

def req_str(props: Mapping[str, Any], key: str) -> str:
    value = props.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError(f"missing required field {key!r}")
    if not isinstance(value, str | int):
        raise FieldError(f"{key} must be text, got {type(value).__name__}")
    return str(value).strip()


def opt_str(props: Mapping[str, Any], key: str) -> str | None:
    value = props.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str | int):
        raise FieldError(f"{key} must be text, got {type(value).__name__}")
    return str(value).strip()


def ident(props: Mapping[str, Any], key: str) -> str:
    value = req_str(props, key)
    if not _ID.match(value):
        raise FieldError(f"{key} {value!r} must be 1-64 letters, digits, '_', '.', '-' "
                         "starting with a letter or digit")
    return value


def choice(props: Mapping[str, Any], key: str, allowed: tuple[str, ...],
           default: str | None = None) -> str:
    value = opt_str(props, key)
    if value is None:
        if default is None:
            raise FieldError(f"missing required field {key!r} (one of {', '.join(allowed)})")
        return default
    if value not in allowed:
        raise FieldError(f"{key} {value!r} is not one of {', '.join(allowed)}")
    return value


def count(props: Mapping[str, Any], key: str, *, default: int | None = 0,
          minimum: int = 0) -> int:
    value = props.get(key)
    if value is None or value == "":
        if default is None:
            raise FieldError(f"missing required field {key!r}")
        return default
    if isinstance(value, bool):
        raise FieldError(f"{key} must be a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"{key} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise FieldError(f"{key} must be a whole number, got {value!r}")
    if number < minimum:
        raise FieldError(f"{key} must be >= {minimum}, got {value!r}")
    return int(number)


def amount(props: Mapping[str, Any], key: str) -> float:
    value = props.get(key)
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        raise FieldError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"{key} must be a number, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise FieldError(f"{key} must be a finite number >= 0, got {value!r}")
    return number


def county_code(props: Mapping[str, Any], key: str = "county_code") -> str:
    value = req_str(props, key)
    if not _COUNTY_CODE.match(value):
        raise FieldError(f"{key} {value!r} is not a six-digit administrative code")
    return value


def phone(props: Mapping[str, Any], key: str) -> str | None:
    value = opt_str(props, key)
    if value is None:
        return None
    if "*" in value:
        # An export made without --reveal-phones; importing it would overwrite real numbers.
        raise FieldError(f"{key} {value!r} is masked; export with --reveal-phones to round-trip")
    if not _PHONE.match(value):
        raise FieldError(f"{key} {value!r} is not a phone number")
    return value


def person(props: Mapping[str, Any], name_key: str, phone_key: str) -> Person | None:
    name = opt_str(props, name_key)
    number = phone(props, phone_key)
    if name is None:
        if number is not None:
            raise FieldError(f"{phone_key} given without {name_key}")
        return None
    return Person(name, number)


def timestamp(props: Mapping[str, Any], key: str, *, required: bool = False) -> datetime | None:
    value = opt_str(props, key)
    if value is None:
        if required:
            raise FieldError(f"missing required field {key!r}")
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"{key} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise FieldError(f"{key} {value!r} has no UTC offset (write e.g. +08:00)")
    return parsed


def check_cancellation(status: str, cancelled_at: datetime | None) -> None:
    if status == "cancelled" and cancelled_at is None:
        raise FieldError("status 'cancelled' needs cancelled_at (when 销号 was approved)")
    if status != "cancelled" and cancelled_at is not None:
        raise FieldError(f"cancelled_at given but status is {status!r}")
