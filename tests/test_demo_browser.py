"""The demo as a newcomer meets it: `geowarn demo` started as a process, the URL and the demo
login read from what it printed, the console opened in headless Chromium
(tests/fixtures/browser.py), and the slope of the story seen at red, its alert first in the
queue with the failure forecast in its evidence."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.broker import Broker
from tests.fixtures.browser import PROJECTOR, expect_hazard_level, login, shot
from tests.test_demo import start_demo

SLOPE = "DEMO-LS-01"


def test_the_printed_console_url_and_login_show_the_red_alert(
        empty_db_url: str, broker: Broker, tmp_path: Path, artifacts_dir: Path,
        open_page: Callable[..., tuple[Any, Any]]) -> None:
    proc, printed = start_demo(empty_db_url, broker, tmp_path)
    try:
        console = printed["console"]
        assert console.startswith("http://127.0.0.1:") and console.endswith("/console/")
        base = console.removesuffix("/console/")
        page, _ = open_page(viewport=PROJECTOR)
        login(page, base, printed["login"], printed["password"])
        expect_hazard_level(page, SLOPE, "red")
        first = page.get_by_test_id("queue").locator("li").first
        assert first.get_attribute("data-level") == "red"
        page.get_by_test_id(f"hazard-{SLOPE}").click()
        page.wait_for_selector("[data-testid='detail-box'][data-ready]")
        detail = page.get_by_test_id("alert-detail")
        assert detail.get_by_test_id("level").first.inner_text() == "红色"
        assert "预报破坏时间" in page.get_by_test_id("evidence-summary").first.inner_text()
        shot(page, artifacts_dir, "demo-red-alert")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
