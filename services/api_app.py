"""The API as `geowarn api` serves it: api/'s app with notify/'s Twilio callbacks included.

This is a composition root: api/ and notify/ are siblings that may not import each other
(tests/test_layers.py), so the one app that serves both is put together here, a layer above.
The rest of the API-notify wiring goes through the database: the API records an
acknowledgement and the notifier stops the escalation (notify/escalation.py); the notifier
writes deliveries, the CAP feed and reads push subscriptions, which the API lists or
registers (api/routers/notifications.py, cap.py, push.py).

Production mode (GEOWARN_PRODUCTION) refuses to serve with a setting that would be unsafe or
silently wrong on a real network: `production_problems` says which and why.
"""

from __future__ import annotations

import logging
import os
import stat
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI

from api.app import create_app
from geowarn.settings import Settings, get_settings

log = logging.getLogger(__name__)


def callback_routes(settings: Settings, db_url: str) -> list[APIRouter]:
    """notify's callback routes when Twilio is set up (their signatures need the auth token),
    else none: an endpoint that cannot verify a request must not exist."""
    if settings.twilio_auth_token is None:
        return []
    from notify.callbacks import router

    if not settings.notify_callback_url:
        log.warning("GEOWARN_NOTIFY_CALLBACK_URL is unset: Twilio signatures are checked "
                    "against the URL as this server receives it, which is wrong behind a "
                    "proxy; set it to the externally visible base URL")
    return [router(db_url, auth_token=settings.twilio_auth_token.get_secret_value(),
                   public_base=settings.notify_callback_url)]


def served_app(settings: Settings | None = None, db_url: str | None = None) -> FastAPI:
    from geowarn.db import database_url

    settings = settings or get_settings()
    return create_app(callback_routes(settings, db_url or database_url()))


def production_problems(settings: Settings) -> list[str]:
    """What production mode refuses, one sentence each (empty: fine)."""
    problems = []
    if not settings.database_url:
        problems.append("GEOWARN_DATABASE_URL is unset (the embedded demo database would "
                        "be used)")
    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if "*" in origins:
        problems.append("GEOWARN_API_CORS_ORIGINS is '*': name the console's origins")
    if any(urlsplit(o).scheme != "https" for o in origins if o != "*"):
        problems.append("GEOWARN_API_CORS_ORIGINS: every origin must be https://")
    if settings.twilio_account_sid and settings.twilio_auth_token is None:
        problems.append("GEOWARN_TWILIO_AUTH_TOKEN is unset while GEOWARN_TWILIO_ACCOUNT_SID "
                        "is set (callbacks could not be verified)")
    if settings.twilio_auth_token is not None:
        base = settings.notify_callback_url or ""
        if urlsplit(base).scheme != "https":
            problems.append("GEOWARN_NOTIFY_CALLBACK_URL must be the externally visible "
                            "https:// base URL Twilio calls (signatures are over it)")
    if settings.notify_webhook_url and settings.notify_webhook_secret is None:
        problems.append("GEOWARN_NOTIFY_WEBHOOK_SECRET is unset while "
                        "GEOWARN_NOTIFY_WEBHOOK_URL is set (unsigned webhooks)")
    key = settings.notify_vapid_key_file
    if key is not None:
        if not key.is_file():
            problems.append(f"GEOWARN_NOTIFY_VAPID_KEY_FILE {key} does not exist")
        elif os.stat(key).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"GEOWARN_NOTIFY_VAPID_KEY_FILE {key} is readable by others "
                            "(chmod 600)")
    return problems
