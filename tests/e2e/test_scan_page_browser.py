"""The scan page in a real browser (headless Chromium driven by Playwright): two phones, the
second far away, sharing their location with consent."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import codegen
from core.runtime import Runtime
from tests.e2e.browser import needs_chromium
from tests.factories import make_brand

pytestmark = needs_chromium


def test_two_phones_and_a_copied_code(
    runtime: Runtime, server: str, browser: object, tmp_path: Path
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10)
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        url = codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=2, host="yima.example.com", session=session
        ).url
    page_url = server + urlsplit(url).path

    # The first phone, in Hangzhou, scans and shares its location.
    hangzhou = browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN",
        geolocation={"latitude": 30.25, "longitude": 120.15},
        permissions=["geolocation"],
        viewport={"width": 390, "height": 844},
    )
    page = hangzhou.new_page()
    page.goto(page_url)
    assert page.get_attribute("#verdict", "data-verdict") == "genuine"
    assert page.inner_text("#verdict-title") == "正品"
    assert "Green tea 250 g" in page.inner_text("#product")
    page.click("#locate-button")
    page.locator("#locate-result:not(:empty)").wait_for(timeout=15_000)
    assert "杭州" in page.inner_text("#locate-result")
    page.screenshot(path=str(tmp_path / "hangzhou.png"))

    # A second phone in Beijing a moment later: checked before, then too far to be the same item.
    beijing = browser.new_context(  # type: ignore[attr-defined]
        locale="en-US",
        geolocation={"latitude": 39.90, "longitude": 116.40},
        permissions=["geolocation"],
        viewport={"width": 390, "height": 844},
    )
    other = beijing.new_page()
    other.goto(page_url)
    assert other.get_attribute("#verdict", "data-verdict") == "already_verified"
    assert "First checked on" in other.inner_text("#first-scan")
    assert "Hangzhou" in other.inner_text("#first-scan")
    other.click("#locate-button")
    other.locator('#verdict[data-verdict="suspicious"]').wait_for(timeout=15_000)
    assert other.inner_text("#verdict-title") == "Something is wrong"
    other.screenshot(path=str(tmp_path / "beijing.png"))
    hangzhou.close()
    beijing.close()
