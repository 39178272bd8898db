"""The management API over HTTP: auth, tenant isolation, validation, exports, the spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

import console
from core import services as core_services
from core.runtime import Runtime
from tests.factories import Brand, make_brand


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    app = console.create_app()  # on the fixture's runtime (and its cleanup)
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["database"] in ("sqlite", "postgresql")


def test_the_api_needs_a_valid_key(client: FlaskClient, brand: Brand) -> None:
    problem(client.get("/api/v1/products"), 401)
    problem(client.get("/api/v1/products", headers=auth("yk_nope_nope")), 401)
    assert client.get("/api/v1/products", headers=auth(brand.admin_token)).status_code == 200


def test_roles_limit_what_a_key_may_do(client: FlaskClient, runtime: Runtime, brand: Brand) -> None:
    with runtime.db.unit_of_work() as session:
        analyst = core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name="bi", role="analyst"
        ).token
    assert client.get("/api/v1/batches", headers=auth(analyst)).status_code == 200
    body = problem(
        client.post("/api/v1/products", headers=auth(analyst), json={"sku": "X", "name": "X"}), 403
    )
    assert body["code"] == "permission_denied"
    problem(
        client.post(
            f"/api/v1/batches/{brand.batch_id}/exports",
            headers=auth(analyst),
            json={"format": "txt"},
        ),
        403,
    )
    problem(client.get("/api/v1/keys", headers=auth(analyst)), 403)


def test_tenants_see_only_their_own_data(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        other = make_brand(session, runtime, slug="rival")
    problem(client.get(f"/api/v1/batches/{other.batch_id}", headers=auth(brand.admin_token)), 404)
    problem(
        client.post(
            f"/api/v1/batches/{other.batch_id}/exports",
            headers=auth(brand.admin_token),
            json={"format": "txt"},
        ),
        404,
    )
    listed = client.get("/api/v1/batches", headers=auth(brand.admin_token)).get_json()
    assert [b["id"] for b in listed["items"]] == [brand.batch_id]


def test_products_are_created_validated_and_paginated(client: FlaskClient, brand: Brand) -> None:
    headers = auth(brand.admin_token)
    bad = problem(
        client.post(
            "/api/v1/products",
            headers=headers,
            json={"sku": "T-2", "name": "Tea", "gtin": "06901234567891"},
        ),
        422,
    )
    assert "gtin" in bad["errors"]
    for i in range(5):
        made = client.post(
            "/api/v1/products",
            headers=headers,
            json={"sku": f"T-{i}", "name": f"Tea {i}", "gtin": None},
        )
        assert made.status_code == 201, made.get_json()
    clash = problem(
        client.post("/api/v1/products", headers=headers, json={"sku": "T-1", "name": "Again"}), 409
    )
    assert "sku" in clash["errors"]
    page = client.get("/api/v1/products?limit=4", headers=headers).get_json()
    assert len(page["items"]) == 4 and page["next_after"] == page["items"][-1]["id"]
    rest = client.get(
        f"/api/v1/products?limit=4&after={page['next_after']}", headers=headers
    ).get_json()
    assert len(rest["items"]) == 2 and rest["next_after"] is None
    problem(client.get("/api/v1/products?limit=0", headers=headers), 422)
    problem(client.get("/api/v1/products?after=abc", headers=headers), 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lot": "L9", "quantity": 0}, "quantity"),
        ({"lot": "L9", "quantity": -1}, "quantity"),
        ({"lot": "L9", "quantity": 100_000_001}, "quantity"),
        ({"lot": "L9", "quantity": "many"}, "quantity"),
        ({"lot": "bad lot!", "quantity": 10}, "lot"),
        ({"lot": "L9", "quantity": 10, "url_form": "long"}, "url_form"),
        ({"lot": "L9"}, "quantity"),
    ],
)
def test_bad_batches_get_422_naming_the_field(
    client: FlaskClient, brand: Brand, body: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/api/v1/batches",
        headers=auth(brand.admin_token),
        json={"product_id": brand.product_id, **body},
    )
    assert field in problem(response, 422)["errors"]


def test_unknown_product_and_malformed_bodies(client: FlaskClient, brand: Brand) -> None:
    headers = auth(brand.admin_token)
    problem(
        client.post(
            "/api/v1/batches",
            headers=headers,
            json={"product_id": 999999, "lot": "L1", "quantity": 5},
        ),
        404,
    )
    problem(
        client.post(
            "/api/v1/batches", headers=headers, data="{not json", content_type="application/json"
        ),
        422,
    )
    problem(
        client.post(
            "/api/v1/batches",
            headers=headers,
            data="lot=L1",
            content_type="application/x-www-form-urlencoded",
        ),
        415,
    )
    problem(client.post("/api/v1/batches", headers=headers, json=[1, 2]), 422)
    problem(client.get("/api/v1/nothing-here", headers=headers), 404)
    problem(client.delete("/api/v1/products", headers=headers), 405)


def test_nul_bytes_are_refused_not_a_server_error(client: FlaskClient, brand: Brand) -> None:
    headers = auth(brand.admin_token)
    assert (
        "gtin" in problem(client.get("/api/v1/products?gtin=%00", headers=headers), 422)["errors"]
    )
    body = problem(
        client.post("/api/v1/products", headers=headers, json={"sku": "A", "name": "Tea\u0000"}),
        422,
    )
    assert "name" in body["errors"]


def test_batch_export_download_flow(client: FlaskClient, brand: Brand) -> None:
    headers = auth(brand.admin_token)
    started = client.post(
        f"/api/v1/batches/{brand.batch_id}/exports",
        headers=headers,
        json={"format": "txt", "first_serial": 1, "last_serial": 1500},
    )
    assert started.status_code == 202
    export_id = started.get_json()["id"]
    status = client.get(f"/api/v1/exports/{export_id}", headers=headers).get_json()
    assert status["status"] == "done" and status["chunks_done"] == status["chunks_total"] == 2
    download = client.get(f"/api/v1/exports/{export_id}/file", headers=headers)
    assert download.status_code == 200
    assert download.headers["X-Content-SHA256"] == status["sha256"]
    urls = download.get_data().decode().splitlines()
    download.close()
    assert len(urls) == 1500 and urls[0].startswith("HTTPS://YIMA.EXAMPLE.COM/C/")
    verified = client.post("/api/v1/verify", headers=headers, json={"code": urls[41]})
    assert verified.get_json()["valid"] is True and verified.get_json()["serial"] == 42
    swap = "A" if urls[41][-5] != "A" else "B"  # a middle character: a wrong signature
    forged = client.post(
        "/api/v1/verify", headers=headers, json={"code": urls[41][:-5] + swap + urls[41][-4:]}
    )
    assert forged.get_json() == {
        "valid": False,
        "reason": "bad_signature",
        "format": None,
        "tenant_id": None,
        "batch_id": None,
        "serial": None,
        "key_id": None,
    }


def test_keys_rotate_and_retire_over_the_api(client: FlaskClient, brand: Brand) -> None:
    headers = auth(brand.admin_token)
    keys = client.get("/api/v1/keys", headers=headers).get_json()["items"]
    assert [k["status"] for k in keys] == ["current"]
    rotated = client.post("/api/v1/keys/rotate", headers=headers)
    assert rotated.status_code == 201 and rotated.get_json()["status"] == "current"
    retired = client.post(
        f"/api/v1/keys/{keys[0]['id']}/retire",
        headers=headers,
        json={"reason": "printer compromised"},
    )
    assert retired.get_json()["batches_revoked"] == 1
    assert retired.get_json()["key"]["status"] == "retired"
    problem(client.post("/api/v1/keys/1/retire", headers=headers, json={"reason": ""}), 422)


def test_openapi_spec_is_valid_and_covers_the_routes(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    assert {
        "/api/v1/products",
        "/api/v1/batches",
        "/api/v1/batches/{batch_id}/exports",
        "/api/v1/exports/{export_id}/file",
        "/api/v1/verify",
        "/api/v1/keys/rotate",
    } <= set(spec["paths"])
    assert spec["paths"]["/api/v1/batches"]["post"]["requestBody"]
