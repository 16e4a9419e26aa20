"""The soak's fleet (bench/soak.py): who does what, drawn once from the seed, and the stream
of messages it sends minute by minute with its faults applied, while recording what the store
must then hold. Pure: nothing here touches the broker or the database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from alerts.methods.quality import HAMPEL_HALF

SPIKE_APART = 2 * HAMPEL_HALF + 2  # minutes between a device's spikes, at least

@dataclass
class Plan:
    """Who does what, drawn once from the seed."""

    n: int
    minutes: int
    water: np.ndarray  # (n,) bool: water-level gauge, else crack meter
    base: np.ndarray  # (n,) normal value
    offline: dict[int, tuple[int, int]]  # device -> [from, to) minutes
    stuck: dict[int, tuple[int, int]]
    spikes: dict[int, set[int]]
    flood: set[int]
    skew_s: np.ndarray  # (n,) float seconds added to every stamp
    future: dict[int, int]  # device -> minute of its one message stamped a day ahead
    dup_p: float = 0.01
    ooo_p: float = 0.01
    ids: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> set[int]:
        faulty = set(self.offline) | set(self.stuck) | set(self.spikes) | self.flood \
            | set(self.future) | set(np.flatnonzero(self.skew_s).tolist())
        return set(range(self.n)) - faulty


def make_plan(n: int, minutes: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    water = np.arange(n) % 2 == 0
    base = np.where(water, rng.uniform(8.0, 11.0, n), rng.uniform(3.0, 8.0, n)).round(3)
    order = rng.permutation(n)
    k = lambda p: max(1, int(round(n * p)))  # noqa: E731 - at least one of each fault
    groups, at = {}, 0
    for name, p in (("offline", 0.01), ("stuck", 0.005), ("spikes", 0.01), ("skew", 0.02),
                    ("future", 0.001)):
        groups[name] = order[at:at + k(p)].tolist()
        at += k(p)
    gauges = [int(d) for d in order[at:] if water[d]]
    flood = set(gauges[:k(0.002)])
    span = lambda frac_max, cap: max(20, min(cap, int(minutes * frac_max)))  # noqa: E731
    offline = {}
    for d in groups["offline"]:
        a = int(rng.integers(minutes // 5, max(minutes // 5 + 1, minutes // 2)))
        offline[d] = (a, min(minutes - 5, a + span(0.3, 120)))
    stuck = {}
    for d in groups["stuck"]:
        a = int(rng.integers(minutes // 5, max(minutes // 5 + 1, minutes // 2)))
        stuck[d] = (a, min(minutes - 1, a + max(40, span(0.3, 180))))
    # Single-sample spikes, away from the edges and from each other: two in a row are an
    # onset the engine confirms, and two inside one spike-filter window (2·HAMPEL_HALF + 1
    # samples) are a burst, not isolated spikes (a 0.5 h plan put them 2 minutes apart and
    # raised false water-level alerts: reported under issue 7). Slots SPIKE_APART apart at
    # least; each device's three share one offset.
    slots = np.arange(minutes // 6, minutes - minutes // 6, max(SPIKE_APART, minutes // 12))
    spikes = {d: set((rng.choice(slots, min(3, slots.size), replace=False)
                      + rng.integers(0, max(1, minutes // 24))).tolist())
              for d in groups["spikes"]} if slots.size else {}
    skew = np.zeros(n)
    for d in groups["skew"]:
        skew[d] = float(rng.choice([-1, 1]) * rng.integers(5, 51))
    future = {d: int(rng.integers(minutes // 4, minutes)) for d in groups["future"]}
    ids = [f"SOAK-{'WL' if water[i] else 'CM'}-{i:05d}" for i in range(n)]
    return Plan(n, minutes, water, base, offline, stuck, spikes, flood, skew, future, ids=ids)


def values_at(plan: Plan, m: int, rng: np.random.Generator) -> np.ndarray:
    """Every device's value at minute m (rounded as a device reports it)."""
    day = np.sin(2 * np.pi * m / 1440.0)
    v = np.where(plan.water, plan.base + 0.05 * day + rng.normal(0, 0.02, plan.n),
                 plan.base + rng.normal(0, 0.03, plan.n))
    for d in plan.flood:  # a hydrograph over the middle of the span: up 6.6 m and back
        x = (m - 0.45 * plan.minutes) / max(30.0, 0.15 * plan.minutes)
        v[d] += 6.6 * max(0.0, 1.0 - abs(x))
    for d, (a, _) in plan.stuck.items():
        if a <= m < plan.stuck[d][1]:
            v[d] = plan.base[d]
    for d, when in plan.spikes.items():
        if m in when:
            v[d] += 6.0 if plan.water[d] else 25.0
    return np.round(v, 3)


@dataclass
class Expected:
    """What the store must hold, accumulated while the stream is built."""

    device: list[np.ndarray] = field(default_factory=list)
    ts_ms: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    late: list[tuple[int, int]] = field(default_factory=list)  # (device, ts ms) sent late
    future_messages: int = 0
    future_published: int = 0  # future-stamped publications, a duplicated one counted twice
    messages: int = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(device, ts ms, value) of every expected reading, joined once and kept joined."""
        for parts in (self.device, self.ts_ms, self.value):
            if len(parts) != 1:
                parts[:] = [np.concatenate(parts)]
        return self.device[0], self.ts_ms[0], self.value[0]


def _stamp(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000.0, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def stream(plan: Plan, start: datetime, seed: int, exp: Expected,
           sabotage: str = "") -> Iterator[tuple[str, bytes]]:
    """The fleet minute by minute, faults applied; fills `exp` as it goes. `sabotage`
    breaks the run on purpose, to show the checks catch it: "lose" leaves one expected
    message of a healthy device unsent, "double" sends one of its readings a second time
    stamped a second later (a reading stored twice under two stamps)."""
    rng = np.random.default_rng(seed + 7)
    victim, victim_m = min(plan.healthy, default=0), plan.minutes // 2
    topics = [f"gw/v1/{i}/telemetry" for i in plan.ids]
    chan = ["level" if w else "opening" for w in plan.water]
    seq = np.zeros(plan.n, np.int64)
    held: dict[int, tuple[bytes, bool]] = {}  # out of order: sent after the device's next one
    t0 = int(start.timestamp() * 1000)
    off = np.zeros(plan.n, bool)
    skew_ms = (plan.skew_s * 1000).astype(np.int64)
    future_ms = 86_400_000 + int(time.time() * 1000) - t0  # a day ahead of the wall clock
    for m in range(plan.minutes):
        vals = values_at(plan, m, rng)
        off[:] = False
        for d, (a, b) in plan.offline.items():
            off[d] = a <= m < b
        send = np.flatnonzero(~off)
        ts = t0 + m * 60_000 + skew_ms[send]
        fut = np.array([plan.future.get(int(d)) == m for d in send], bool) if plan.future \
            else np.zeros(send.size, bool)
        exp.device.append(send[~fut].astype(np.int32))
        exp.ts_ms.append(ts[~fut])
        exp.value.append(vals[send[~fut]])
        dup = rng.random(send.size) < plan.dup_p
        ooo = rng.random(send.size) < plan.ooo_p
        for j, d in enumerate(send.tolist()):
            seq[d] += 1
            stamp = ts[j] + (future_ms if fut[j] else 0)
            payload = (f'{{"seq":{seq[d]},"readings":[{{"ts":"{_stamp(int(stamp))}",'
                       f'"channel":"{chan[d]}","value":{float(vals[d])!r}}}]}}').encode()
            exp.messages += 1
            exp.future_messages += int(fut[j])
            if sabotage and d == victim and m == victim_m:
                if sabotage == "double":
                    yield topics[d], payload
                    seq[d] += 1
                    yield topics[d], (
                        f'{{"seq":{seq[d]},"readings":[{{"ts":"{_stamp(int(stamp) + 1000)}",'
                        f'"channel":"{chan[d]}","value":{float(vals[d])!r}}}]}}').encode()
                continue  # "lose": recorded as expected, never sent
            if ooo[j] and d not in held:
                held[d] = (payload, bool(fut[j]))
                if not fut[j]:
                    exp.late.append((d, int(ts[j])))
                continue
            yield topics[d], payload
            exp.future_published += int(fut[j])
            if dup[j]:
                # Each publication of a rejected message is its own dead letter: the gateway
                # keeps what arrived, and a device's resend is a second arrival.
                yield topics[d], payload
                exp.future_published += int(fut[j])
            if d in held:
                late_payload, late_fut = held.pop(d)
                yield topics[d], late_payload
                exp.future_published += int(late_fut)
    for d, (payload, late_fut) in held.items():
        yield topics[d], payload
        exp.future_published += int(late_fut)
