"""The FastAPI application: routers, error translation, CORS (off unless origins are set)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.routers import alerts, auth, devices, hazards, health, metrics, reports, stream
from geowarn.settings import get_settings


def create_app() -> FastAPI:
    app = FastAPI(
        title="GeoWarn duty officers' API",
        version="1",
        summary="Warnings on hazard points: review, acknowledge, resolve; devices and data.",
        description="Authenticate with `POST /api/auth/login` (a bearer token) or an "
        "`X-API-Key`. Every user sees only the counties of their scope; residents' names and "
        "phones are masked for roles that do not call people.",
    )
    errors.install(app)
    origins = [o.strip() for o in get_settings().api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    # The stream's fixed path is registered before /api/alerts/{alert_id}.
    for module in (health, metrics, auth, stream, alerts, hazards, reports, devices):
        app.include_router(module.router)
    return app
