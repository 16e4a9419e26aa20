"""Property-based test of the whole API from its OpenAPI schema (schemathesis): for every
operation, authenticated as an admin and as a county officer, generated requests (valid and
not) never get a 5xx, and every response matches the schema's status codes and shapes.
The event stream never ends, so it is left to tests/test_api_stream.py."""

from __future__ import annotations

from typing import Any

import psycopg
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from tests.fixtures.api import login

EXAMPLES_PER_OPERATION = 30
NOT_GENERATED = {"/api/alerts/stream"}


def test_no_5xx_and_responses_match_the_schema(seeded: dict[str, int],
                                               conn: psycopg.Connection,
                                               client: TestClient) -> None:
    conn.commit()
    headers = [login(client, "admin"), login(client, "duty.xihu")]
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    # An operation the schema cannot describe fails the test here (Err.ok() raises it).
    operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
    operations = [op for op in operations if op.path not in NOT_GENERATED]
    assert len(operations) >= 15
    calls: dict[str, int] = {}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            for h in headers:
                response = case.call(headers=h)
                assert response.status_code < 500, (case.method, case.formatted_path,
                                                     response.text)
                case.validate_response(response)
                key = f"{case.method} {case.path}"
                calls[key] = calls.get(key, 0) + 1
        exercise()
    assert len(calls) == len(operations)
    print(f"schemathesis: {sum(calls.values())} requests over {len(operations)} operations")
