"""What every route of the served API must answer to whom (the authorization matrix's table,
tests/test_api_authz.py). One entry per (method, path) the app routes, each with one or more
cases: how to build the request for a principal and a place (OWN, OTHER, FOREIGN county or
none), the status expected, and what to check in a successful answer (nothing of a county
outside the user's scope, no phone a role may not see).

A new route must be added here: the matrix fails, naming it, until it is."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.routing import Mount

from api.scope import allowed, covers, whole_province
from tests.authz_checks import (
    Check,
    alert_list,
    all_letters,
    cap_list,
    delivery_list,
    device_list,
    hazard_detail,
    hazard_list,
    letters_of_device,
    me,
    my_hazards,
    no_phones_unless_personal,
    stream_reader,
    warning_list,
)
from tests.authz_world import (
    AUTH,
    OWN,
    P256DH,
    PNG,
    Principal,
    World,
)


@dataclass
class Req:
    method: str
    url: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: str | bytes | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    read_stream: Callable[[httpx.Response], None] | None = None
    as_principal: Principal | None = None  # a fresh user like the principal (logout, ...)


Expect = Callable[[Principal, "str | None"], int]
Build = Callable[[World, Principal, "str | None"], "Req | None"]


@dataclass
class Case:
    method: str
    path: str
    build: Build
    expect: Expect
    check: Check | None = None
    per_county: bool = True
    bare_errors: bool = False  # refusals that are not the API's JSON (Twilio's callbacks)


# -- expectations ---------------------------------------------------------------------------
def public(code: int) -> Expect:
    return lambda p, c: code


def signed_in(code: int) -> Expect:
    return lambda p, c: 401 if p.role is None else code


def role(action: str, code: int) -> Expect:
    def expect(p: Principal, c: str | None) -> int:
        if p.role is None:
            return 401
        return code if allowed(p.role, action) else 403
    return expect


def scoped(action: str, code: int) -> Expect:
    """401 with no credentials; 403 for a role without `action` or an object outside the
    user's counties; `code` otherwise."""
    def expect(p: Principal, c: str | None) -> int:
        if p.role is None:
            return 401
        return code if allowed(p.role, action) and covers(p.counties, c) else 403
    return expect


# -- request builders -----------------------------------------------------------------------
def fixed(method: str, url: str, **kw: Any) -> Build:
    return lambda w, p, c: Req(method, url, **kw)


def on_alert(method: str, tail: str = "", fresh: bool = False, **kw: Any) -> Build:
    def build(w: World, p: Principal, c: str | None) -> Req:
        alert = w.fresh_alert(c) if fresh else w.alerts[c]
        return Req(method, f"/api/alerts/{alert}{tail}", **kw)
    return build


def on_hazard(method: str, tail: str = "", **kw: Any) -> Build:
    def build(w: World, p: Principal, c: str | None) -> Req | None:
        hid = w.hazard(c)
        return None if hid is None else Req(method, f"/api/hazards/{hid}{tail}", **kw)
    return build


def on_device(method: str, tail: str = "", **kw: Any) -> Build:
    return lambda w, p, c: Req(method, f"/api/devices/{w.device(c)}{tail}", **kw)


def like(method: str, url: str, **kw: Any) -> Build:
    """For routes that end the caller's sessions: a fresh user like the principal."""
    def build(w: World, p: Principal, c: str | None) -> Req:
        return Req(method, url, as_principal=w.fresh_like(p), **kw)
    return build


def unassigned_hazard(w: World, p: Principal, c: str | None) -> Req | None:
    """A new hazard point of `c` that no monitor is assigned to."""
    if c is None:
        return None
    hid = f"HP-U{w.n()}-{c}"
    w.add_hazard(hid, c)
    return Req("POST", f"/api/hazards/{hid}/reports", **REPORT)


def not_assigned(p: Principal, c: str | None) -> int:
    want = scoped("report_field", 201)(p, c)
    return 403 if want == 201 and p.role == "monitor" else want


def alerts_list(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/alerts", params={"limit": 1000, **({"county": c} if c else {})})


def hazards_list(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/hazards", params={"county": c} if c else None)


def devices_list(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/devices", params={"hazard": w.hazard(c)} if c else None)


def letters(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/deadletters", params={"device": w.device(c)})


def report_photo(w: World, p: Principal, c: str | None) -> Req | None:
    return None if c is None else Req("GET", f"/api/reports/{w.reports[c]}/photo")


def cap_doc(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", f"/api/cap/{w.caps[c]}")


def drill_doc(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", f"/api/cap/{w.drill_caps[c]}")


def drill_feed(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/cap/feed", params={"status": "Exercise"})


def notifications(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/notifications", params={"alert_id": w.alerts[c]})


def cap_feed(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/cap/feed", params={"alert_id": w.alerts[c]} if c else None)


def maintenance_window(w: World, p: Principal, c: str | None) -> Req:
    return Req("DELETE", f"/api/devices/{w.device(c)}/maintenance/{w.fresh_window(c)}")


def foreign_window(w: World, p: Principal, c: str | None) -> Req:
    """A window of county `c`'s device, addressed through the own county's device."""
    return Req("DELETE", f"/api/devices/{w.device(OWN)}/maintenance/{w.fresh_window(c)}")


def own_device_window(p: Principal, c: str | None) -> int:
    want = role("command_devices", 200)(p, c)
    return want if want != 200 or c == OWN else 404


def geojson_import(w: World, p: Principal, c: str | None) -> Req | None:
    if c is None:
        return None
    wid = f"IMP-{w.n()}-{c}"
    w.warning_county[wid] = c
    body = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None,
            "properties": {"id": wid, "issuer": "市自然资源局", "level": "orange",
                           "valid_from": "2026-06-21T08:00:00+08:00",
                           "valid_to": "2026-06-22T08:00:00+08:00", "county_codes": [c]}}]}
    return Req("POST", "/api/regional-warnings", content=json.dumps(body),
               headers={"Content-Type": "application/geo+json"})


def cap_import(w: World, p: Principal, c: str | None) -> Req | None:
    if c is None:
        return None
    from tests.test_gis_regional import cap_doc as doc
    from tests.test_gis_regional import cap_info
    area = f"<geocode><valueName>ADCODE</valueName><value>{c}</value></geocode>"
    return Req("POST", "/api/regional-warnings/cap", headers={"Content-Type":
               "application/cap+xml"}, content=doc(identifier=f"CAP-{w.n()}-{c}",
                                                   info=cap_info(area=area)))


def push_remove(w: World, p: Principal, c: str | None) -> Req:
    return Req("POST", "/api/push/subscriptions/remove",
               json={"endpoint": w.fresh_subscription(p)})


def push_add(w: World, p: Principal, c: str | None) -> Req:
    return Req("POST", "/api/push/subscriptions", json={
        "endpoint": f"https://push.example.net/send/{w.n()}", "expirationTime": None,
        "keys": {"p256dh": P256DH, "auth": AUTH}})


def stream(w: World, p: Principal, c: str | None) -> Req:
    return Req("GET", "/api/alerts/stream", params={"after": 0}, stream=True,
               read_stream=stream_reader(w, p))


def login(w: World, p: Principal, c: str | None) -> Req:
    return Req("POST", "/api/auth/login", json={
        "username": w.principals["viewer"].username, "password": "correct horse battery"})


def letters_all(p: Principal, c: str | None) -> int:
    return 401 if p.role is None else 200 if whole_province(p.counties) else 422


NOW = datetime.now(UTC)
MAINTENANCE = {"from": (NOW + timedelta(days=2)).isoformat(),
               "to": (NOW + timedelta(days=2, hours=1)).isoformat(), "reason": "re-mount"}
REPORT: dict[str, Any] = {
    "data": {"kind": "new_cracks", "severity": "moderate", "note": "裂缝加宽"},
    "files": {"photo": ("crack.png", PNG, "image/png")}}

def once(*args: Any, **kw: Any) -> Case:
    """A case whose route takes no object: asked once per principal."""
    case = Case(*args, **kw)
    case.per_county = False
    return case


CASES: list[Case] = [
    once("GET", "/openapi.json", fixed("GET", "/openapi.json"), public(200)),
    once("GET", "/docs", fixed("GET", "/docs"), public(200)),
    once("GET", "/docs/oauth2-redirect", fixed("GET", "/docs/oauth2-redirect"), public(200)),
    once("GET", "/redoc", fixed("GET", "/redoc"), public(200)),
    once("GET", "/healthz", fixed("GET", "/healthz"), public(200)),
    once("GET", "/", fixed("GET", "/"), public(307)),
    once("GET", "/console/{path}", fixed("GET", "/console/"), public(200)),
    # Twilio's callbacks answer only requests signed with the account's auth token.
    once("POST", "/twilio/status", fixed("POST", "/twilio/status", data={"MessageSid": "x"}),
         public(403), bare_errors=True),
    once("POST", "/twilio/inbound", fixed("POST", "/twilio/inbound", data={"From": "+86"}),
         public(403), bare_errors=True),
    once("GET", "/metrics", fixed("GET", "/metrics"), role("manage_users", 200)),
    once("POST", "/api/auth/login", login, public(200)),
    once("POST", "/api/auth/logout", like("POST", "/api/auth/logout"), signed_in(204)),
    once("GET", "/api/auth/me", fixed("GET", "/api/auth/me"), signed_in(200), me),
    once("POST", "/api/auth/password", like("POST", "/api/auth/password", json={
        "current_password": "correct horse battery", "new_password": "a new long secret"}),
        signed_in(204)),
    once("GET", "/api/alerts/stream", stream, signed_in(200)),
    Case("GET", "/api/alerts", alerts_list, signed_in(200), alert_list),
    Case("GET", "/api/alerts/{alert_id}", on_alert("GET"), scoped("read", 200),
         no_phones_unless_personal),
    Case("POST", "/api/alerts/{alert_id}/ack", on_alert("POST", "/ack", True,
         json={"note": "seen"}), scoped("act_on_alerts", 200)),
    Case("POST", "/api/alerts/{alert_id}/resolve", on_alert("POST", "/resolve", True, json={
        "reason": "inspected"}), scoped("act_on_alerts", 200)),
    Case("POST", "/api/alerts/{alert_id}/comments", on_alert("POST", "/comments", json={
        "text": "patrol sent"}), scoped("act_on_alerts", 201), no_phones_unless_personal),
    Case("POST", "/api/alerts/{alert_id}/receipt", on_alert("POST", "/receipt"),
         scoped("confirm_receipt", 200), no_phones_unless_personal),
    Case("GET", "/api/hazards", hazards_list, signed_in(200), hazard_list),
    Case("GET", "/api/hazards/{hazard_id}", on_hazard("GET"), scoped("read", 200),
         hazard_detail),
    Case("POST", "/api/hazards/{hazard_id}/reports", on_hazard("POST", "/reports", **REPORT),
         scoped("report_field", 201)),
    Case("POST", "/api/hazards/{hazard_id}/reports", unassigned_hazard, not_assigned),
    Case("GET", "/api/hazards/{hazard_id}/reports", on_hazard("GET", "/reports"),
         scoped("read", 200)),
    Case("GET", "/api/reports/{report_id}/photo", report_photo, scoped("read", 200)),
    Case("GET", "/api/devices", devices_list, signed_in(200), device_list),
    Case("GET", "/api/devices/{device_id}", on_device("GET"), scoped("read", 200)),
    Case("POST", "/api/devices/{device_id}/commands", on_device("POST", "/commands", json={
        "name": "sync_time"}), scoped("command_devices", 201)),
    Case("GET", "/api/devices/{device_id}/readings", on_device("GET", "/readings", params={
        "from": (NOW - timedelta(days=1)).isoformat(), "bucket": "1h"}), scoped("read", 200)),
    Case("GET", "/api/devices/{device_id}/velocity", on_device("GET", "/velocity", params={
        "channel": "opening", "from": (NOW - timedelta(days=1)).isoformat()}),
        scoped("read", 200)),
    Case("GET", "/api/devices/{device_id}/maintenance", on_device("GET", "/maintenance"),
         scoped("read", 200)),
    Case("POST", "/api/devices/{device_id}/maintenance", on_device(
        "POST", "/maintenance", json=MAINTENANCE), scoped("command_devices", 201)),
    Case("DELETE", "/api/devices/{device_id}/maintenance/{window_id}", maintenance_window,
         scoped("command_devices", 200)),
    Case("DELETE", "/api/devices/{device_id}/maintenance/{window_id}", foreign_window,
         own_device_window),
    Case("GET", "/api/deadletters", letters, scoped("read", 200), letters_of_device),
    Case("GET", "/api/deadletters", fixed("GET", "/api/deadletters"), letters_all, all_letters,
         per_county=False),
    Case("GET", "/api/notifications", notifications, scoped("read", 200), delivery_list),
    once("GET", "/api/notifications", fixed("GET", "/api/notifications"), signed_in(200),
         delivery_list),
    Case("GET", "/api/cap/feed", cap_feed, signed_in(200), cap_list),
    Case("GET", "/api/cap/{identifier}", cap_doc, scoped("read", 200)),
    # A drill's messages are for the officers and monitors taking part, not for the viewers
    # whose keys republishing platforms hold.
    Case("GET", "/api/cap/{identifier}", drill_doc, scoped("confirm_receipt", 200)),
    once("GET", "/api/cap/feed", drill_feed, role("confirm_receipt", 200), cap_list),
    once("GET", "/api/push/vapid-public-key", fixed("GET", "/api/push/vapid-public-key"),
         signed_in(200)),
    once("GET", "/api/push/status", fixed("GET", "/api/push/status"), signed_in(200)),
    once("POST", "/api/push/subscriptions", push_add, signed_in(201)),
    once("POST", "/api/push/subscriptions/remove", push_remove, signed_in(204)),
    Case("POST", "/api/regional-warnings", geojson_import, scoped("import_warnings", 200)),
    Case("POST", "/api/regional-warnings/cap", cap_import, scoped("import_warnings", 200)),
    once("GET", "/api/regional-warnings", fixed("GET", "/api/regional-warnings"),
         signed_in(200), warning_list),
    once("GET", "/api/status", fixed("GET", "/api/status"), signed_in(200),
         no_phones_unless_personal),
    once("GET", "/api/me/hazards", fixed("GET", "/api/me/hazards"), signed_in(200),
         my_hazards),
]

EXPECTATIONS: dict[tuple[str, str], list[Case]] = {}
for _case in CASES:
    EXPECTATIONS.setdefault((_case.method, _case.path), []).append(_case)


def route_keys(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers and mounts too."""
    try:  # FastAPI >= 0.16x keeps included routers as branches
        from fastapi.routing import iter_route_contexts
        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = list(app.routes)
    keys = set()
    for r in routes:
        if isinstance(getattr(r, "original_route", r), Mount):
            keys.add(("GET", r.path + "/{path}"))
            continue
        methods = set(r.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette answers HEAD for every GET
        keys |= {(m, r.path) for m in methods}
    return keys
