"""Property-based fuzzing of every operation in the app's OpenAPI schema (schemathesis): no input gives a 5xx.

Runs against the real keyed server (transformers engine on the tiny model, MiniLM, FAISS, SQLite), authenticated,
with a bounded number of examples per operation so it fits the default test run.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.fixtures.live_server import LiveServer
from tests.serving.test_auth_metrics import KEY, keyed_server  # noqa: F401  (module fixture reused here)

EXAMPLES_PER_OPERATION = 12


def _cap_generation(case: Any) -> None:
    """Keep fuzzed chats short: the property is 'no 5xx', not generation speed."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 8:
        body["max_tokens"] = 8


def test_no_input_causes_a_server_error(keyed_server: LiveServer) -> None:  # noqa: F811
    schema = schemathesis.openapi.from_url(f"{keyed_server.base_url}/openapi.json")
    failures: list[str] = []
    checked: list[str] = []
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        checked.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            _cap_generation(case)
            response = case.call(headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        run()
    assert "POST /v1/chat/completions" in checked and "POST /v1/documents" in checked
    assert len(statuses) >= 3 * len(checked)  # hypothesis really generated cases for every operation
    assert any(code < 300 for code in statuses) and any(400 <= code < 500 for code in statuses)
    assert failures == []
