"""The readings store on the database the test server gives (plain PostgreSQL on this
machine): the shared query suite, plus writing, validation, lookup, pruning and the CLI."""

from __future__ import annotations

import psycopg
import pytest

from tests.readings_suite import (  # noqa: F401  (imported tests are collected here)
    test_accumulation_window_edges,
    test_accumulations_match_numpy,
    test_downsample_hand_computed,
    test_downsample_matches_numpy,
    test_duplicates_stored_once,
    test_latest,
    test_rain_day_by_offset_or_by_zone,
    test_raw_is_start_inclusive_end_exclusive,
    test_raw_matches_numpy,
    test_same_instant_in_another_zone_is_a_duplicate,
)


@pytest.fixture
def store(conn: psycopg.Connection) -> psycopg.Connection:
    return conn
