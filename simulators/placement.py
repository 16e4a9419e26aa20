"""Which registered devices a simulation speaks for (`geowarn simulate --device/--hazard/
--register`): the registry decides each device's kind and profile, so a scenario's messages
are ones the gateway accepts from that device."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from devices import registry
from devices.registry import Device, DeviceSpec
from geowarn.db import connect
from geowarn.errors import InvalidInput, NotFound
from simulators.library import Placement, Scenario
from simulators.streams import SimDevice

_ACTOR = "simulator"


def _placement(d: Device) -> Placement:
    return Placement(d.device_id, d.kind or "", d.profile)


def place(scenario: Scenario, device_ids: Sequence[str], hazard_id: str | None, prefix: str,
          *, register: bool) -> list[Placement]:
    """The devices to run `scenario` on: those named; else the suitable ones on the hazard
    point; else PREFIX-SCENARIO-1. Missing devices are registered with `register` (with the
    scenario's first suitable kind, on the hazard point), otherwise refused with the fix."""
    kind = scenario.kinds[0] if scenario.kinds else "crack_meter"
    with connect(autocommit=True) as conn:
        if not device_ids and hazard_id:
            on_hazard = [d for d in registry.list_devices(conn, hazard_id=hazard_id)
                         if d.status != "retired"]
            suitable = [d for d in on_hazard if scenario.suits(d.kind)]
            if suitable:
                return [_placement(d) for d in suitable]
            if not register:
                there = ", ".join(f"{d.device_id} ({d.kind})" for d in on_hazard) or "none"
                raise InvalidInput(
                    f"hazard point {hazard_id} has no {' or '.join(scenario.kinds)} device "
                    f"for scenario {scenario.name} (its devices: {there}); register one "
                    f"(geowarn devices add ID --kind {kind} --hazard {hazard_id}), give "
                    "--device ID, or add --register")
            device_ids = [f"{prefix}-{scenario.name.upper()}-{hazard_id}"]
        device_ids = list(device_ids) or [f"{prefix}-{scenario.name.upper()}-1"]
        out: list[Placement] = []
        for device_id in device_ids:
            try:
                device = registry.get_device(conn, device_id)
            except NotFound:
                if not register:
                    raise InvalidInput(
                        f"no device {device_id!r} in the registry: register it (geowarn "
                        f"devices add {device_id} --kind {kind}) or add --register") from None
                device = registry.add_device(conn, DeviceSpec(
                    device_id=device_id, kind=kind, hazard_id=hazard_id,
                    name=f"simulated {kind} ({scenario.name} scenario)"), actor=_ACTOR)
                print(f"registered {device_id} ({kind}"
                      + (f", on hazard point {hazard_id}" if hazard_id else "") + ")",
                      file=sys.stderr)
            if device.status == "retired":
                raise InvalidInput(f"{device_id} is retired; the broker and the gateway "
                                   "refuse it")
            out.append(_placement(device))
    return out


def register_fleet(devices: Sequence[SimDevice], hazard_id: str | None) -> None:
    """Register the simulated fleet's devices that are not registered yet."""
    with connect() as conn:
        existing = {row[0] for row in conn.execute(
            "SELECT device_id FROM devices WHERE device_id = ANY(%s)",
            ([d.device_id for d in devices],))}
        added = 0
        for d in devices:
            if d.device_id in existing:
                continue
            registry.add_device(conn, DeviceSpec(
                device_id=d.device_id, kind=d.kind.kind, profile=d.profile,
                hazard_id=hazard_id, name=f"simulated {d.kind.kind}"), actor=_ACTOR)
            added += 1
        conn.commit()
    print(f"registered {added} simulated devices ({len(existing)} were already registered)",
          file=sys.stderr)
