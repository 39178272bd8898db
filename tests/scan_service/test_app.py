"""The consumer scan page and the published keys, as a phone and a third party see them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask.testing import FlaskClient

import codegen
import scan_service
from core.runtime import Runtime
from tests.factories import Brand, make_brand


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with scan_service.create_app().test_client() as test_client:
        yield test_client


def _url(runtime: Runtime, brand: Brand, serial: int = 5) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        product = codegen.get_product_or_raise(
            session, tenant_id=brand.tenant_id, product_id=batch.product_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=product.gtin, serial=serial, host="yima.example.com"
        ).url


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize("url_form", ["short", "gs1", "gs1-digsig"])
def test_a_genuine_code_shows_the_product(
    client: FlaskClient, runtime: Runtime, url_form: str
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, url_form=url_form)
    page = client.get(_path(_url(runtime, brand)))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-verdict="genuine"' in html and "正品" in html
    assert "Green tea 250 g" in html and "L2026A" in html and "2026-11-01" in html


def test_a_forged_code_is_counterfeit_in_the_reader_language(
    client: FlaskClient, runtime: Runtime
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime)
    path = _path(_url(runtime, brand))
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    page = client.get(forged, headers={"Accept-Language": "en-US,en;q=0.9"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-verdict="counterfeit"' in html and "Not verified" in html
    assert "Green tea" not in html


@pytest.mark.parametrize(
    "path",
    [
        "/c/",
        "/c/" + "A" * 5000,
        "/c/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/C/%00%01",
        "/01/123/10/x/21/y",
        "/01/06901234567892/10/L1/21/" + "z" * 20 + "?8030=" + "x" * 86,
    ],
)
def test_garbage_is_a_verdict_never_an_error(
    client: FlaskClient, runtime: Runtime, path: str
) -> None:
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code in (200, 404)
    assert "<script>" not in html


def test_a_revoked_batch_is_not_genuine(client: FlaskClient, runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime)
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        key_id = batch.key_id
    path = _path(_url(runtime, brand))
    with runtime.db.unit_of_work() as session:
        codegen.retire_code_key(
            session,
            runtime=runtime,
            tenant_id=brand.tenant_id,
            key_id=key_id,
            reason="plates stolen",
        )
    assert 'data-verdict="counterfeit"' in client.get(path).get_data(as_text=True)


def test_anyone_verifies_a_signed_code_with_the_published_key(
    client: FlaskClient, runtime: Runtime
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, url_form="gs1-digsig")
    url = _url(runtime, brand, serial=9)
    published = client.get("/.well-known/yima/keys.json")
    assert published.headers["Access-Control-Allow-Origin"] == "*"
    keys = published.get_json()["keys"]
    # A third party: parse the URL, find the key by the id in the serial, check the signature.
    parts = urlsplit(url)
    segments = parts.path.split("/")
    gtin, lot, serial = segments[2], segments[4], segments[6]
    sig = parts.query.removeprefix("8030=")
    key_id = (
        int.from_bytes(base64.urlsafe_b64decode(serial + "=" * (-len(serial) % 4))[:2], "big") >> 1
    )
    jwk = next(k for k in keys if k["kid"] == str(key_id))
    public = Ed25519PublicKey.from_public_bytes(
        base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    )
    message = f"(01){gtin}(10){lot}(21){serial}".encode()
    public.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), message)
    tampered = f"(01){gtin}(10){lot}(21){serial[:-1]}{'A' if serial[-1] != 'A' else 'B'}"
    with pytest.raises(InvalidSignature):
        public.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), tampered.encode())


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["status"] == "ready"
