"""Engine partitions: which part of the registry one engine judges.

`geowarn engine --partitions N` splits the province into N partitions, each judged by one
leader (alerts/engine/leadership.py) with its own saved state ("engine.p0of4", ...), so
several engine processes share the load and a partition's standby restores it as a restart
does.

A channel belongs to the partition of its target's county: the GB/T 2260 county code of its
hazard point when that point is registered, else its target key ("site:S1", "device:D1").
Why the county, not the target: every channel of a target is judged together (fusion,
hysteresis per target), and neighbouring gauges corroborate each other's flat or repeating
data (alerts/engine/tick_quality.py) only inside one engine; a county keeps both together
except at its border. The assignment is a stable hash (CRC-32 mod N), the same in every
process and after every restart, so a partition's saved state always describes the same
targets; changing N gives every partition a new name and a fresh state (each starts from its
backfill, the alert lifecycle recognising re-judged changes as replays).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from alerts.engine.rules import ChannelInfo
from geowarn.errors import InvalidInput

MAX_PARTITIONS = 1024


@dataclass(frozen=True)
class Partition:
    """Partition `index` of `count` (count 1: the whole registry, the unpartitioned engine)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_PARTITIONS:
            raise InvalidInput(f"engine partitions must be 1..{MAX_PARTITIONS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise InvalidInput(f"engine partition index must be 0..{self.count - 1}, "
                               f"got {self.index}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def engine_name(self, base: str) -> str:
        """The name its state and alerts are saved under: the base name when unpartitioned
        (so `--partitions 1` is the classic engine), else "base.pKofN"."""
        return base if self.whole else f"{base}.p{self.index}of{self.count}"


def partition_of(key: str, count: int) -> int:
    """The partition of a partition key (a county code or a target key)."""
    return zlib.crc32(key.encode()) % count


def partition_keys(conn: psycopg.Connection, channels: Sequence[ChannelInfo]) -> list[str]:
    """Each channel's partition key: its hazard point's county code, else its target key."""
    hazards = sorted({c.hazard_id for c in channels if c.hazard_id})
    county: dict[str, str] = dict(conn.execute(
        "SELECT hazard_id, county_code FROM hazard_points WHERE hazard_id = ANY(%s)",
        (hazards,)).fetchall()) if hazards else {}
    out = []
    for c in channels:
        kind, ident = c.target
        out.append(county.get(c.hazard_id or "") or f"{kind}:{ident}")
    return out


def select(conn: psycopg.Connection, channels: list[ChannelInfo], partition: Partition
           ) -> list[ChannelInfo]:
    """The channels of one partition, in their registry order."""
    if partition.whole:
        return channels
    keys = partition_keys(conn, channels)
    return [c for c, k in zip(channels, keys, strict=True)
            if partition_of(k, partition.count) == partition.index]


def owner(partition: int, members: Sequence[str]) -> str:
    """Which live member should lead a partition: round robin over the members' sorted names,
    so partitions are spread as evenly as they can be (N/M each, give or take one)."""
    ranked = sorted(members)
    return ranked[partition % len(ranked)]
