"""Every scan route against random, overlong, unicode, percent-encoded and injection input:
a verdict, a 4xx problem+json or a 429 — never a 500, never script in the page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scan_service
from core.runtime import Runtime, set_runtime
from tests.factories import make_brand

INJECTIONS = [
    "' OR 1=1 --",
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>",
    "%00",
    "%2e%2e%2f%2e%2e%2f",
    "../../etc/passwd",
    "1;DROP TABLE anti_fraud_scans",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "\u202e\u0000\ud7ff",
    "ＡＢＣ",
    "🔒" * 50,
]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    # Generous flood limits: this test is about input, not about rate limiting.
    generous = Runtime(
        runtime.settings.model_copy(
            update={
                "invalid_scans_per_ip_per_minute": 1_000_000,
                "invalid_scans_per_device_per_minute": 1_000_000,
            }
        )
    )
    set_runtime(generous)
    try:
        with scan_service.create_app().test_client() as test_client:
            yield test_client
    finally:
        set_runtime(runtime)
        generous.close()


def _assert_safe(response: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, response.get_data(as_text=True)[:300]  # type: ignore[attr-defined]
    if status >= 400 and status not in (404, 405, 429):
        assert response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
    if response.mimetype == "text/html":  # type: ignore[attr-defined]
        html = response.get_data(as_text=True)  # type: ignore[attr-defined]
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert all("nonce=" in tag for tag in scripts), scripts
        assert "onerror=" not in html and "<img src=x" not in html


@pytest.mark.parametrize("payload", [*INJECTIONS, "A" * 1_000_000])
def test_page_routes_survive_hostile_paths(client: FlaskClient, payload: str) -> None:
    for path in (
        f"/c/{payload}",
        f"/C/{payload}",
        f"/01/{payload}/10/{payload}/21/{payload}",
        f"/01/06901234567892/10/L1/21/{payload}?8030={payload}",
    ):
        _assert_safe(client.get(path[:1_100_000]))


@given(token=st.text(max_size=300))
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_random_tokens_get_a_verdict(client: FlaskClient, token: str) -> None:
    from urllib.parse import quote

    response = client.get("/c/" + quote(token, safe=""))
    _assert_safe(response)


@given(
    body=st.one_of(
        st.dictionaries(
            st.text(max_size=20),
            st.one_of(st.text(max_size=200), st.integers(), st.floats(), st.none(), st.booleans()),
            max_size=6,
        ),
        st.lists(st.integers(), max_size=5),
        st.text(max_size=100),
        st.integers(),
    )
)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_random_scan_bodies_get_an_answer(client: FlaskClient, body: object) -> None:
    _assert_safe(client.post("/api/v1/scans", json=body))
    _assert_safe(client.post("/api/v1/scans/" + "a" * 26 + "/location", json=body))


def test_wrong_content_types_and_huge_bodies(client: FlaskClient) -> None:
    _assert_safe(
        client.post(
            "/api/v1/scans", data="code=x", content_type="application/x-www-form-urlencoded"
        )
    )
    _assert_safe(
        client.post("/api/v1/scans", data=b"\xff\xfe\x00", content_type="application/json")
    )
    huge = client.post(
        "/api/v1/scans", data=b"{" + b" " * 3_000_000 + b"}", content_type="application/json"
    )
    assert huge.status_code == 413


def test_schemathesis_against_the_scan_api(runtime: Runtime, client: FlaskClient) -> None:
    with runtime.db.unit_of_work() as session:
        make_brand(session, runtime, quantity=20)
    app = scan_service.create_app()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call()
            assert response.status_code < 500, (case.path, response.text[:300])

        call()
        operations.add(f"{operation.method.upper()} {operation.path.removeprefix('/api/v1')}")
    # The scan API and the consumer member API: every operation was fuzzed.
    assert {
        "POST /scans",
        "POST /scans/{scan_id}/location",
        "POST /members/otp",
        "POST /members/sign-in",
        "GET /me",
        "GET /me/points",
        "POST /me/check-ins",
        "GET /catalogue",
        "POST /me/orders",
    } <= operations
