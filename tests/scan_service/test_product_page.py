"""A GS1 Digital Link without a serial names a product, not an item: the product's page, in
both languages, with no scan recorded; a GTIN nobody has is a friendly 404."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import biip
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

import codegen
import scan_service
from core.runtime import Runtime
from tests.factories import Brand, count_rows, make_brand

GTIN = "06901234567892"  # the factory's product
HOST = "https://yima.example.com"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with scan_service.create_app().test_client() as test_client:
        yield test_client


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=50, url_form="gs1")


def scans_recorded(runtime: Runtime) -> int:
    with runtime.db.read_only() as session:
        return int(session.scalar(text("SELECT count(*) FROM anti_fraud_scans")) or 0)


def test_the_product_page_in_chinese(client: FlaskClient, runtime: Runtime, brand: Brand) -> None:
    page = client.get(f"/01/{GTIN}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'lang="zh-CN"' in html and 'data-page="product"' in html
    assert "Green tea 250 g" in html and "acme brand" in html and "250 g" in html
    assert "请扫描商品上的防伪码，验证是否为正品。" in html
    assert "生产日期" not in html  # no lot named: no batch to speak of
    assert "data-verdict" not in html  # a product page judges no item
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]


def test_the_product_page_in_english(client: FlaskClient, runtime: Runtime, brand: Brand) -> None:
    for page in (
        client.get(f"/01/{GTIN}?lang=en"),
        client.get(f"/01/{GTIN}", headers={"Accept-Language": "en-GB,en;q=0.8"}),
    ):
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and 'lang="en"' in html
        assert "Green tea 250 g" in html and "Brand" in html and "acme brand" in html
        assert "scan the code printed on it" in html and "请扫描" not in html


def test_a_known_lot_shows_its_production_date(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    html = client.get(f"/01/{GTIN}/10/L2026A?lang=en").get_data(as_text=True)
    assert "L2026A" in html and "Production date" in html and "2026-11-01" in html
    # A lot this product never had: the product, and nothing said of a batch.
    for lot in ("L1999Z", "%00", "x" * 40):
        page = client.get(f"/01/{GTIN}/10/{lot}")
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and "Green tea 250 g" in html
        assert "生产日期" not in html and "2026-11-01" not in html and "批次" not in html


def test_shorter_gtins_are_normalised_to_fourteen_digits(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    page = client.get(f"/01/{GTIN[1:]}")  # the GTIN-13 on the pack
    assert page.status_code == 200 and "Green tea 250 g" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "gtin",
    [
        "00012345678905",  # well formed, but no brand has it
        "06901234567893",  # bad check digit
        "0690123456789X",  # not digits
        "０６９０１２３４５６７８９２",  # fullwidth digits are not ASCII digits
        "123",  # wrong length
        "069012345678920",  # one digit too many
        "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    ],
)
@pytest.mark.parametrize("lot", [None, "L2026A"])
def test_unknown_or_malformed_gtins_are_a_friendly_404(
    client: FlaskClient, runtime: Runtime, brand: Brand, gtin: str, lot: str | None
) -> None:
    page = client.get(f"/01/{gtin}" + (f"/10/{lot}" if lot else ""))
    html = page.get_data(as_text=True)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "未找到该商品" in html and 'data-page="not_found"' in html
    assert "<img" not in html and "Green tea" not in html
    if "img" in gtin:
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    english = client.get(f"/01/{gtin}?lang=en").get_data(as_text=True)
    assert "Product not found" in english


def test_the_product_page_records_no_scan(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.read_only() as session:
        rows_before = count_rows(session)
    for path in (f"/01/{GTIN}", f"/01/{GTIN}/10/L2026A", "/01/06901234567893"):
        client.get(path)
    assert scans_recorded(runtime) == 0
    with runtime.db.read_only() as session:
        assert count_rows(session) == rows_before
    # With a serial, the same link is a code: scanned and recorded as before.
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        url = codegen.code_for_serial(
            runtime, batch=batch, gtin=GTIN, serial=3, host="yima.example.com"
        ).url
    html = client.get(urlsplit(url).path).get_data(as_text=True)
    assert 'data-verdict="genuine"' in html and "Green tea 250 g" in html
    assert scans_recorded(runtime) == 1


def test_an_independent_parser_reads_the_links_we_answer(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    for path in (f"/01/{GTIN}", f"/01/{GTIN}/10/L2026A"):
        result = biip.parse(HOST + path)
        assert result.gs1_digital_link_uri_error is None
        dl = result.gs1_digital_link_uri
        assert dl is not None and result.gtin is not None and result.gtin.value == GTIN
        values = {es.ai.ai: es.value for es in dl.element_strings}
        assert "21" not in values  # a product, not an item
        assert values.get("10") == ("L2026A" if "/10/" in path else None)
        assert client.get(path).status_code == 200
    # What the parser cannot read as a GTIN, we do not answer as a product either.
    bad = biip.parse(f"{HOST}/01/06901234567893")
    assert bad.gtin is None
    assert client.get("/01/06901234567893").status_code == 404


def test_the_oldest_product_with_a_gtin_answers(client: FlaskClient, runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        make_brand(session, runtime, slug="first", quantity=5)
        make_brand(session, runtime, slug="later", quantity=5)
    html = client.get(f"/01/{GTIN}").get_data(as_text=True)
    assert "first brand" in html and "later brand" not in html
