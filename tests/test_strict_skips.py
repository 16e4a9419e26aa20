"""CI's strict mode: every skip but a TimescaleDB one is a failure, however it was made.

The outer tests run this file's inner tests in a pytest subprocess with GEOWARN_SELFCHECK
set; run normally (without it) the inner tests do nothing and pass.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from geowarn.settings import PROJECT_ROOT

SELFCHECK = bool(os.environ.get("GEOWARN_SELFCHECK"))


def test_inner_plain_skip() -> None:
    if SELFCHECK:
        pytest.skip("a service is missing")


@pytest.mark.skipif(SELFCHECK, reason="a tool is missing")
def test_inner_skipif() -> None:
    pass


def test_inner_importorskip() -> None:
    if SELFCHECK:
        pytest.importorskip("geowarn_no_such_module")


@pytest.mark.timescale
def test_inner_timescale_skip() -> None:
    if SELFCHECK:
        pytest.skip("no TimescaleDB server here")


INNER = ["test_inner_plain_skip", "test_inner_skipif", "test_inner_importorskip",
         "test_inner_timescale_skip"]


def _run(strict: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEOWARN_TEST_STRICT", "CI")}
    env["GEOWARN_SELFCHECK"] = "1"
    env["COLUMNS"] = "300"  # summary lines in full
    if strict:
        env["GEOWARN_TEST_STRICT"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         *(f"tests/test_strict_skips.py::{test}" for test in INNER)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_strict_mode_fails_every_skip_but_timescaledb_and_counts_them() -> None:
    strict = _run(strict=True)
    assert strict.returncode == 1, strict.stdout
    # A skip while running fails the test; one at setup (skipif, a fixture) is an error.
    for outcome, test in (("FAILED", INNER[0]), ("ERROR", INNER[1]), ("FAILED", INNER[2])):
        assert f"{outcome} tests/test_strict_skips.py::{test} - skipped in strict mode" in \
            strict.stdout, strict.stdout
    assert "skips: 1 (1 TimescaleDB, 0 other; strict mode" in strict.stdout
    assert "2 failed, 1 skipped, 1 error" in strict.stdout

    relaxed = _run(strict=False)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "4 skipped" in relaxed.stdout and "skips: 4 (1 TimescaleDB, 3 other)" in \
        relaxed.stdout
