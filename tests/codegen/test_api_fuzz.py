"""Schemathesis against the management API's own OpenAPI spec: random, overlong, unicode and
malformed requests to every operation get a documented answer, never a 500."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

import console
import core.tasks
from core.runtime import Runtime
from tests.factories import make_brand


def test_no_generated_request_breaks_the_api(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Generated batches hold up to 10^8 codes: record the export jobs, do not run them here
    # (tests/codegen/test_exports.py runs them).
    monkeypatch.setattr(core.tasks, "send_now", lambda task, *args: None)
    app = console.create_app()  # on the fixture's runtime
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=50)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {brand.admin_token}"}
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code >= 400:
                headers = {k.lower(): v for k, v in response.headers.items()}
                content_type = headers["content-type"]
                if isinstance(content_type, list):
                    content_type = content_type[0]
                assert content_type.startswith("application/problem+json"), (
                    case.method,
                    case.path,
                    response.status_code,
                )

        call()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 14
