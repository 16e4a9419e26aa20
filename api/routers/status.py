"""/api/status: is ingest running, is the engine deciding, is the notifier keeping up.

What the services record of themselves, read here: each gateway's last counters
(ingest_stats, saved every 10 s even when idle), each engine's last saved step (engine_state)
and partition leaders (engine_partitions), the outbox and deliveries waiting, and dead letters
in the last 24 h. `stale` marks a report older than `stale_after_s`, the same limit an
operator gives `geowarn health --max-age`. No personal data: every role may read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS

router = APIRouter(prefix="/api/status", tags=["health"], responses=ERRORS)


class GatewayStatus(BaseModel):
    gateway: str
    updated_at: datetime
    age_s: float
    stale: bool
    stalled_s: float
    pending_messages: int
    readings_stored: int
    dead_letters: int


class EngineStatus(BaseModel):
    engine: str
    clock: datetime
    saved_at: datetime
    age_s: float
    stale: bool
    channels: int


class PartitionStatus(BaseModel):
    engine: str
    partition: int
    partitions: int
    leader: str
    since: datetime
    heartbeat_age_s: float


class StatusOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "checked_at": "2026-07-01T02:00:00+00:00", "stale_after_s": 120.0,
        "gateways": [{"gateway": "gateway-1", "updated_at": "2026-07-01T01:59:55+00:00",
                      "age_s": 5.0, "stale": False, "stalled_s": 0.0, "pending_messages": 0,
                      "readings_stored": 812345, "dead_letters": 12}],
        "engines": [{"engine": "engine", "clock": "2026-07-01T01:59:58+00:00",
                     "saved_at": "2026-07-01T01:59:58+00:00", "age_s": 2.0, "stale": False,
                     "channels": 2400}],
        "partitions": [], "outbox_pending": 0, "deliveries_due": 0,
        "dead_letters_24h": 3}]})
    checked_at: datetime
    stale_after_s: float
    gateways: list[GatewayStatus]
    engines: list[EngineStatus]
    partitions: list[PartitionStatus]
    outbox_pending: int
    deliveries_due: int
    dead_letters_24h: int


def _int(counters: dict[str, Any], key: str) -> int:
    value = counters.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


@router.get("", response_model=StatusOut, summary="ingest, engine and notifier status")
def status(conn: Conn, user: CurrentUser,
           stale_after_s: Annotated[float, Query(gt=0, le=86400.0,
                                                 description="seconds after which a "
                                                 "service's last report counts as stale")]
           = 120.0) -> Any:
    require(user, "read", check_county=False)
    now = datetime.now(UTC)
    gateways = []
    for name, updated_at, counters in conn.execute(
            "SELECT gateway, updated_at, counters FROM ingest_stats ORDER BY gateway"):
        counters = counters if isinstance(counters, dict) else {}
        age = (now - updated_at).total_seconds()
        stalled = counters.get("stalled_s", 0)
        gateways.append(GatewayStatus(
            gateway=name, updated_at=updated_at, age_s=round(age, 1),
            stale=age > stale_after_s,
            stalled_s=float(stalled) if isinstance(stalled, int | float) else 0.0,
            pending_messages=_int(counters, "pending_messages"),
            readings_stored=_int(counters, "readings_stored"),
            dead_letters=_int(counters, "dead_letters")))
    engines = []
    for name, clock, saved_at, channels in conn.execute(
            "SELECT s.engine, s.clock, s.saved_at, (SELECT count(*) FROM engine_state_rows r "
            "WHERE r.engine = s.engine AND r.scope = 'channel') FROM engine_state s "
            "ORDER BY s.engine"):
        age = (now - saved_at).total_seconds()
        engines.append(EngineStatus(engine=name, clock=datetime.fromtimestamp(clock, UTC),
                                    saved_at=saved_at, age_s=round(age, 1),
                                    stale=age > stale_after_s, channels=int(channels or 0)))
    partitions = [PartitionStatus(engine=e, partition=p, partitions=n, leader=leader,
                                  since=since,
                                  heartbeat_age_s=round((now - seen).total_seconds(), 1))
                  for e, n, p, leader, since, seen in conn.execute(
                      "SELECT engine, partitions, partition, leader, since, seen_at "
                      "FROM engine_partitions ORDER BY engine, partitions, partition")]
    row = conn.execute(
        "SELECT (SELECT count(*) FROM notification_outbox WHERE state = 'pending'), "
        "(SELECT count(*) FROM deliveries WHERE state = 'pending' "
        " AND next_attempt_at <= now()), "
        "(SELECT count(*) FROM dead_letters WHERE received_at > now() - interval '24 hours')"
    ).fetchone()
    outbox, due, letters = row if row else (0, 0, 0)
    return StatusOut(checked_at=now, stale_after_s=stale_after_s, gateways=gateways,
                     engines=engines, partitions=partitions, outbox_pending=int(outbox),
                     deliveries_due=int(due), dead_letters_24h=int(letters))
