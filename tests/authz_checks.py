"""What the authorization matrix checks in a successful answer (tests/test_api_authz.py):
nothing of a county outside the user's scope, every own object present, no phone a role
without read_personal may see, and the event stream read to its last visible event."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from api.scope import allowed, covers, prefix
from tests.authz_world import (
    COUNTIES,
    MONITOR_PHONE,
    OWN,
    RESIDENT_PHONE,
    SHELTER_PHONE,
    Principal,
    World,
    tag,
)

PHONES = (RESIDENT_PHONE, MONITOR_PHONE, SHELTER_PHONE)
Check = Callable[[World, Principal, "str | None", httpx.Response], None]


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


def letters_of_device(w: World, p: Principal, c: str | None, r: httpx.Response) -> None:
    asked = r.request.url.params["device"]
    got = {d["device_id"] for d in r.json()}
    assert got == {asked}, f"dead letters of {sorted(got)} for device={asked}"


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
    drills = r.request.url.params.get("status") == "Exercise"
    listed, other = (w.drill_caps, w.caps) if drills else (w.caps, w.drill_caps)
    shown = {county for county, ident in listed.items() if f"/api/cap/{ident}\"" in r.text}
    assert all(sees(p, county) for county in shown), f"CAP of {shown} shown"
    want = {county for county in listed if sees(p, county) and
            (r.request.url.params.get("alert_id") is None or c == county)}
    assert shown == want, (shown, want)
    mixed = [i for i in other.values() if f"/api/cap/{i}\"" in r.text]
    assert not mixed, f"{'live' if drills else 'drill'} messages in the feed: {mixed}"


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


