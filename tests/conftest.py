import faulthandler
import os
import sys
from collections.abc import Generator

import pytest

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.proxy",
    "tests.fixtures.gateway",
    "tests.fixtures.api",
    "tests.fixtures.server",
    "tests.fixtures.fake_twilio",
    "tests.fixtures.browser",
]

# A hung test prints every thread's stack before pytest-timeout ends it.
faulthandler.enable(file=sys.stderr)


def strict_mode() -> bool:
    """CI (GEOWARN_TEST_STRICT=1 or CI=true): every test must run."""
    return bool(os.environ.get("GEOWARN_TEST_STRICT")) or \
        os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, None]:
    """In strict mode a skip is a failure, however it was made (pytest.skip, skipif,
    importorskip, a fixture), unless the test is marked `timescale`: no TimescaleDB server
    can be installed where CI runs (GEOWARN_TEST_TIMESCALE_URL runs those tests)."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and strict_mode()) or hasattr(report, "wasxfail"):
        return
    if item.get_closest_marker("timescale") is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in strict mode (CI must run every test): {reason}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    timescale = sum(1 for r in skipped if "timescale" in getattr(r, "keywords", {}))
    terminalreporter.write_line(
        f"skips: {len(skipped)} ({timescale} TimescaleDB, {len(skipped) - timescale} other"
        + ("; strict mode: only TimescaleDB skips allowed)" if strict_mode() else ")"))
