"""The demo's last step: a demo login and the API app (with the console, when the app serves
one) on localhost until Ctrl-C.

The demo user is a county duty officer of the sample county with a random password, printed
once; the demo database is started afresh on every run, so an old password never lasts.
"""

from __future__ import annotations

import secrets
import socket
import threading
from dataclasses import dataclass
from typing import TextIO

import psycopg
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.users import add_user
from demo.county import COUNTY_CODE
from demo.database import DEMO_USER


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def create_demo_user(conn: psycopg.Connection) -> Login:
    password = secrets.token_urlsafe(12)
    add_user(conn, DEMO_USER, password, "duty_officer", [COUNTY_CODE],
             display_name="演示值班员 (demo duty officer)")
    return Login(DEMO_USER, password)


def console_path(app: FastAPI) -> str | None:
    """Where the app serves its console, or None when it serves none."""
    paths = sorted(getattr(r, "path", "") for r in app.routes)
    for p in paths:
        if p == "/console" or p.startswith("/console/"):
            return "/console/"
    return None


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, wanted: int) -> int:
    """`wanted` if free, else a free one (the demo must not fail because 8000 is taken)."""
    if wanted and port_free(host, wanted):
        return wanted
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve(host: str, port: int, login: Login, out: TextIO, stop: threading.Event) -> None:
    """Serve the API app until `stop` is set (Ctrl-C or SIGTERM in the caller).

    This is the app `geowarn api` serves (services/api_app.py) less Twilio's callbacks, which
    exist only with a Twilio auth token, and the demo sends through the file channel; demo/
    and services/ are one layer and may not import each other."""
    app = create_app()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           proxy_headers=False, server_header=False))
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        stop.wait(0.05)
    if not server.started:
        raise OSError(f"the API could not start on {host}:{port}")
    base = f"http://{host}:{port}"
    path = console_path(app)
    if path:
        print(f"  console: {base}{path}", file=out)
    print(f"  API:     {base}/api/alerts (OpenAPI at {base}/docs)", file=out)
    print(f"  login:   {login.username} / {login.password}   (demo duty officer of 示例县; "
          "password made for this run, shown once)", file=out)
    print("  Ctrl-C stops the demo.", file=out, flush=True)
    try:
        while thread.is_alive() and not stop.wait(0.5):
            pass
    finally:
        server.should_exit = True
        thread.join(timeout=10)
