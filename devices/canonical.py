"""What both payload decoders share: strict JSON, the contract's JSON Schemas, and turning one
raw device value into a canonical Reading (unit -> canonical -> calibration -> range check).

JSON: `NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259 section 6) but Python's json
accepts them. They are parsed to float NaN/inf here so that the one reading that carries them
is refused (Reason.NOT_FINITE) while its neighbours are kept; a number too large for a double
(1e400) becomes inf and is refused the same way.
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
from devices.timestamps import TimestampError, TimeWindow
from geowarn.settings import get_settings

SCHEMA_BASE = "https://schemas.geowarn.org/v1/"


def loads_strict(payload: bytes, *, device_id: str | None = None) -> Any:
    """Parse UTF-8 JSON; a malformed document raises DecodeError(MALFORMED_JSON)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            Reason.MALFORMED_JSON, f"payload is not UTF-8 text (byte {exc.start})",
            device_id=device_id,
        ) from None
    try:
        return json.loads(text, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            Reason.MALFORMED_JSON,
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            device_id=device_id,
        ) from None
    except RecursionError:
        raise DecodeError(
            Reason.MALFORMED_JSON, "JSON nested too deeply", device_id=device_id
        ) from None


def _constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


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
    err = errors[0]
    # anyOf/oneOf failures say little on their own; the deepest sub-error names the field.
    if err.context:
        err = max(err.context, key=lambda e: len(e.absolute_path))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise DecodeError(
        Reason.SCHEMA_VIOLATION,
        f"{json_path(err.absolute_path)}: {err.message}{more}",
        device_id=device_id,
    )


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
