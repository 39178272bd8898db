"""The draw in a real browser (headless Chromium driven by Playwright) on a phone-sized screen:
scan a code signed out, sign in from the scan page, come back to a draw card that spins and lands
on the prize the server decided; go to my prizes and claim the goods prize with an address; read
the campaign's rules with their odds. Then the same card for a reader who wants no motion, and
for a browser without scripts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import codegen
from core.db import utcnow
from core.runtime import Runtime
from members.otp import RecordingSmsSender, use_sms_sender
from tests.campaigns.helpers import live_campaign
from tests.e2e.browser import needs_chromium
from tests.factories import Brand, make_brand

pytestmark = needs_chromium

PHONE = "13812345678"
MUG = {
    "key": "mug",
    "name": "马克杯",
    "kind": "goods",
    "probability": "1",
    "stock": 5,
    "value_fen": 3900,
}
# Records each state the draw card passes through, and whether its result could be seen then.
WATCH_DRAW = """
window.__draw = [];
new MutationObserver(function (changes) {
  changes.forEach(function (m) {
    if (m.target.id !== "draw" || m.attributeName !== "data-state") return;
    var result = document.getElementById("draw-result");
    window.__draw.push([m.target.getAttribute("data-state"), getComputedStyle(result).visibility]);
  });
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-state"] });
"""


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    return sender


@pytest.fixture
def brand(runtime: Runtime) -> tuple[Brand, int]:
    """A brand whose campaign draws a mug for every scan (its only prize, probability 1)."""
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, slug="acme", quantity=10)
        campaign = live_campaign(
            session,
            runtime,
            brand,
            starts_at=(now - dt.timedelta(hours=1)).isoformat(),
            ends_at=(now + dt.timedelta(days=9)).isoformat(),
            draw={"prizes": [MUG], "fallback": None},
        )
        return brand, campaign.id


def code_path(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        url = codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url
    return urlsplit(url).path


def _text(page: Any, selector: str, contains: str) -> str:
    """Wait until ``selector`` shows ``contains``; its text."""
    page.locator(selector, has_text=contains).wait_for(timeout=15_000)
    return str(page.inner_text(selector))


def test_a_member_scans_wins_a_mug_and_claims_it(
    runtime: Runtime,
    server: str,
    browser: Any,
    sms: RecordingSmsSender,
    brand: tuple[Brand, int],
    tmp_path: Path,
) -> None:
    acme, campaign_id = brand
    context = browser.new_context(locale="zh-CN", viewport={"width": 360, "height": 740})
    context.add_init_script(WATCH_DRAW)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    # Signed out, the scan offers sign-in and no draw.
    scan = code_path(runtime, acme, 3)
    page.goto(server + scan)
    assert page.get_attribute("#verdict", "data-verdict") == "genuine"
    assert page.locator("#draw").count() == 0
    page.click("#sign-in")
    page.fill("#phone", PHONE)
    page.click("#send-code")
    _text(page, "#sign-in-message", "验证码已发送")
    page.fill("#code", sms.last_code(PHONE))
    page.click("#sign-in")

    # Back on the scan page, signed in: the wheel spins with the result hidden, then shows it.
    page.wait_for_url(server + scan, timeout=15_000)
    page.locator('#draw[data-state="done"]').wait_for(timeout=15_000)
    assert page.evaluate("window.__draw") == [["spinning", "hidden"], ["done", "visible"]]
    assert page.get_attribute("#draw", "data-won") == "1"
    assert page.get_attribute("#draw", "data-segment") == "6"  # a prize segment
    transform = page.eval_on_selector(".draw-wheel", "w => w.style.transform")
    assert transform == "rotate(1507.5deg)"  # four turns, then segment 6 (292.5°) at the top
    assert page.inner_text("#draw-text") == "恭喜获得 马克杯"
    assert page.is_visible("#draw-claim")
    assert page.inner_text("#draw-claim") == "填写收货信息，领取奖品"
    assert "本次扫码获得 10 积分" in page.inner_text("#points")
    page.screenshot(path=str(tmp_path / "draw.png"), full_page=True)

    # My prizes: the mug, waiting for an address.
    page.click("#draw-prizes")
    page.wait_for_url(server + "/m/prizes")
    item = _text(page, "#prizes", "马克杯")
    assert "待填写收货信息" in item and "双十一扫码有礼" in item
    page.click("#prizes a.claim")
    page.wait_for_url("**/m/prizes/*/claim")
    _text(page, "#claim-prize-name", "马克杯")

    # The claim form: each missing or wrong field is named by the field itself.
    page.locator("#claim-form").wait_for(state="visible", timeout=15_000)
    page.click("#claim-submit")
    assert page.inner_text("#claim-name-error") == "请填写收货人姓名（1-50 个字）。"
    assert page.is_visible("#claim-address-error") and page.is_visible("#claim-phone-error")
    page.fill("#claim-name", "张三")
    page.fill("#claim-phone", "12345")
    page.fill("#claim-address", "杭州市西湖区龙井路 1 号")
    page.click("#claim-submit")
    _text(page, "#claim-phone-error", "请输入正确的手机号")
    assert page.is_hidden("#claim-name-error") and page.is_hidden("#claim-address-error")
    page.fill("#claim-phone", "13900001111")
    page.click("#claim-submit")
    _text(page, "#claim-message", "已提交收货信息")
    assert page.is_hidden("#claim-form")
    assert page.inner_text("#claim-prize-state") == "待发货"
    page.screenshot(path=str(tmp_path / "claim.png"))
    page.click("#claim-message a")
    page.wait_for_url(server + "/m/prizes")
    assert "待发货" in _text(page, "#prizes", "马克杯")
    assert page.locator("#prizes a.claim").count() == 0

    # The rules: the prize, its quantity and its odds, and the published commitments.
    page.click("#prizes a.rules")
    page.wait_for_url(server + f"/campaigns/acme/{campaign_id}")
    row = page.inner_text("#prize-mug")
    assert "马克杯" in row and "5" in row and "1" in row and "100%" in row
    assert page.inner_text("#campaign-status") == "进行中"
    assert len(page.inner_text("#seed-hash")) == 64
    page.goto(server + f"/campaigns/acme/{campaign_id}?lang=en")
    assert "Prizes and odds" in page.inner_text("#prizes")
    page.screenshot(path=str(tmp_path / "rules-en.png"), full_page=True)

    # A reader who prefers no motion sees the result at once.
    page.emulate_media(reduced_motion="reduce")
    page.goto(server + code_path(runtime, acme, 4) + "?lang=zh")
    page.locator('#draw[data-state="done"]').wait_for(timeout=15_000)
    assert page.evaluate("window.__draw") == [["done", "visible"]]
    assert page.inner_text("#draw-text") == "恭喜获得 马克杯"
    assert problems == []

    # Without scripts the result is simply there; asking again shows the same draw.
    plain = browser.new_context(
        locale="zh-CN", viewport={"width": 360, "height": 740}, java_script_enabled=False
    )
    plain.add_cookies(context.cookies())
    still = plain.new_page()
    still.goto(server + scan)
    assert still.is_visible("#draw-result")
    assert still.inner_text("#draw-text") == "恭喜获得 马克杯"
    assert still.inner_text("#draw-status") == "已提交收货信息，等待发货"
    assert "此码的积分已归您所有" in still.inner_text("#points")
    plain.close()
    context.close()
