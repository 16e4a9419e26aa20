"""The channel catalogue: every sensor kind GeoWarn accepts, read from
firmware-contracts/catalogue.json (the file firmware teams read; this module only parses it).

Canonical units are what the store holds. A value in an accepted unit converts as
`canonical = value * scale + offset`. Ranges are physical limits in canonical units.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from geowarn.errors import InvalidInput
from geowarn.settings import get_settings


@dataclass(frozen=True)
class UnitConversion:
    scale: float
    offset: float = 0.0

    def to_canonical(self, value: float) -> float:
        return value * self.scale + self.offset


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    quantity: str
    unit: str
    low: float
    high: float
    accepted_units: dict[str, UnitConversion]
    national_field: str | None = None

    def in_range(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SensorKind:
    kind: str
    domain: str
    description: str
    national_code: str | None  # e.g. "L1_LF": class L1, type LF
    reporting_interval_s: int
    channels: tuple[ChannelSpec, ...]

    def channel(self, name: str) -> ChannelSpec:
        for spec in self.channels:
            if spec.name == name:
                return spec
        raise InvalidInput(f"sensor kind {self.kind!r} has no channel {name!r} "
                           f"(channels: {', '.join(self.channel_names)})")

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def national_field(self, field: str) -> ChannelSpec | None:
        for spec in self.channels:
            if spec.national_field == field:
                return spec
        return None


@dataclass(frozen=True)
class Catalogue:
    version: int
    kinds: dict[str, SensorKind]

    def kind(self, name: str) -> SensorKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise InvalidInput(
                f"unknown sensor kind {name!r} (known: {', '.join(sorted(self.kinds))})"
            ) from None

    def by_national_code(self, code: str) -> SensorKind | None:
        """`code` is the class_type prefix of a national sensor id, e.g. "L1_LF"."""
        for kind in self.kinds.values():
            if kind.national_code == code:
                return kind
        return None


def _parse(doc: dict) -> Catalogue:
    kinds: dict[str, SensorKind] = {}
    for k in doc["kinds"]:
        channels = tuple(
            ChannelSpec(
                name=c["name"],
                quantity=c["quantity"],
                unit=c["unit"],
                low=float(c["range"][0]),
                high=float(c["range"][1]),
                accepted_units={u: UnitConversion(float(v["scale"]), float(v["offset"]))
                                for u, v in c["accepted_units"].items()},
                national_field=c.get("national_field"),
            )
            for c in k["channels"]
        )
        kinds[k["kind"]] = SensorKind(
            kind=k["kind"], domain=k["domain"], description=k["description"],
            national_code=k.get("national_code"),
            reporting_interval_s=int(k["reporting_interval_s"]), channels=channels,
        )
    return Catalogue(version=int(doc["version"]), kinds=kinds)


@functools.cache
def _load(path: Path) -> Catalogue:
    return _parse(json.loads(path.read_text(encoding="utf-8")))


def load_catalogue(path: Path | None = None) -> Catalogue:
    return _load(path or get_settings().contracts_dir / "catalogue.json")
