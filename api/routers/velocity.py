"""/api/devices/{id}/velocity: a displacement channel's velocity per scale with its standard
error, hour by hour over a time range, as the warning engine computes it (the console's
velocity chart). The series is the engine's own code replayed over the stored readings
(alerts/engine/disp_series.py), not a curve drawn from the readings by the browser, so the
chart shows what the engine judged: steps removed, the MIDAS velocities of
alerts/methods/velocity.py, the channel's own scales.

Who may read it: whoever may read the device's readings (its county; see devices.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from alerts.engine import disp_series
from api.deps import Conn, CurrentUser
from api.routers.devices import _aware, _device_for
from api.schemas import ERRORS
from geowarn.errors import InvalidInput

router = APIRouter(tags=["devices"], responses=ERRORS)
# ~1,000 replayed hours with the warm-up: ~3 s of CPU (BENCHMARKS.md, "Velocity series").
MAX_RANGE = timedelta(days=31)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class VelocityPoint(BaseModel):
    ts: datetime = Field(description="end of the hour the velocity was evaluated at")
    mm_per_day: float | None = Field(description="null where the scale had too few hours")
    se: float | None = Field(description="its standard error (MIDAS), mm/day")


class VelocityScale(BaseModel):
    scale: str = Field(examples=["24h"])
    hours: int
    points: list[VelocityPoint]


class StepOut(BaseModel):
    ts: datetime
    jump_mm: float
    kind: str = Field(description="offset (removed from the series) or slip (movement, "
                                  "kept in the displacement, out of the velocities)")


class VelocityOut(BaseModel):
    device: str
    channel: str
    unit: str = "mm/day"
    scales: list[VelocityScale]
    steps: list[StepOut]
    replayed_from: datetime = Field(description="first hour of readings the engine's code "
                                                "was run over (the longest scale and the "
                                                "step detector's window before `from`)")


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@router.get("/api/devices/{device_id}/velocity", response_model=VelocityOut,
            summary="a displacement channel's velocities per scale with standard errors, "
                    "as the engine computes them, hour by hour (for charts)")
def device_velocity(
        device_id: str, conn: Conn, user: CurrentUser,
        channel: Annotated[str, Query(min_length=1, max_length=64)],
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime | None, Query(alias="to")] = None) -> dict[str, Any]:
    d = _device_for(conn, user, device_id)
    start = _aware("from", start)
    end = _aware("to", end) if end else datetime.now(UTC)
    for name, t in (("from", start), ("to", end)):
        if not EARLIEST <= t <= LATEST:  # also keeps the replay's hour arithmetic in range
            raise HTTPException(422, f"{name}: between {EARLIEST.year} and {LATEST.year}")
    if end <= start:
        raise HTTPException(422, "to: must be after from")
    if end - start > MAX_RANGE:
        raise HTTPException(422, f"from: at most {MAX_RANGE.days} days before to")
    found = {c.channel: c for c in d.channels}
    if channel not in found:
        raise HTTPException(422, f"channel: {device_id} has no channel {channel!r} "
                            f"(channels: {', '.join(found)})")
    try:
        series = disp_series.load(conn, found[channel].channel_id, start, end)
    except InvalidInput as exc:
        raise HTTPException(422, f"channel: {channel}: {exc}") from None
    scales = [{"scale": f"{h}h", "hours": h, "points": [
        {"ts": _ts(t), "mm_per_day": _num(v), "se": _num(e)}
        for t, v, e in zip(series.t, series.v[:, k], series.se[:, k], strict=True)]}
        for k, h in enumerate(series.scales_h)]
    return {"device": device_id, "channel": channel, "unit": "mm/day", "scales": scales,
            "steps": [{"ts": _ts(s.time), "jump_mm": s.jump_mm, "kind": s.kind}
                      for s in series.steps],
            "replayed_from": _ts(series.replay_from)}
