"""/metrics: Prometheus text exposition, read from the database at each scrape (so every API
replica answers the same): ingest counters per gateway and dead letters by reason, open alerts
by level and kind, the notification outbox's depth, each engine's clock and state age.

Counts span every county, so only admins (a Prometheus bearer token or API key) may scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS

router = APIRouter(tags=["health"], responses=ERRORS)
LEVELS = ("none", "blue", "yellow", "orange", "red")


class StoreCollector(Collector):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def collect(self) -> Iterator[Metric]:
        conn = self.conn
        counters = CounterMetricFamily("geowarn_ingest", "gateway counters (since it started)",
                                       labels=["gateway", "counter"])
        rejected = CounterMetricFamily("geowarn_ingest_rejected",
                                       "messages or readings refused, by reason",
                                       labels=["gateway", "reason"])
        for gateway, stats in conn.execute("SELECT gateway, counters FROM ingest_stats"):
            for name, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool) \
                        and name != "uptime_s":
                    counters.add_metric([gateway, name], float(value))
            for reason, value in (stats.get("rejections") or {}).items():
                rejected.add_metric([gateway, reason], float(value))
        yield counters
        yield rejected
        letters = GaugeMetricFamily("geowarn_dead_letters", "dead letters kept, by reason",
                                    labels=["reason"])
        for reason, n in conn.execute("SELECT reason, count(*) FROM dead_letters "
                                      "GROUP BY reason"):
            letters.add_metric([reason], float(n))
        yield letters
        alerts = GaugeMetricFamily("geowarn_open_alerts", "unresolved alerts",
                                   labels=["level", "hazard_kind"])
        for level, kind, n in conn.execute(
                "SELECT level, hazard_kind, count(*) FROM alerts WHERE status <> 'resolved' "
                "GROUP BY level, hazard_kind"):
            alerts.add_metric([LEVELS[level], kind], float(n))
        yield alerts
        row = conn.execute("SELECT count(*) FROM notification_outbox "
                           "WHERE state = 'pending'").fetchone()
        yield GaugeMetricFamily("geowarn_outbox_depth", "level changes not yet handed to the "
                                "notifier", value=float(row[0]) if row else 0.0)
        clock = GaugeMetricFamily("geowarn_engine_clock_seconds",
                                  "each engine's clock (data or wall time, epoch seconds)",
                                  labels=["engine"])
        age = GaugeMetricFamily("geowarn_engine_state_age_seconds",
                                "seconds since each engine last saved a step", labels=["engine"])
        now = datetime.now(UTC)
        for engine, engine_clock, saved_at in conn.execute(
                "SELECT engine, clock, saved_at FROM engine_state"):
            clock.add_metric([engine], float(engine_clock))
            age.add_metric([engine], (now - saved_at).total_seconds())
        yield clock
        yield age


@router.get("/metrics", summary="Prometheus metrics (admins)", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(conn: Conn, user: CurrentUser) -> Response:
    require(user, "manage_users", check_county=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(conn))
    return Response(generate_latest(registry),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
