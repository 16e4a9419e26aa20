"""What both payload decoders share: strict JSON, the contract's JSON Schemas, and turning one
raw device value into a canonical Reading (unit -> canonical -> calibration -> range check).

JSON parsing itself (duplicate keys, depth, BOM, NaN, huge integers) is devices.strict_json.
Schema violations are reported with the field path and a bounded, escaped description of the
offending value, never the whole instance (which may be megabytes, or hold a secret).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from devices.catalogue import ChannelSpec, SensorKind
from devices.messages import Calibration, DecodeError, Quality, Reading, Reason
from devices.text import printable, quoted
from devices.timestamps import TimestampError, TimeWindow
from geowarn.settings import get_settings

SCHEMA_BASE = "https://schemas.geowarn.org/v1/"


@functools.cache
def _validators(schema_dir: Path) -> dict[str, Draft202012Validator]:
    schemas = {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(schema_dir.glob("*.schema.json"))
    }
    registry: Registry = Registry().with_resources(
        (SCHEMA_BASE + name, Resource.from_contents(doc)) for name, doc in schemas.items()
    )
    validators = {}
    for name, doc in schemas.items():
        Draft202012Validator.check_schema(doc)
        validators[name] = Draft202012Validator(doc, registry=registry)
    return validators


@functools.cache
def _fast_validators(schema_dir: Path) -> dict[str, Callable[[Any], Any]]:
    """The same schemas compiled to Python code by fastjsonschema: ~30x faster on the hot path.

    Only a *pass* is trusted from these: a document they refuse is checked again by the
    reference validator, which decides and names the field. The schemas use no 2020-12
    keyword that fastjsonschema (draft 7) would ignore; tests/test_decoders.py checks that
    both agree on every contract example.
    """
    schemas = {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(schema_dir.glob("*.schema.json"))
    }

    def resolve(uri: str) -> Any:
        name = uri.removeprefix(SCHEMA_BASE).split("#", 1)[0]
        if name not in schemas:
            raise ValueError(f"schema {uri} is not one of the contract's schemas")
        return schemas[name]

    handlers = {"https": resolve, "http": resolve}
    return {name: fastjsonschema.compile(doc, handlers=handlers, use_formats=False)
            for name, doc in schemas.items()}


def validator(name: str) -> Draft202012Validator:
    """The compiled validator of firmware-contracts/schemas/{name}."""
    return _validators(get_settings().contracts_dir / "schemas")[name]


def check_schema(name: str, doc: object, *, device_id: str | None) -> None:
    """Raise DecodeError(SCHEMA_VIOLATION) naming the field path of the first violation."""
    try:
        _fast_validators(get_settings().contracts_dir / "schemas")[name](doc)
        return
    except fastjsonschema.JsonSchemaException:
        pass  # refused: the reference validator decides and explains
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    described = [describe_violation(e) for e in errors]
    detail = described[0]
    if len(described) > 1:
        others = "; ".join(described[1:4])
        more = f" and {len(described) - 4} more" if len(described) > 4 else ""
        detail += f" (also: {others}{more})"
    raise DecodeError(Reason.SCHEMA_VIOLATION, detail, device_id=device_id)


def describe_violation(err: Any) -> str:
    """"{path}: {what is wrong}" for one jsonschema error, naming keys and limits but showing
    at most a short escaped excerpt of the value."""
    # anyOf/oneOf failures say little on their own; the deepest sub-error names the field.
    while err.context:
        err = max(err.context, key=lambda e: (len(e.absolute_path), -len(e.context or ())))
    path = json_path(err.absolute_path)
    inst, kw, limit = err.instance, err.validator, err.validator_value
    if kw in ("maxProperties", "minProperties") and isinstance(inst, dict):
        keys = ", ".join(quoted(k, 32) for k in list(inst)[:5])
        if len(inst) > 5:
            keys += f", … ({len(inst)} keys)"
        bound = "at most" if kw == "maxProperties" else "at least"
        return f"{path}: has {len(inst)} properties ({keys or 'none'}); {bound} {limit} allowed"
    if kw in ("maxItems", "minItems") and isinstance(inst, list):
        bound = "at most" if kw == "maxItems" else "at least"
        return f"{path}: has {len(inst)} items; {bound} {limit} allowed"
    if kw in ("maxLength", "minLength") and isinstance(inst, str):
        bound = "at most" if kw == "maxLength" else "at least"
        return f"{path}: text of {len(inst)} characters; {bound} {limit} allowed"
    if kw == "additionalProperties" and isinstance(inst, dict):
        allowed = set(err.schema.get("properties") or {})
        extra = [k for k in inst if k not in allowed]
        names = ", ".join(quoted(k, 32) for k in extra[:5])
        if len(extra) > 5:
            names += f", … ({len(extra)} in all)"
        shown = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
        return f"{path}: unexpected properties {names}{shown}"
    if kw == "required":
        return f"{path}: {err.message}"
    if kw == "type":
        kinds = limit if isinstance(limit, str) else " or ".join(limit)
        return f"{path}: {_short(inst)} is not of type {kinds}"
    if kw == "enum":
        return f"{path}: {_short(inst)} is not one of {', '.join(map(repr, limit))[:120]}"
    if kw == "pattern":
        return f"{path}: {_short(inst)} does not match {limit}"
    if kw == "propertyNames":
        return f"{path}: key {_short(inst)} is not allowed"
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{path}: {_short(inst)} violates {kw} {limit}"
    return f"{path}: {_short(inst)} fails {kw}"


def _short(value: Any) -> str:
    return printable(value if not isinstance(value, str) else repr(value), 60)


def json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class ReadingRefused(Exception):
    """One value cannot become a reading; the decoder turns it into a Rejection."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ReadingContext:
    """Everything about the sending device and the moment that the conversion needs."""

    device_id: str
    window: TimeWindow
    calibration: Mapping[str, Calibration]
    quality: Quality = Quality.RELIABLE


def canonical_reading(
    ctx: ReadingContext,
    kind: SensorKind,
    spec: ChannelSpec,
    channel_key: str,
    ts: datetime,
    value: float,
    unit: str | None = None,
    quality: Quality | None = None,
) -> Reading:
    """Convert, calibrate and range-check one value; raise ReadingRefused when it fails."""
    if not math.isfinite(value):
        raise ReadingRefused(Reason.NOT_FINITE, f"{channel_key}: value {value} is not finite")
    try:
        ctx.window.check(ts)
    except TimestampError as exc:
        raise ReadingRefused(exc.reason, f"{channel_key}: {exc.detail}") from None
    if unit is not None and unit != spec.unit:
        conversion = spec.accepted_units.get(unit)
        if conversion is None:
            raise ReadingRefused(
                Reason.UNKNOWN_UNIT,
                f"{channel_key}: unit {unit!r} is not accepted for {kind.kind}.{spec.name} "
                f"(accepted: {', '.join(spec.accepted_units)})",
            )
        value = conversion.to_canonical(value)
    raw_canonical = value
    cal = ctx.calibration.get(channel_key)
    if cal is not None:
        value = cal.apply(value)
    if not math.isfinite(value):
        raise ReadingRefused(
            Reason.NOT_FINITE, f"{channel_key}: value overflows after conversion"
        )
    if not spec.in_range(value):
        shown = f"{value:g} {spec.unit}"
        if cal is not None:
            shown += f" after calibration (before: {raw_canonical:g})"
        raise ReadingRefused(
            Reason.OUT_OF_RANGE,
            f"{channel_key}: {shown} is outside the physical range "
            f"[{spec.low:g}, {spec.high:g}] {spec.unit}",
        )
    return Reading(
        device_id=ctx.device_id, channel=channel_key, kind=kind.kind, ts=ts, value=value,
        quality=max(ctx.quality, quality or Quality.RELIABLE),
    )
