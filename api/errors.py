"""GeoWarn's errors as HTTP answers, in one place (HTTP exists only in api/)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import NO_NUL
from api.users import AuthError, Throttled
from geowarn.errors import DatabaseUnavailable, GeoWarnError, InvalidInput, NotFound

log = logging.getLogger(__name__)


def _field(loc: Sequence[Any]) -> str:
    # ("body", "note") -> "note"; ("query", "limit") -> "limit"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


def _message(error: Mapping[str, Any]) -> str:
    # The schema's NO_NUL pattern, said as what it means.
    if (error.get("ctx") or {}).get("pattern") == NO_NUL:
        return "contains a NUL byte, which cannot be stored"
    return str(error.get("msg", ""))


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "message": _message(e)}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    # A value PostgreSQL cannot store (a NUL byte in a name or note, found by schemathesis
    # in a login's username) is the client's error, not a 500.
    @app.exception_handler(psycopg.DataError)
    async def _bad_data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        first = str(exc).splitlines()[0] if str(exc) else "invalid value"
        return JSONResponse({"detail": f"a text field cannot be stored: {first}"},
                            status_code=422)

    @app.exception_handler(GeoWarnError)
    async def _geowarn_error(request: Request, exc: GeoWarnError) -> JSONResponse:
        status, headers = 400, {}
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, InvalidInput):
            status = 422
        elif isinstance(exc, AuthError):
            status, headers = 401, {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, Throttled):
            status, headers = 429, {"Retry-After": str(exc.retry_after_s)}
        elif isinstance(exc, DatabaseUnavailable):
            status, headers = 503, {"Retry-After": "5"}
            log.warning("database unavailable: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
