"""The journey and the product page in a real browser (headless Chromium driven by
Playwright): a traced code shows where it has been; a link without a serial shows the product."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

import codegen
import traceability
from core.runtime import Runtime
from tests.e2e.browser import needs_chromium
from tests.factories import make_brand
from traceability.activation import SerialRange

pytestmark = needs_chromium

T0 = dt.datetime(2026, 11, 20, 20, 30, tzinfo=dt.UTC)  # 2026-11-21 04:30 in Shanghai


def test_a_traced_code_and_a_product_link_in_the_browser(
    runtime: Runtime, server: str, browser: object, tmp_path: Path
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=30)
        traceability.record_activation(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            action="activate",
            scope="range",
            ranges=[SerialRange(brand.batch_id, 1, 30)],
            operator="line operator",
            line="L1",
            site="杭州工厂",
            at=T0,
        )
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="ZJ-01",
            name="浙江总代",
            level="provincial",
            regions=["CN-ZJ"],
        )
        case = traceability.CodeRef(brand.batch_id, 30)
        traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(case, traceability.CodeRef(brand.batch_id, s)) for s in range(1, 13)],
            operator="plc",
            at=T0 + dt.timedelta(hours=1),
        )
        shipment = traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-1",
            to_distributor_id=east.id,
            units=[case],
            operator="warehouse",
            at=T0 + dt.timedelta(hours=3),
        )
        traceability.receive(
            session,
            tenant_id=brand.tenant_id,
            shipment_id=shipment.id,
            operator="receiver",
            at=T0 + dt.timedelta(days=1, hours=2),
        )
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        url = codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=4, host="yima.example.com", session=session
        ).url

    phone = browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN", viewport={"width": 390, "height": 844}
    )
    page = phone.new_page()
    page.goto(server + urlsplit(url).path)
    assert page.get_attribute("#verdict", "data-verdict") == "genuine"
    journey = page.locator("#journey")
    assert journey.is_visible()
    steps = journey.locator("li")
    assert steps.count() == 4
    assert [steps.nth(i).inner_text().replace("\n", " ") for i in range(4)] == [
        "2026-11-21 04:30 在杭州工厂 L1生产并激活",
        "2026-11-21 05:30 装箱",
        "2026-11-21 07:30 发往浙江总代",
        "2026-11-22 06:30 浙江总代已收货",
    ]
    # The timeline fits a phone's width: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "journey.png"), full_page=True)

    page.goto(f"{server}/01/06901234567892?lang=en")
    assert page.locator("#product-name").is_visible()
    assert page.inner_text("#product-name") == "Green tea 250 g"
    assert "scan the code printed on it" in page.inner_text("#scan-to-verify")
    page.screenshot(path=str(tmp_path / "product.png"), full_page=True)
    phone.close()
