"""schemathesis against the live OpenAPI schema of the dev stack, with a valid token of a fresh tenant:
no request may get a 5xx, and every response must match the schema (status, content type, headers, body).

Bounded so it runs in well under two minutes on two cores: a few examples per operation, no shrinking.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

#: Examples per operation and generation mode (valid and invalid data).
EXAMPLES = 6
SCOPES = (*ALL_SCOPES, "retention:read", "retention:write", "looks:read", "looks:write")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def token(stack: DevStack) -> str:
    return stack.mint_token(tenant=f"fuzz-{uuid.uuid4().hex[:8]}", scopes=SCOPES)


def _check_operation(operation: Any, token: str, mode: GenerationMode) -> str | None:
    """Runs a few generated cases of one operation; the first failure, described, or None."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=60)
        except Exception as failure:  # every kind of check failure is reported
            failures.append(f"{operation.label}: {type(failure).__name__}: {str(failure)[:1500]}")

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to generate in this mode (e.g. no invalid input exists for /healthz)
    return failures[0] if failures else None


def test_the_live_api_matches_its_schema(stack: DevStack, token: str) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _check_operation(operation, token, mode)
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
