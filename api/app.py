"""The FastAPI application: routers, error translation, CORS (off unless origins are set).

`extra_routers` are routes of other packages that the served app includes: api/ may not
import notify/ (tests/test_layers.py), so the composition root above both
(services/api_app.py, behind `geowarn api`) passes notify's Twilio callbacks in."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from api import errors
from api.routers import (
    alerts,
    auth,
    cap,
    console,
    devices,
    hazards,
    health,
    metrics,
    notifications,
    push,
    regional,
    reports,
    status,
    stream,
    velocity,
)
from geowarn.settings import get_settings


def create_app(extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    app = FastAPI(
        title="GeoWarn duty officers' API",
        version="1",
        summary="Warnings on hazard points: review, acknowledge, resolve; devices and data.",
        description="Authenticate with `POST /api/auth/login` (a bearer token) or an "
        "`X-API-Key`. Every user sees only the counties of their scope; residents' names and "
        "phones are masked for roles that do not call people.",
    )
    errors.install(app)
    # Large responses (the hazard map's FeatureCollection, CAP feeds) go compressed to
    # clients that accept gzip; event streams are never buffered (excluded by type).
    app.add_middleware(GZipMiddleware, minimum_size=500, compresslevel=5)
    origins = [o.strip() for o in get_settings().api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    # The stream's fixed path is registered before /api/alerts/{alert_id}.
    for module in (health, metrics, auth, stream, alerts, hazards, reports, devices,
                   notifications, cap, push, regional, status, velocity):
        app.include_router(module.router)
    for extra in extra_routers:
        app.include_router(extra)
    console.install(app)
    return app
