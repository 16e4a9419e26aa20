"""/healthz: is the API up and can it reach its database (for load balancers and compose)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from geowarn.db import transaction
from geowarn.errors import DatabaseUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness and database reachability")
def healthz() -> Any:
    try:
        with transaction() as conn:
            conn.execute("SELECT 1")
    except DatabaseUnavailable as exc:
        return JSONResponse({"status": "unhealthy", "database": str(exc)[:200]},
                            status_code=503)
    return {"status": "ok", "database": "ok"}
