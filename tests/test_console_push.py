"""The console's warning-notification switch (Web Push) in headless Chromium, against the real
API and database.

The browser's push service (FCM for Chromium) is outside the machine and is never contacted:
`PushManager.subscribe` / `getSubscription` are replaced in the page by a fake subscription
(an endpoint under https://push.invalid/, never sent to), the one outside edge. Everything
else is real: the service worker the API serves registers, the switch shows the state, the
subscription reaches POST /api/push/subscriptions in the browser's toJSON() shape and is
stored for the logged-in user's person, a push message delivered to the worker by the
browser's DevTools protocol (as the push service would) shows a notification with the title
and body notify's push channel sends, clicking it opens the alert, and switching off removes
the subscription. Any console error (page or worker) or request leaving 127.0.0.1 fails."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api import users
from geowarn.settings import override_settings
from notify.channels.webpush import generate_vapid_keys
from tests.fixtures.api import PASSWORD
from tests.fixtures.browser import PHONE, login, shot

pytestmark = pytest.mark.timeout(240)
P256DH = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode().rstrip("=")
AUTH = "tBHItJI5svbpez7KI4CCXg"
# The push service's side of PushManager, faked in the page (persisted in localStorage, as a
# browser keeps its subscription): records each call in window.__pushCalls.
FAKE_PUSH = """
(() => {
  const KEY = "geowarn.test.push";
  const calls = JSON.parse(sessionStorage.getItem(KEY + ".calls") || "[]");
  const log = (c) => {
    calls.push(c);
    sessionStorage.setItem(KEY + ".calls", JSON.stringify(calls));
  };
  window.__pushCalls = calls;
  const b64 = (u8) => btoa(String.fromCharCode(...u8)).replace(/\\+/g, "-").replace(/\\//g, "_")
    .replace(/=+$/, "");
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")
    + "=".repeat((4 - s.length % 4) % 4)), (c) => c.charCodeAt(0));
  const fake = (s) => ({
    endpoint: s.endpoint, expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: bytes(s.key).buffer },
    toJSON: () => ({ endpoint: s.endpoint, expirationTime: null,
                     keys: { p256dh: "P256DH", auth: "AUTH" } }),
    unsubscribe: async () => { log(["unsubscribe", s.endpoint]); localStorage.removeItem(KEY);
                               return true; },
  });
  PushManager.prototype.subscribe = async function (opts) {
    const key = b64(new Uint8Array(opts.applicationServerKey));
    log(["subscribe", opts.userVisibleOnly, key]);
    const s = { endpoint: "https://push.invalid/geowarn-test/" + crypto.randomUUID(), key };
    localStorage.setItem(KEY, JSON.stringify(s));
    return fake(s);
  };
  PushManager.prototype.getSubscription = async function () {
    const s = JSON.parse(localStorage.getItem(KEY) || "null");
    return s && fake(s);
  };
})();
""".replace("P256DH", P256DH).replace("AUTH", AUTH)


@pytest.fixture
def people(seeded: dict[str, int], conn: psycopg.Connection) -> dict[str, int]:
    """The seeded counties (tests/fixtures/api.py) and a Xihu duty officer linked to a
    directory person (push goes to people); duty.xihu is not linked."""
    conn.execute("INSERT INTO people (person_id, name, phone, language, roles, county_code) "
                 "VALUES ('duty-push', '值班员丙', '+8613500000010', 'zh', "
                 "'{county_officer}', '330110')")
    users.add_user(conn, "duty.push", PASSWORD, "duty_officer", ["330110"],
                   person_id="duty-push")
    return seeded


@pytest.fixture
def vapid(db_url: str, tmp_path: Path) -> Iterator[str]:
    """The server's VAPID key (as `geowarn notify vapid-keys` writes it); its public key."""
    public = generate_vapid_keys(tmp_path / "vapid.pem")
    override_settings(database_url=db_url, notify_vapid_key_file=tmp_path / "vapid.pem")
    yield public
    override_settings(database_url=db_url)


def state(page: Any, want: str, lang: str = "zh") -> str:
    """The switch's text once it shows state `want` in language `lang`."""
    page.wait_for_selector(f"[data-testid='push'][data-state='{want}']")
    page.wait_for_function("zh => { const t = document.querySelector(\"[data-testid='push']\")"
                           ".textContent; return /[\u4e00-\u9fff]/.test(t) === zh; }",
                           arg=lang == "zh")
    return str(page.get_by_test_id("push").inner_text())


def _registration_id(cdp: Any, page: Any, scope: str) -> str:
    found: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda e: found.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    for _ in range(100):
        hit = [r for r in found if r["scopeURL"] == scope and not r["isDeleted"]]
        if hit:
            return str(hit[0]["registrationId"])
        page.wait_for_timeout(50)
    raise AssertionError(f"no service worker registration for {scope}: {found}")


def _notifications(page: Any, count: int) -> list[list[Any]]:
    """The worker's notifications on screen, once there are `count` of them."""
    shown: list[list[Any]] = []
    for _ in range(100):
        shown = page.evaluate("async () => (await (await navigator.serviceWorker.ready)"
                              ".getNotifications()).map(n => [n.title, n.body, n.tag, n.data,"
                              " n.requireInteraction])")
        if len(shown) == count:
            return shown
        page.wait_for_timeout(50)
    raise AssertionError(f"the service worker shows {shown}, not {count} notification(s)")


def test_switch_on_receive_a_warning_open_it_and_switch_off(
        people: dict[str, int], conn: psycopg.Connection, console_server: str, vapid: str,
        open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    alert = people["HP-XIHU"]
    page, _ = open_page(service_workers="allow", permissions=["notifications"],
                        init_script=FAKE_PUSH)
    login(page, console_server, "duty.push", PASSWORD)
    assert state(page, "off") == "预警通知：未开启"
    scope = f"{console_server}/console/"
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)") == scope
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)") \
        == f"{scope}sw.js"
    shot(page, artifacts_dir, "push-switch-off")

    with page.expect_request(lambda r: r.url.endswith("/api/push/subscriptions")
                             and r.method == "POST") as sent:
        page.get_by_test_id("push").click()
    assert state(page, "on") == "预警通知：已开启"
    calls = page.evaluate("window.__pushCalls")
    assert calls == [["subscribe", True, vapid]]  # the server's key, user-visible only
    endpoint = sent.value.post_data_json["endpoint"]
    assert sent.value.post_data_json == {"endpoint": endpoint, "expirationTime": None,
                                         "keys": {"p256dh": P256DH, "auth": AUTH}}
    assert endpoint.startswith("https://push.invalid/geowarn-test/")
    assert conn.execute("SELECT person_id, endpoint, p256dh, auth, active FROM "
                        "push_subscriptions").fetchall() == [
        ("duty-push", endpoint, P256DH, AUTH, True)]
    shot(page, artifacts_dir, "push-switch-on")

    # After a reload the state comes from the server (this browser's endpoint is listed).
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert state(page, "on") == "预警通知：已开启"
    page.get_by_test_id("lang").click()
    assert state(page, "on", "en") == "Warnings on this device: on"
    page.set_viewport_size(PHONE)
    shot(page, artifacts_dir, "push-switch-on-phone-en")
    page.get_by_test_id("lang").click()
    state(page, "on")

    # A warning arrives as notify's push channel sends it (notify/channels/webpush.py); the
    # browser's DevTools protocol hands it to the worker as the push service would.
    payload = {"title": "GeoWarn", "body": "【红色预警】HP-XIHU 滑坡 变形加速，请立即撤离",
               "tag": f"alert-{alert}-1", "alert": f"alert {alert}"}
    cdp = page.context.new_cdp_session(page)
    cdp.send("ServiceWorker.deliverPushMessage", {
        "origin": console_server, "registrationId": _registration_id(cdp, page, scope),
        "data": json.dumps(payload, ensure_ascii=False)})
    assert _notifications(page, 1) == [[payload["title"], payload["body"], payload["tag"],
                                        {"alert": alert}, True]]

    # Clicking it (the worker's notificationclick, with the notification it showed) tells
    # the open console to show the alert.
    page.get_by_test_id("detail-box").wait_for()
    assert page.get_by_test_id("detail-box").get_attribute("data-ready") is None
    (worker,) = page.context.service_workers
    worker.evaluate("async () => { const [n] = await self.registration.getNotifications();"
                    " self.dispatchEvent(new NotificationEvent('notificationclick',"
                    " { notification: n })); }")
    page.wait_for_selector(f"[data-testid='detail-box'][data-ready='{alert}']")
    assert _notifications(page, 0) == []  # closed by the click
    # With no console open the worker opens the alert's address, which shows it.
    url = page.evaluate("async ([id, scope]) => (await import('./push-note.js'))"
                        ".alertUrl(id, scope)", [alert, scope])
    assert url == f"{scope}#alert={alert}"
    fresh, _ = open_page(service_workers="allow", permissions=["notifications"],
                         init_script=FAKE_PUSH)
    fresh.goto(url)  # a new window has no session yet: the login first, then the alert
    fresh.fill("input[name=username]", "duty.push")
    fresh.fill("input[name=password]", PASSWORD)
    fresh.click("#login button[type=submit]")
    fresh.wait_for_selector(f"[data-testid='detail-box'][data-ready='{alert}']")
    assert fresh.evaluate("location.hash") == ""  # shown once, not again at every reload

    with page.expect_request(lambda r: r.url.endswith("/api/push/subscriptions/remove")) \
            as removed:
        page.get_by_test_id("push").click()
    assert state(page, "off") == "预警通知：未开启"
    assert removed.value.post_data_json == {"endpoint": endpoint}
    assert page.evaluate("window.__pushCalls")[-1] == ["unsubscribe", endpoint]
    assert conn.execute("SELECT active FROM push_subscriptions").fetchall() == [(False,)]


def test_switch_says_why_it_cannot_be_used(
        people: dict[str, int], conn: psycopg.Connection, console_server: str, db_url: str,
        tmp_path: Path, open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    # The server has no VAPID key: nothing to subscribe to.
    page, _ = open_page(service_workers="allow", permissions=["notifications"],
                        init_script=FAKE_PUSH)
    login(page, console_server, "duty.push", PASSWORD)
    assert state(page, "unavailable") == "预警通知：服务器未开启"
    assert page.get_by_test_id("push").get_attribute("aria-disabled") == "true"

    generate_vapid_keys(tmp_path / "vapid.pem")
    override_settings(database_url=db_url, notify_vapid_key_file=tmp_path / "vapid.pem")
    try:
        # A user who is no person of the directory has nobody to send to.
        other, _ = open_page(service_workers="allow", permissions=["notifications"],
                             init_script=FAKE_PUSH)
        login(other, console_server, "duty.xihu", PASSWORD)
        assert state(other, "unlinked") == "预警通知：账号未关联人员"
        # Service workers refused (as a locked-down browser does): not supported here.
        blocked, _ = open_page(init_script=FAKE_PUSH)
        login(blocked, console_server, "duty.push", PASSWORD)
        assert state(blocked, "unsupported") == "预警通知：本设备不支持"
        # The browser refuses the permission (headless Chromium refuses every prompt).
        refused, _ = open_page(service_workers="allow", init_script=FAKE_PUSH,
                               viewport=PHONE)
        login(refused, console_server, "duty.push", PASSWORD)
        state(refused, "off")
        refused.get_by_test_id("push").click()
        assert state(refused, "denied") == "预警通知：浏览器已阻止"
        assert refused.get_by_test_id("push").get_attribute("aria-disabled") == "true"
        assert "网站设置" in (refused.get_by_test_id("push").get_attribute("title") or "")
        # A tap says why (a phone shows no tooltip); Playwright holds aria-disabled as
        # unclickable, a finger does not.
        refused.get_by_test_id("push").click(force=True)
        assert "网站设置中允许通知" in refused.get_by_test_id("push-msg").inner_text()
        assert refused.evaluate("window.__pushCalls") == []
        shot(refused, artifacts_dir, "push-switch-denied-phone")
        # Blocked before (the site's notification permission is "denied"): shown at once.
        blocked_before, _ = open_page(service_workers="allow", permissions=[],
                                      init_script=FAKE_PUSH)
        login(blocked_before, console_server, "duty.push", PASSWORD)
        assert state(blocked_before, "denied") == "预警通知：浏览器已阻止"
    finally:
        override_settings(database_url=db_url)
    assert conn.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)
