"""The console in headless Chromium against the real API, database and warning engine: a duty
officer logs in, sees the red hazard point on the map, opens its alert, sees the displacement
chart with the forecast failure time and its band, and acknowledges it (the alert and the
audit trail show it); a new orange alert arrives live through the event stream and sounds; a
monitor on a 360-px phone confirms receiving the warning and sends a field report with a
photo. Any console error or request leaving 127.0.0.1 fails the test (tests/fixtures/browser.py)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from tests.console_world import PASSWORD, SLOPE, World, build
from tests.fixtures.browser import PHONE, expect_hazard_level, login, open_alert, shot

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def world(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(conn, db_url, messages=tmp_path / "messages.jsonl")
    yield w
    w.close()


def png(width: int = 4, height: int = 3) -> bytes:
    """A real (tiny) PNG, as a phone camera would send a JPEG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_duty_officer_sees_red_point_opens_forecast_and_acknowledges(
        world: World, conn: psycopg.Connection, console_server: str,
        open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    page, _ = open_page()
    login(page, console_server, "duty.lishui", PASSWORD)
    expect_hazard_level(page, SLOPE, "red")
    queue = page.get_by_test_id("queue")
    first = queue.locator("li").first
    assert first.get_attribute("data-testid") == f"alert-{world.red_alert}"  # red on top
    assert first.get_attribute("data-level") == "red"
    shot(page, artifacts_dir, "duty-map-and-queue")

    # The map opens the point's alert, as the queue does.
    with page.expect_response(lambda r: "/api/devices/CRACK-R/velocity?" in r.url) as got:
        page.get_by_test_id(f"hazard-{SLOPE}").click()
    assert got.value.status == 200
    served = [s["scale"] for s in got.value.json()["scales"]
              if any(p["mm_per_day"] is not None for p in s["points"])]
    page.wait_for_selector(f"[data-testid='detail-box'][data-ready='{world.red_alert}']")
    detail = page.get_by_test_id("alert-detail")
    assert detail.get_by_test_id("level").first.inner_text() == "红色"
    chart = page.get_by_test_id("chart-displacement")
    assert chart.locator("path.series").get_attribute("d").count("L") > 50  # readings drawn
    assert chart.get_by_test_id("chart-displacement-forecast").count() == 1
    assert chart.get_by_test_id("chart-displacement-band").count() == 1
    label = chart.locator(".vline-label").text_content() or ""
    forecast = datetime.fromisoformat(world.forecast["time"].replace("Z", "+00:00"))
    local = page.evaluate("iso => { const d = new Date(iso); return [d.getHours(), "
                          "d.getMinutes()]; }", forecast.isoformat())
    assert f"{local[0]:02d}:{local[1]:02d}" in label, label
    # The engine's velocities per scale (not a curve of the browser's), each with its band.
    velocity = page.get_by_test_id("chart-velocity")
    drawn = velocity.locator("path.series").evaluate_all("els => els.map(e => e.dataset.scale)")
    assert drawn == served and "24h" in drawn, (drawn, served)
    assert velocity.get_by_test_id("chart-velocity-err").count() >= len(served)
    assert "95%" in page.get_by_test_id("velocity-note").inner_text()
    page.get_by_test_id("evidence-displacement").screenshot(
        path=str(artifacts_dir / "duty-displacement-velocity.png"))
    assert "预报破坏时间" in page.get_by_test_id("evidence-summary").first.inner_text()
    # Households at risk, with phones (a duty officer calls them).
    assert "13600000001" in detail.inner_text()
    # The warnings the notifier sent for this alert, with their recipients.
    sent = page.get_by_test_id("notifications")
    assert sent.locator("tr[data-purpose='warning']").count() >= 1
    assert "县值班员" in sent.inner_text()
    shot(page, artifacts_dir, "duty-alert-detail-forecast")

    page.fill("input[name=note]", "已电话通知监测员，巡查中")
    page.get_by_test_id("ack").click()
    page.wait_for_selector(f"[data-testid='detail-box'][data-ready='{world.red_alert}'] "
                           "[data-testid='acked-by']")
    assert page.get_by_test_id("status").inner_text() == "已确认"
    assert "duty.lishui" in page.get_by_test_id("acked-by").inner_text()
    audit = page.get_by_test_id("audit").inner_text()
    assert "duty.lishui · 确认 · 已电话通知监测员，巡查中" in audit
    row = conn.execute("SELECT status, acknowledged_by, ack_note FROM alerts WHERE alert_id = %s",
                       (world.red_alert,)).fetchone()
    assert row == ("acknowledged", "duty.lishui", "已电话通知监测员，巡查中")
    assert conn.execute("SELECT count(*) FROM audit_log WHERE object_type = 'alert' AND "
                        "object_id = %s AND action = 'acknowledged' AND actor = 'duty.lishui'",
                        (str(world.red_alert),)).fetchone() == (1,)
    shot(page, artifacts_dir, "duty-alert-acknowledged")

    # The notifier's next step sees the acknowledgement and stops the escalation; hours
    # later nobody above has been sent it.
    assert conn.execute("SELECT stopped_at FROM escalations WHERE alert_id = %s",
                        (world.red_alert,)).fetchone() == (None,)
    world.notify()
    assert conn.execute("SELECT stopped_by FROM escalations WHERE alert_id = %s",
                        (world.red_alert,)).fetchone() == ("duty.lishui",)
    world.clock.now += timedelta(hours=3)
    world.notify()
    escalated: dict[int, int] = dict(conn.execute(
        "SELECT alert_id, count(*) FROM deliveries WHERE purpose = 'escalation' "
        "GROUP BY alert_id").fetchall())
    assert world.red_alert not in escalated
    assert escalated.get(world.rain_alert, 0) >= 1  # unacknowledged: it climbed


def test_new_orange_alert_arrives_live_and_sounds(
        world: World, conn: psycopg.Connection, console_server: str,
        open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    page, _ = open_page()
    login(page, console_server, "duty.lishui", PASSWORD)
    page.wait_for_selector("[data-testid='live'].on")
    assert page.evaluate("document.body.dataset.beeps") is None
    apply_changes(conn, [LevelChange("hazard", "SYN-CL-002", "deformation", Level.ORANGE,
                                     datetime.now(UTC))], engine="test")
    row = conn.execute("SELECT alert_id FROM alerts WHERE target_id = 'SYN-CL-002'").fetchone()
    assert row is not None
    new_id = row[0]
    page.wait_for_selector(f"[data-testid='alert-{new_id}'][data-level='orange']")
    page.wait_for_selector("body[data-beeps='1'][data-last-beep='orange']")
    assert "SYN-CL-002" in page.get_by_test_id("banner").inner_text() or \
        "示例崩塌B" in page.get_by_test_id("banner").inner_text()
    expect_hazard_level(page, "SYN-CL-002", "orange")
    shot(page, artifacts_dir, "duty-live-orange")

    # The rain alert's evidence: accumulations as bars against the table's thresholds.
    open_alert(page, world.rain_alert)
    bars = page.get_by_test_id("chart-rain-accum")
    assert bars.locator("rect.bar").count() == 6  # 1 h ... 72 h
    assert bars.locator("line.threshold.level-orange").count() >= 4
    assert bars.locator("rect.bar.level-orange").count() >= 1  # 3 h and 6 h reach orange
    assert page.get_by_test_id("chart-rain").locator("path.series").count() == 1
    shot(page, artifacts_dir, "duty-rain-alert")


def test_monitor_on_a_phone_confirms_and_sends_a_field_report(
        world: World, conn: psycopg.Connection, console_server: str,
        open_page: Callable[..., Any], artifacts_dir: Path, tmp_path: Path) -> None:
    page, _ = open_page(viewport=PHONE, is_mobile=True)
    login(page, console_server, "monitor.jinyun", PASSWORD)
    point = page.get_by_test_id(f"point-{SLOPE}")
    assert point.get_attribute("data-level") == "red"
    # Nothing wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_test_id(f"confirm-{world.red_alert}").click()
    page.get_by_test_id(f"received-{world.red_alert}").wait_for()
    assert conn.execute("SELECT count(*) FROM audit_log WHERE object_id = %s AND action = "
                        "'received' AND actor = 'monitor.jinyun'",
                        (str(world.red_alert),)).fetchone() == (1,)

    form = page.get_by_test_id(f"report-{SLOPE}")
    form.locator("select[name=kind]").select_option("cracks_widening")
    form.locator("input[name=severity][value=severe]").check()
    form.locator("textarea[name=note]").fill("后缘裂缝比昨天宽约2厘米")
    photo = tmp_path / "crack.png"
    photo.write_bytes(png())
    form.locator("input[name=photo]").set_input_files(str(photo))
    shot(page, artifacts_dir, "monitor-phone-report-filled")
    form.locator("button[type=submit]").click()
    result = form.get_by_test_id("report-result")
    page.wait_for_function("el => el.dataset.reportId", arg=result.element_handle())
    report_id = int(result.get_attribute("data-report-id") or 0)
    row = conn.execute("SELECT hazard_id, reporter, kind, severity, note, photo_type, photo_size "
                       "FROM field_reports WHERE report_id = %s", (report_id,)).fetchone()
    assert row == (SLOPE, "monitor.jinyun", "cracks_widening", "severe", "后缘裂缝比昨天宽约2厘米",
                   "image/png", len(png()))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, artifacts_dir, "monitor-phone-report-sent")


def test_device_health_list(world: World, console_server: str,
                            open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    page, _ = open_page()
    login(page, console_server, "duty.lishui", PASSWORD)
    page.get_by_test_id("tab-devices").click()
    silent = page.get_by_test_id("health-GNSS-S")
    silent.wait_for()
    assert silent.get_attribute("data-state") == "silent"
    states = [r.get_attribute("data-state")
              for r in page.locator("[data-testid^='health-']").all()]
    rank = ["silent", "offline", "late", "unknown", "ok"]
    assert states == sorted(states, key=rank.index), states  # worst first
    rain = page.get_by_test_id("health-RAIN-R")
    assert "12%" in rain.inner_text() and rain.locator("td.warn").count() == 1
    crack = page.get_by_test_id("health-CRACK-R")
    page.wait_for_function("el => el.lastElementChild.textContent === '2'",
                           arg=crack.element_handle())  # two dead letters this week
    assert "静默" in silent.inner_text()
    assert page.get_by_test_id("queue").is_hidden()  # the tab replaces the duty view
    shot(page, artifacts_dir, "duty-device-health")
    page.get_by_test_id("tab-duty").click()
    assert page.get_by_test_id("queue").is_visible() and silent.is_hidden()


def test_admin_in_english_sees_water_level_against_stages_and_resolves(
        world: World, conn: psycopg.Connection, console_server: str,
        open_page: Callable[..., Any], artifacts_dir: Path) -> None:
    page, _ = open_page()
    login(page, console_server, "admin.zj", PASSWORD)
    page.get_by_test_id("lang").click()
    page.wait_for_selector("body[data-ready='1'] .queue-card h2:text('Alert queue')")
    river = conn.execute("SELECT alert_id FROM alerts WHERE target_id = 'RIVER-R'").fetchone()
    assert river is not None
    open_alert(page, river[0])
    chart = page.get_by_test_id("chart-water-level")
    assert chart.locator("line.hline").count() == 3  # warning, guaranteed, historical max
    labels = " ".join(chart.locator(".hline-label").all_text_contents())
    assert "warning 15 m" in labels and "guaranteed 16.5 m" in labels
    assert chart.locator("path.series").get_attribute("d").count("L") > 100
    shot(page, artifacts_dir, "admin-english-water-level")

    # Resolving needs a reason; with one, the alert leaves the queue.
    detail = page.get_by_test_id("alert-detail")
    page.get_by_test_id("resolve").click()
    assert detail.locator(".actions .error").inner_text() == "give a reason"
    page.fill("input[name=reason]", "river back below warning stage; gauge checked on site")
    page.get_by_test_id("resolve").click()
    page.wait_for_selector(f"[data-testid='detail-box'][data-ready='{river[0]}'] "
                           ".status-resolved")
    assert page.get_by_test_id(f"alert-{river[0]}").count() == 0
    assert conn.execute("SELECT status, resolved_by, resolve_reason FROM alerts WHERE "
                        "alert_id = %s", river).fetchone() == (
        "resolved", "admin.zj", "river back below warning stage; gauge checked on site")
    assert "admin.zj · resolved" in page.get_by_test_id("audit").inner_text()


def test_viewer_sees_masked_residents_and_cannot_act(
        world: World, console_server: str, open_page: Callable[..., Any],
        artifacts_dir: Path) -> None:
    page, _ = open_page()
    login(page, console_server, "viewer.lishui", PASSWORD)
    expect_hazard_level(page, SLOPE, "red")
    open_alert(page, world.red_alert)
    detail = page.get_by_test_id("alert-detail")
    text = detail.inner_text()
    assert "13600000001" not in text and "Example Head 1" not in text  # masked by the API
    assert "E************* · 4 人 · 136****0001" in text  # the API's masks, shown as sent
    assert detail.get_by_test_id("ack").count() == 0
    assert detail.get_by_test_id("resolve").count() == 0
    assert page.get_by_test_id("chart-displacement-forecast").count() == 1
    shot(page, artifacts_dir, "viewer-masked")


def test_ended_session_returns_to_the_login(world: World, conn: psycopg.Connection,
                                            console_server: str,
                                            open_page: Callable[..., Any]) -> None:
    page, watch = open_page()
    login(page, console_server, "duty.lishui", PASSWORD)
    # Logged out elsewhere (a password change ends every session of the user).
    conn.execute("UPDATE api_sessions SET revoked_at = now()")
    watch.allow(r"status of 401 \(Unauthorized\)")  # the refused request, expected
    page.get_by_test_id(f"alert-{world.red_alert}").click()
    page.get_by_test_id("login").wait_for()
    assert "会话已结束" in page.get_by_test_id("login-error").inner_text()
    assert page.get_by_test_id("queue").count() == 0
    # Logging in again works, and the page does not keep the token anywhere readable.
    login(page, console_server, "duty.lishui", PASSWORD)
    stored = page.evaluate("JSON.stringify([Object.entries(localStorage), "
                           "Object.entries(sessionStorage), document.cookie])")
    assert "geowarn_session" not in stored and len(stored) < 200, stored
