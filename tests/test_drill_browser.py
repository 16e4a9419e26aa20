"""The console marks a drill's alert 【演练】 in the queue and in its detail, and a live alert
not at all (real Chromium, real API on the test database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from alerts.lifecycle.writes import LevelChange, apply_changes
from alerts.methods.levels import Level
from notify import exercises
from tests.fixtures.api import PASSWORD, T0, seed
from tests.fixtures.browser import login, open_alert

pytestmark = pytest.mark.timeout(240)


def test_console_badges_the_drill_only(conn: psycopg.Connection, console_server: str,
                                       open_page: Callable[..., Any]) -> None:
    exercises.start(conn, "flood-drill-1")
    apply_changes(conn, [LevelChange("site", "GAUGE-D", "water_level", Level.ORANGE, T0)],
                  engine="drill")
    exercises.end(conn, "flood-drill-1")
    ids = seed(conn)
    page, _ = open_page()
    login(page, console_server, "admin", PASSWORD)
    drill = page.get_by_test_id(f"alert-{ids['GAUGE-D']}")
    drill.wait_for()
    assert drill.get_attribute("data-exercise") == "flood-drill-1"
    assert drill.get_by_test_id("drill").inner_text() == "【演练】"
    live = page.get_by_test_id(f"alert-{ids['HP-XIHU']}")
    assert live.get_attribute("data-exercise") is None
    assert live.get_by_test_id("drill").count() == 0

    open_alert(page, ids["GAUGE-D"])
    assert page.get_by_test_id("alert-detail").get_by_test_id("drill").inner_text() == "【演练】"
    open_alert(page, ids["HP-XIHU"])
    assert page.get_by_test_id("alert-detail").get_by_test_id("drill").count() == 0
