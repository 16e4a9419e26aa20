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

from api.scope import allowed, covers, prefix, whole_province
from tests.authz_world import (
    AUTH,
    COUNTIES,
    MONITOR_PHONE,
    OWN,
    P256DH,
    PNG,
    RESIDENT_PHONE,
    SHELTER_PHONE,
    Principal,
    World,
    tag,
)

PHONES = (RESIDENT_PHONE, MONITOR_PHONE, SHELTER_PHONE)


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
Check = Callable[[World, Principal, "str | None", httpx.Response], None]
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


# -- checks ---------------------------------------------------------------------------------
def sees(p: Principal, county: str | None) -> bool:
    return covers(p.counties, county)


def no_phones_unless_personal(w: World, p: Principal, c: str | None,
                              r: httpx.Response) -> None:
    if p.role is not None and allowed(p.role, "read_personal"):
        return
    shown = [n for n in PHONES if n in r.text]
    assert not shown, f"full phone numbers shown to a {p.role}: {shown}"


def alert_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    items = r.json()
    outside = [a["id"] for a in items if not sees(p, a["target"]["county_code"])]
    assert not outside, f"alerts outside the scope listed: {outside}"
    if c is not None:
        assert all(a["target"]["county_code"] == c for a in items), "county filter ignored"
    ids = {a["id"] for a in items}
    for county, alert in w.alerts.items():
        if sees(p, county) and (c is None or c == county):
            assert alert in ids, f"own alert {alert} ({tag(county)}) missing"


def hazard_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    feats = r.json()["features"]
    outside = [f["id"] for f in feats if not sees(p, f["properties"]["county_code"])]
    assert not outside, f"hazard points outside the scope: {outside}"
    ids = {f["id"] for f in feats}
    for county in COUNTIES:
        hid = w.hazard(county)
        if hid and sees(p, county) and (c is None or c == county):
            assert hid in ids, f"own hazard point {hid} missing"
    assert not [n for n in PHONES if n in r.text], "phones in the map"


def hazard_detail(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    no_phones_unless_personal(w, p, c, r)
    if p.role is not None and allowed(p.role, "read_personal"):
        assert RESIDENT_PHONE in r.text, "the officer cannot see the resident's phone"


def device_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    items = r.json()
    outside = [d["id"] for d in items
               if not sees(p, w.hazard_county.get(d["hazard_id"]) if d["hazard_id"] else None)]
    assert not outside, f"devices outside the scope: {outside}"
    ids = {d["id"] for d in items}
    for county in COUNTIES:
        if sees(p, county) and (c is None or c == county):
            assert w.device(county) in ids, f"own device {w.device(county)} missing"


def letters_of(device: str) -> Check:
    def check(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
        assert {d["device_id"] for d in r.json()} == {device}
    return check


def all_letters(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    county_of = {w.device(county): county for county in COUNTIES}
    outside = [d["device_id"] for d in r.json() if not sees(p, county_of.get(d["device_id"]))]
    assert not outside, f"dead letters of devices outside the scope: {outside}"


def delivery_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    items = r.json()
    outside = [d["id"] for d in items if not sees(p, w.alert_county[d["alert_id"]])]
    assert not outside, f"deliveries outside the scope: {outside}"
    asked = r.request.url.params.get("alert_id")
    want = {int(asked)} if asked else {a for county, a in w.alerts.items() if sees(p, county)}
    got = {d["alert_id"] for d in items}
    assert got == want, f"deliveries of alerts {sorted(got)}, expected {sorted(want)}"
    if p.role is not None and not allowed(p.role, "read_personal"):
        assert all(d["masked_phone"] is None and d["body"] is None for d in items), \
            "numbers or message text shown to a role that does not call people"
        assert all(d["recipient_name"] in (None, "张**") for d in items), "names unmasked"
    no_phones_unless_personal(w, p, c, r)


def cap_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    shown = {county for county, ident in w.caps.items() if f"/api/cap/{ident}\"" in r.text}
    assert all(sees(p, county) for county in shown), f"CAP of {shown} shown"
    want = {county for county in w.caps if sees(p, county) and (c is None or c == county)}
    assert shown == want, (shown, want)


def warning_list(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    for item in r.json():
        # A warning concerns a user when a code it names lies in (or contains) their scope.
        concerns = any(covers(p.counties, code) or
                       any(s.startswith(prefix(code)) for s in p.counties)
                       for code in item["county_codes"]) or item["covered_hazards"]
        assert concerns, f"warning {item['id']} of {item['county_codes']} listed"
    ids = {item["id"] for item in r.json()}
    for county in COUNTIES:
        if county is not None and sees(p, county):
            assert f"RW-{tag(county)}" in ids, f"own regional warning RW-{tag(county)} missing"


def my_hazards(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    items = r.json()
    assert all(sees(p, h["county_code"]) for h in items), items
    want = [w.hazard(OWN)] if p.role == "monitor" else []
    assert [h["id"] for h in items] == want


def me(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    assert r.json()["username"] == p.username and r.json()["role"] == p.role


def stream_reader(w: World, p: Principal) -> Callable[[httpx.Response], None]:
    """Reads the stream from the start until the last event the user may see; every event
    read must be of an alert in the user's counties, and none may be missing."""
    rows = w.conn.execute(
        "SELECT l.id, h.county_code, a.target_type FROM audit_log l JOIN alerts a ON "
        "l.object_type = 'alert' AND a.alert_id::text = l.object_id LEFT JOIN hazard_points h "
        "ON a.target_type = 'hazard' AND h.hazard_id = a.target_id ORDER BY l.id").fetchall()
    expected = [int(i) for i, county, _ in rows if sees(p, county)]

    def read(r: httpx.Response) -> None:
        assert r.headers["content-type"].startswith("text/event-stream")
        got: list[int] = []
        if not expected:
            return
        for line in r.iter_lines():
            if line.startswith("data: "):
                county = json.loads(line[6:])["target"]["county_code"]
                assert sees(p, county), f"an event of {tag(county)} streamed"
            if line.startswith("id: "):
                got.append(int(line[4:]))
                if got[-1] >= expected[-1]:
                    break
        assert got == expected, (got[:10], expected[:10])
    return read


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
    Case("GET", "/api/deadletters", letters, scoped("read", 200)),
    Case("GET", "/api/deadletters", fixed("GET", "/api/deadletters"), letters_all, all_letters,
         per_county=False),
    Case("GET", "/api/notifications", notifications, scoped("read", 200), delivery_list),
    once("GET", "/api/notifications", fixed("GET", "/api/notifications"), signed_in(200),
         delivery_list),
    Case("GET", "/api/cap/feed", cap_feed, signed_in(200), cap_list),
    Case("GET", "/api/cap/{identifier}", cap_doc, scoped("read", 200)),
    once("GET", "/api/push/vapid-public-key", fixed("GET", "/api/push/vapid-public-key"),
         signed_in(200)),
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
