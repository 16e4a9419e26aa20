"""`geowarn api`: serve the duty officers' API with notify's callbacks (services/api_app.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from geowarn.errors import ConfigurationError


def register(sub: Any) -> None:
    api = sub.add_parser("api", help="serve the duty officers' API (GEOWARN_API_HOST/PORT)",
                         description="Also serves Twilio's status callbacks and inbound SMS "
                         "(/twilio/status, /twilio/inbound) when GEOWARN_TWILIO_AUTH_TOKEN is "
                         "set. With GEOWARN_PRODUCTION=true it refuses to start on unsafe "
                         "settings and names them.")
    api.add_argument("--host", help="listen address (default GEOWARN_API_HOST)")
    api.add_argument("--port", type=int, help="port (default GEOWARN_API_PORT)")
    api.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from geowarn.settings import get_settings
    from services.api_app import production_problems, served_app

    settings = get_settings()
    if settings.production:
        problems = production_problems(settings)
        if problems:
            raise ConfigurationError("production mode (GEOWARN_PRODUCTION) refuses to start:\n"
                                     + "\n".join(f"  - {p}" for p in problems))
    host, port = args.host or settings.api_host, args.port or settings.api_port
    app = served_app(settings)
    print(f"GeoWarn API on http://{host}:{port}/ (OpenAPI at /docs); Ctrl-C stops",
          file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="info",
                proxy_headers=False, server_header=False)
    return 0
