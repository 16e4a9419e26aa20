"""The authorization matrix (issue 11): every route of the app `geowarn api` serves, walked
from `app.routes`, x every principal (admin, duty officer, monitor, viewer, API keys of a
viewer and of a duty officer, the console's session cookie, nobody) x an object of the own
county, of another county of the province, of another province and of no county, against the
real database through a real uvicorn server. Each route has a declared expectation
(tests/authz_expectations.py); a route without one fails here, named, so a new endpoint
cannot escape the matrix.

Design the matrix holds the API to: no credentials (or dead ones) is 401 on every
authenticated route; a role without the action is 403; an object outside the user's counties
is 403 (the API's one answer for it, never its content); lists hold only objects inside the
user's counties; residents' and monitors' phones are masked for roles without read_personal.
Expired tokens, logged-out tokens and cookies, tokens of a user whose password changed or who
was disabled, and a disabled user's API key are 401 on every authenticated route. The same
walk checks that every malformed parameter or body field is a 422 naming it."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api import users
from geowarn import db as geowarn_db
from geowarn.cli import main as geowarn_cli
from geowarn.embedded import free_port
from geowarn.settings import override_settings, reset_settings
from services.api_app import served_app
from tests.authz_expectations import EXPECTATIONS, Case, Req, route_keys
from tests.authz_world import COUNTIES, OWN, PASSWORD, World
from tests.fixtures.database import create_database, drop_database


@pytest.fixture(scope="module")
def world(pg_admin_url: str, migrated_template: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One database, one seeded world and one server for the whole module."""
    previous = users.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    name = f"geowarn_t_{os.getpid()}_authz"
    drop_database(pg_admin_url, name)
    url = create_database(pg_admin_url, name, template=migrated_template)
    key = tmp_path_factory.mktemp("vapid") / "vapid.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key.chmod(stat.S_IRUSR | stat.S_IWUSR)
    geowarn_db.close_pool()
    settings = override_settings(database_url=url, notify_vapid_key_file=key,
                                 twilio_auth_token="matrix-twilio-token",
                                 notify_callback_url="https://warn.example.org")
    srv: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            w = World(conn)
            w.seed()
            w.app = served_app(settings, url)
            port = free_port()
            srv = uvicorn.Server(uvicorn.Config(w.app, host="127.0.0.1", port=port,
                                                log_level="warning", lifespan="off"))
            thread = threading.Thread(target=srv.run, daemon=True)
            thread.start()
            for _ in range(200):
                if srv.started:
                    break
                threading.Event().wait(0.05)  # uvicorn offers no started event
            assert srv.started, "uvicorn did not start"
            w.base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=w.base, timeout=30) as client:
                w.client = client
                yield w
    finally:
        if srv is not None and thread is not None:
            srv.should_exit = True
            thread.join(10)
        geowarn_db.close_pool()
        reset_settings()
        users.use_hasher(previous)
        drop_database(pg_admin_url, name)


def send(w: World, req: Req, headers: dict[str, str]) -> httpx.Response:
    """The request; an event stream is read by its check (here: status and headers only)."""
    kwargs = {"params": req.params, "json": req.json, "content": req.content,
              "files": req.files, "data": req.data}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    all_headers = {**headers, **req.headers}
    # Only the credentials given count: a cookie the login route set must not authenticate
    # the next principal's requests.
    w.client.cookies.clear()
    if req.stream:
        with w.client.stream(req.method, req.url, headers=all_headers,
                             timeout=httpx.Timeout(20.0), **kwargs) as r:
            if r.status_code == 200 and req.read_stream is not None:
                req.read_stream(r)
            else:
                r.read()
            return r
    return w.client.request(req.method, req.url, headers=all_headers, **kwargs)


def test_every_route_has_a_declared_expectation(world: World) -> None:
    served = route_keys(world.app)
    missing = sorted(served - set(EXPECTATIONS))
    assert not missing, (
        "routes with no declared authorization expectation (add them to "
        f"tests/authz_expectations.py): {', '.join(f'{m} {p}' for m, p in missing)}")
    stale = sorted(set(EXPECTATIONS) - served)
    assert not stale, f"expectations for routes the app no longer serves: {stale}"


def _run(w: World, case: Case, principal_name: str, county: str | None,
         failures: list[str]) -> int:
    p = w.principals[principal_name]
    req = case.build(w, p, county)
    if req is None:
        return 0  # the route has no object in that place (a hazard point of no county)
    want = case.expect(p, county)
    r = send(w, req, req.as_principal.headers if req.as_principal else p.headers)
    where = f"{case.method} {req.url} as {principal_name} ({tag(county)})"
    if r.status_code != want:
        failures.append(f"{where}: {r.status_code}, expected {want}: {r.text[:300]}")
        return 1
    if r.status_code >= 400:
        detail = r.json().get("detail") if "json" in r.headers.get("content-type", "") \
            else None
        if not detail and not case.bare_errors:
            failures.append(f"{where}: a {r.status_code} with no detail saying why")
    elif case.check is not None:
        try:
            case.check(w, p, county, r)
        except AssertionError as exc:
            failures.append(f"{where}: {exc}")
    return 1


def tag(county: str | None) -> str:
    return county or "no county"


def test_authorization_matrix(world: World) -> None:
    """Every declared route x principal x place: the expected status, and what came back
    holds nothing of another county and no phone a role may not see."""
    failures: list[str] = []
    sent = 0
    for case in (c for cases in EXPECTATIONS.values() for c in cases):
        for principal in world.principals:
            for county in (COUNTIES if case.per_county else (OWN,)):
                sent += _run(world, case, principal, county, failures)
    assert not failures, f"{len(failures)} of {sent} requests:\n" + "\n".join(failures)
    assert sent >= len(EXPECTATIONS) * len(world.principals)


def _dead_credentials(w: World) -> dict[str, dict[str, str]]:
    """Credentials that worked once, each ended a different way."""
    conn = w.conn
    make = w.make_principal
    logged_out = make("dead", "duty_officer", (OWN,), "token")
    changed = make("dead", "duty_officer", (OWN,), "token")
    disabled = make("dead", "duty_officer", (OWN,), "token")
    disabled_key = make("dead", "duty_officer", (OWN,), "key")
    cookie_out = make("dead", "duty_officer", (OWN,), "cookie")
    for p in (logged_out, changed, disabled, disabled_key, cookie_out):
        assert w.client.get("/api/auth/me", headers=p.headers).status_code == 200
    for p in (logged_out, cookie_out):
        assert w.client.post("/api/auth/logout", headers=p.headers).status_code == 204
    r = w.client.post("/api/auth/password", headers=changed.headers, json={
        "current_password": PASSWORD, "new_password": "another long secret"})
    assert r.status_code == 204, r.text
    assert geowarn_cli(["users", "disable", str(disabled.username)]) == 0
    assert geowarn_cli(["users", "disable", str(disabled_key.username)]) == 0
    expired_user = make("dead", "duty_officer", (OWN,), "token")
    expired, _, _ = users.login(conn, str(expired_user.username), PASSWORD, "matrix",
                                session_hours=1, now=datetime.now(UTC) - timedelta(hours=2))
    return {"expired": {"Authorization": f"Bearer {expired}"},
            "logged out": logged_out.headers, "password changed": changed.headers,
            "logged-out session cookie": cookie_out.headers,
            "user disabled": disabled.headers, "disabled user's API key": disabled_key.headers,
            "forged": {"Authorization": "Bearer " + "A" * 43}, "forged key": {
                "X-API-Key": "gwk_" + "A" * 43}}


def test_dead_credentials_fail_on_every_authenticated_route(world: World) -> None:
    dead = _dead_credentials(world)
    failures: list[str] = []
    officer = world.principals["duty_officer"]
    checked = 0
    for (method, _), cases in EXPECTATIONS.items():
        case = cases[0]
        if case.expect(world.principals["unauthenticated"], OWN) != 401:
            continue  # public routes
        for how, headers in dead.items():
            req = case.build(world, officer, OWN)
            assert req is not None
            r = send(world, req, headers)
            checked += 1
            if r.status_code != 401:
                failures.append(f"{method} {req.url} with a {how} credential: "
                                f"{r.status_code} {r.text[:200]}")
            elif "WWW-Authenticate" not in r.headers:
                failures.append(f"{method} {req.url} ({how}): 401 without WWW-Authenticate")
    assert not failures, "\n".join(failures)
    assert checked >= 30 * len(dead)


def test_walker_sees_a_route_added_later(world: World) -> None:
    """The matrix walks the app, not a list: a route added to it is found and named."""
    from fastapi import APIRouter

    extra = APIRouter()

    @extra.get("/api/devices/{device_id}/acceleration")
    def acceleration(device_id: str) -> dict[str, str]:
        return {"device": device_id}

    app = served_app()
    app.include_router(extra)
    assert ("GET", "/api/devices/{device_id}/acceleration") in route_keys(app) - set(EXPECTATIONS)


def _bad_values(annotation: object, metadata: list[object]) -> list[str]:
    """Values a query parameter of this type must refuse (empty: any text is valid)."""
    text = str(annotation)
    if "datetime" in text:
        return ["not-a-time", "2026-07-01T08:00"]  # malformed; no time zone
    if "Literal" in text:
        return ["no-such-choice"]
    if "bool" in text:
        return ["maybe"]
    if "int" in text or "float" in text:
        bounds = [m for m in metadata if type(m).__name__ in ("Ge", "Gt")]
        return ["abc", *(["-1"] if bounds else [])]
    if any("pattern" in repr(m) for m in metadata):
        return ["!"]
    return []


def test_every_bad_parameter_is_a_4xx_naming_it(world: World) -> None:
    """Walks the routes again: each query parameter given a value of the wrong kind, and each
    path parameter naming nothing, is a 4xx whose message names the parameter (or the value
    that named nothing); never a 500."""
    from fastapi.routing import APIRoute

    admin = world.principals["admin"]
    failures: list[str] = []
    checked = 0
    for path, route in _api_routes(world.app):
        if not isinstance(route, APIRoute):
            continue
        key = (sorted(route.methods or ())[0], path)
        if key not in EXPECTATIONS:
            continue
        req = EXPECTATIONS[key][0].build(world, admin, OWN)
        assert req is not None
        for q in route.dependant.query_params:
            for bad in _bad_values(q.field_info.annotation, list(q.field_info.metadata)):
                asked = Req(**{**req.__dict__, "params": {**(req.params or {}), q.alias: bad}})
                r = send(world, asked, admin.headers)
                checked += 1
                if r.status_code != 422 or q.alias not in r.json().get("detail", ""):
                    failures.append(f"{key} {q.alias}={bad!r}: {r.status_code} {r.text[:200]}")
        real = _path_values(path, req.url)
        for p in route.dependant.path_params:
            is_int = "int" in str(p.field_info.annotation)
            for bad, want in ((("999999999", 404), ("abc", 422)) if is_int
                              else (("NO-SUCH-0", 404),)):
                url = path.format(**{**real, p.alias: bad})
                r = send(world, Req(**{**req.__dict__, "url": url}), admin.headers)
                checked += 1
                detail = r.json().get("detail", "") if r.status_code < 500 else ""
                if r.status_code != want or not (bad in detail or p.alias in detail):
                    failures.append(f"{key} {p.alias}={bad}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert checked > 60, checked
    print(f"bad parameters checked: {checked}")


def _api_routes(app: Any) -> list[tuple[str, Any]]:
    """(path as served, the route) of every route of the app."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept as branches
        return [(r.path, r) for r in app.routes]
    return [(str(r.path), r.original_route) for r in iter_route_contexts(app.routes)]


def _path_values(template: str, url: str) -> dict[str, str]:
    import re
    names = re.findall(r"{(\w+)}", template)
    pattern = re.sub(r"{\w+}", "([^/]+)", re.escape(template).replace(r"\{", "{")
                     .replace(r"\}", "}"))
    m = re.fullmatch(pattern, url)
    assert m is not None, (template, url)
    return dict(zip(names, m.groups(), strict=True))


def _body_variants(route: Any, req: Req) -> list[tuple[str, Req]]:
    """(field, request) pairs that must be a 422 naming the field: each required field left
    out, each field of the wrong kind, and (where the schema forbids extras) an unknown one."""
    from pydantic import BaseModel

    out: list[tuple[str, Req]] = []
    for b in route.dependant.body_params:
        model = b.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel) and \
                isinstance(req.json, dict):
            for name, f in model.model_fields.items():
                alias = f.alias or name
                if f.is_required():
                    out.append((alias, Req(**{**req.__dict__, "json": {
                        k: v for k, v in req.json.items() if k != alias}})))
                out.append((alias, Req(**{**req.__dict__, "json": {**req.json,
                                                                  alias: [[1]]}})))
            if model.model_config.get("extra") == "forbid":
                out.append(("unexpected", Req(**{**req.__dict__, "json": {
                    **req.json, "unexpected": 1}})))
        elif req.data is not None and "str" not in str(b.field_info.annotation):
            alias = b.alias
            if b.field_info.is_required():
                out.append((alias, Req(**{**req.__dict__, "data": {
                    k: v for k, v in req.data.items() if k != alias}})))
            out.append((alias, Req(**{**req.__dict__, "data": {**req.data,
                                                               alias: "no-such"}})))
    return out


def test_every_bad_body_field_is_a_422_naming_it(world: World) -> None:
    from fastapi.routing import APIRoute

    admin = world.principals["admin"]
    failures: list[str] = []
    checked = 0
    for path, route in _api_routes(world.app):
        if not isinstance(route, APIRoute) or not route.dependant.body_params:
            continue
        key = (sorted(route.methods or ())[0], path)
        req = EXPECTATIONS[key][0].build(world, admin, OWN)
        assert req is not None
        for field, bad in _body_variants(route, req):
            r = send(world, bad, (bad.as_principal or admin).headers)
            checked += 1
            if r.status_code != 422 or field not in r.json().get("detail", ""):
                failures.append(f"{key} {field}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert checked > 25, checked
    print(f"bad body fields checked: {checked}")
