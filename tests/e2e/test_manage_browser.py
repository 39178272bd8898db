"""The console's management pages in a real browser (headless Chromium driven by Playwright),
served under /console as ``yima serve`` does, on a tablet-sized screen: an admin issues a batch
and downloads its print file (the CSV holds the batch's codes, and they verify); creates a
campaign from the form (a wrong probability is named next to its field), schedules it and sees
it running; finds a member by phone (masked), opens the 360 view and reveals the number; adds a
webhook alert rule (its secret shown once) and sends a test notification that arrives; adds a
product, a distributor and its regions, a tier, a catalogue item and an API key; releases and
denies rewards the fraud rules held."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import campaigns
import codegen
import members
from core import services as core_services
from core.runtime import Runtime
from tests.campaigns.helpers import brand_with_members, config, scan_reward
from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium

PASSWORD = "correct horse battery"
PHONE = "13812345678"
WAIT = 15_000


@pytest.fixture
def acme(runtime: Runtime) -> dict[str, int]:
    """A brand with an admin, a product and a member with some points."""
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        core_services.create_user(
            session, tenant_id=tenant.id, email="boss@acme.cn", role="admin", password=PASSWORD
        )
        product = codegen.create_product(
            session, tenant_id=tenant.id, sku="TEA-250", name="龙井 250g", gtin="06901234567892"
        )
        member = members.enrol_member(session, runtime, tenant_id=tenant.id, phone=PHONE).member
        members.adjust(
            session,
            tenant_id=tenant.id,
            member_id=member.id,
            points=120,
            business_key="welcome",
            reason="欢迎积分",
            actor="tests",
        )
        return {"tenant": tenant.id, "product": product.id, "member": member.id}


class Hook(http.server.BaseHTTPRequestHandler):
    """Records what a webhook receives (a subclass per test holds its own list)."""

    received: ClassVar[list[dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append({"headers": dict(self.headers), "body": body})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Hook,), {"received": received})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/yima-alerts", received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _watch(page: Any) -> list[str]:
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
    return problems


def _signed_in(browser: Any, base: str, brand: str) -> Any:
    """A tablet-sized page signed in as the brand's admin (Chinese), on the batches page."""
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 1024, "height": 768}, accept_downloads=True
    )
    page = context.new_page()
    page.problems = _watch(page)
    page.goto(base + "/batches")
    page.fill("#brand", brand)
    page.fill("#email", f"boss@{brand}.cn")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(base + "/batches")
    return page


@pytest.fixture
def admin_page(browser: Any, console_server: str, acme: dict[str, int]) -> Iterator[Any]:
    page = _signed_in(browser, console_server, "acme")
    try:
        yield page
    finally:
        page.context.close()


def _text(page: Any, selector: str, contains: str) -> str:
    page.locator(selector, has_text=contains).first.wait_for(timeout=WAIT)
    return str(page.locator(selector, has_text=contains).first.inner_text())


def test_a_batch_is_issued_and_its_print_file_downloaded(
    admin_page: Any, console_server: str, tmp_path: Path
) -> None:
    page = admin_page
    assert page.inner_text("h1") == "批次与印刷文件"
    assert page.get_attribute("#nav-manage-batches", "aria-current") == "page"
    page.locator("#batch-product option", has_text="TEA-250").wait_for(state="attached")
    page.select_option("#batch-product", label="龙井 250g (TEA-250)")
    page.fill("#batch-lot", "L2026-12")
    page.fill("#batch-quantity", "0")
    page.click("#create-batch")
    # The API's refusal is shown next to the quantity field.
    assert _text(page, '[data-error-of="quantity"]', "1") == "不能小于 1。"
    assert page.get_attribute("#batch-quantity", "aria-invalid") == "true"
    page.fill("#batch-quantity", "37")
    page.click("#create-batch")
    page.wait_for_url("**/console/batches/*", timeout=WAIT)
    batch_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text("h1") == "批次 L2026-12"
    assert page.inner_text("#batch-quantity") == "37"
    assert "0 / 37" in page.inner_text("#batch-activation")

    page.select_option("#export-format", "csv")
    with page.expect_response(lambda r: r.url.endswith(f"/batches/{batch_id}/exports")) as sent:
        page.click("#start-export")
    export_id = sent.value.json()["id"]
    row = page.locator(f"#export-{export_id}[data-status=done]")
    row.wait_for(timeout=WAIT)
    assert row.locator(".export-status").inner_text() == "已完成"
    bar = row.locator("progress")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    _text(page, "#page-status", "可以下载")

    with page.expect_download() as info:
        page.click(f"#download-{export_id}")
    saved = tmp_path / "codes.csv"
    info.value.save_as(saved)
    assert info.value.suggested_filename.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert len(table) == 37
    assert [int(r["serial"]) for r in table] == list(range(1, 38))
    assert {r["lot"] for r in table} == {"L2026-12"}

    # A code of the file verifies, asked through the API as this signed-in user.
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    answer = page.request.post(
        console_server + "/api/v1/verify",
        data=json.dumps({"code": table[11]["url"]}),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    verified = answer.json()
    assert answer.status == 200 and verified["valid"] is True
    assert verified["batch_id"] == batch_id and verified["serial"] == 12

    # Back on the list, the batch is there.
    page.click("#nav-manage-batches")
    row = page.locator(f"#batch-{batch_id}", has_text="L2026-12")
    row.wait_for(timeout=WAIT)
    assert row.locator("td.activated").inner_text() == "0"  # nothing activated at the line yet
    assert page.problems == []


def test_a_campaign_is_created_from_the_form_and_scheduled(
    admin_page: Any, console_server: str
) -> None:
    page = admin_page
    page.click("#nav-manage-campaign-list")
    page.wait_for_url(console_server + "/campaigns")
    page.locator("#campaigns[data-loaded]").wait_for(state="attached", timeout=WAIT)
    page.locator("#c-skus option", has_text="TEA-250").wait_for(state="attached")
    page.fill("#c-name", "双十二扫码有礼")
    page.select_option("#c-skus", "TEA-250")
    page.fill("#c-regions", "CN-ZJ, CN-JS")
    page.fill("#c-points", "5")
    first = page.locator("#prize-table tbody tr").nth(0)
    first.locator('[data-prize="probability"]').fill("one in ten")
    page.fill("#c-budget", "500")
    page.click("#create-campaign")
    # The API names the prize's probability; the page shows it next to that field.
    error = first.locator('[data-error-of="draw.prizes.0.probability"]')
    error.wait_for(timeout=WAIT)
    assert error.inner_text() == "概率应为 0 到 1 之间的小数（如 0.000001）或分数（如 1/3）。"
    assert page.inner_text("#new-campaign .form-error") == "请修正标出的字段。"

    first.locator('[data-prize="probability"]').fill("1/10")
    page.click("#add-prize")
    third = page.locator("#prize-table tbody tr").nth(2)
    third.locator('[data-prize="name"]').fill("茶杯")
    third.locator('[data-prize="kind"]').select_option("goods")
    third.locator('[data-prize="probability"]').fill("0.001")
    third.locator('[data-prize="stock"]').fill("20")
    third.locator('[data-prize="value"]').fill("25.50")
    page.click("#create-campaign")
    # The odds add up to more than one: said by the prize table.
    _text(page, '[data-error-for="draw.prizes"]', "1")
    page.locator("#prize-table tbody tr").nth(1).locator('[data-prize="probability"]').fill("0.899")
    page.click("#create-campaign")
    page.wait_for_url("**/console/campaigns/*", timeout=WAIT)
    assert page.inner_text("h1") == "双十二扫码有礼"
    _text(page, "#campaign-status", "草稿")
    assert "TEA-250" in page.inner_text("#campaign-targeting")
    assert "浙江、江苏" in page.inner_text("#campaign-targeting")  # regions by name
    assert page.inner_text("#campaign-points") == "5"

    page.click("#campaign-schedule")
    _text(page, "#campaign-status", "进行中")
    _text(page, "#page-status", "活动现为：进行中")
    assert len(page.inner_text("#campaign-seed")) == 64  # the seed's commitment, published
    assert page.is_visible("#campaign-pause") and not page.is_visible("#campaign-schedule")
    pool = page.locator("#pool-p3")
    pool.wait_for(timeout=WAIT)
    assert pool.locator("td.left").inner_text() == "20"
    _text(page, "#budget-text", "¥500.00")

    page.click("#campaign-pause")
    _text(page, "#campaign-status", "已暂停")
    page.click("#campaign-resume")
    _text(page, "#campaign-status", "进行中")

    page.click("#nav-manage-campaign-list")
    row = page.locator("#campaigns tbody tr", has_text="双十二扫码有礼")
    row.wait_for(timeout=WAIT)
    assert "进行中" in row.inner_text()
    assert page.problems == []


def test_a_member_is_found_by_phone_and_seen_in_360(
    admin_page: Any, console_server: str, acme: dict[str, int]
) -> None:
    page = admin_page
    page.click("#nav-manage-member-search")
    page.wait_for_url(console_server + "/members")
    page.fill("#search-phone", "138 0000 0000")
    page.click("#search-member")
    _text(page, "#members tbody", "没有找到该手机号的会员")

    page.fill("#search-phone", "138 1234 5678")
    page.click("#search-member")
    row = page.locator(f"#member-{acme['member']}")
    row.wait_for(timeout=WAIT)
    assert row.locator(".phone").inner_text() == "138****5678"
    assert PHONE not in page.content()

    row.locator("a.open-member").click()
    page.wait_for_url(f"{console_server}/members/{acme['member']}")
    _text(page, "#member-phone", "138****5678")
    assert page.inner_text("#points-active") == "120"
    history = page.locator("#member-history tbody tr", has_text="欢迎积分")
    history.wait_for(timeout=WAIT)
    assert "+120" in history.inner_text() and "人工调整" in history.inner_text()

    # An admin holds pii: the number is shown on request (the API audits it).
    with page.expect_response(lambda r: r.url.endswith("/phone")):
        page.click("#reveal-phone")
    _text(page, "#member-phone", PHONE)
    audit = page.request.get(console_server + "/api/v1/members/" + str(acme["member"]))
    assert audit.ok
    assert page.problems == []


def test_an_alert_rule_is_created_and_tested(
    admin_page: Any, console_server: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    page = admin_page
    page.click("#nav-manage-alert-rules")
    page.wait_for_url(console_server + "/alert-rules")
    page.locator("#alert-rules[data-loaded]").wait_for(state="attached", timeout=WAIT)
    page.fill("#rule-name", "窜货告警")
    page.select_option("#rule-channel", "webhook")
    page.fill("#rule-target", url)
    page.click("#save-rule")
    # No kind chosen: the API's error is shown by the kinds.
    page.locator('[data-error-of="kinds"]').wait_for(timeout=WAIT)

    page.check("#rule-kind-diversion")
    page.check("#rule-kind-clone_suspected")
    page.fill("#rule-min-count", "3")
    page.click("#save-rule")
    _text(page, "#page-status", "已创建规则 窜货告警")
    secret = page.inner_text("#rule-secret")
    assert secret.startswith("Webhook 签名密钥") and len(secret.splitlines()[-1]) >= 20
    row = page.locator("#alert-rules tbody tr", has_text="窜货告警")
    row.wait_for(timeout=WAIT)
    assert "疑似克隆码" in row.inner_text() and "≥ 3" in row.inner_text()

    row.locator("button", has_text="发送测试").click()
    _text(page, "#page-status", "测试通知已发送")
    # It arrived, signed with the secret the page showed.
    assert len(received) == 1
    stamp, mac = (p.split("=", 1)[1] for p in received[0]["headers"]["X-Yima-Signature"].split(","))
    key = secret.splitlines()[-1].strip().encode()
    assert hmac.compare_digest(
        mac, hmac.new(key, stamp.encode() + b"." + received[0]["body"], hashlib.sha256).hexdigest()
    )
    page.locator("#notifications tbody tr", has_text="已发送").wait_for(timeout=WAIT)

    # Edit: disable it; the table says so.
    row.locator("button", has_text="编辑").click()
    assert page.input_value("#rule-name") == "窜货告警"
    page.uncheck("#rule-enabled")
    page.click("#save-rule")
    _text(page, "#page-status", "已保存规则 窜货告警")
    page.locator("#alert-rules tbody tr", has_text="停用").wait_for(timeout=WAIT)
    assert page.is_hidden("#rule-secret")  # the secret was shown once
    assert page.problems == []


def test_products_distributors_tiers_catalogue_and_keys(
    admin_page: Any, console_server: str
) -> None:
    page = admin_page
    # A product: a GTIN of the wrong length is named by its field, then one is added.
    page.click("#nav-manage-products")
    page.wait_for_url(console_server + "/products")
    page.locator("#products tbody tr", has_text="TEA-250").wait_for(timeout=WAIT)
    page.fill("#product-sku", "TEA-500")
    page.fill("#product-name", "龙井 500g")
    page.fill("#product-gtin", "123")
    page.click("#create-product")
    page.locator('[data-error-of="gtin"]').wait_for(timeout=WAIT)
    page.fill("#product-gtin", "")
    page.click("#create-product")
    _text(page, "#page-status", "已创建产品 龙井 500g")
    page.locator("#products tbody tr", has_text="TEA-500").wait_for(timeout=WAIT)

    # A distributor with its regions, then the regions changed.
    page.click("#nav-manage-distributors")
    page.wait_for_url(console_server + "/distributors")
    page.fill("#distributor-code", "ZJ-01")
    page.fill("#distributor-name", "浙江总代")
    page.select_option("#distributor-level", "provincial")
    page.fill("#distributor-regions", "CN-ZJ")
    page.click("#create-distributor")
    _text(page, "#page-status", "已创建经销商 ZJ-01")
    row = page.locator("#distributors tbody tr", has_text="ZJ-01")
    row.wait_for(timeout=WAIT)
    assert "浙江" in row.inner_text() and "省级" in row.inner_text()
    row.locator("button", has_text="编辑").click()
    page.fill("#edit-regions", "CN-ZJ\nCN-JS")
    page.click("#save-distributor")
    _text(page, "#page-status", "已保存经销商 ZJ-01")
    page.locator("#distributors tbody tr", has_text="江苏").wait_for(timeout=WAIT)

    # A tier and a catalogue item.
    page.click("#nav-manage-loyalty")
    page.wait_for_url(console_server + "/loyalty")
    page.fill("#tier-rank", "1")
    page.fill("#tier-name", "金卡")
    page.fill("#tier-growth", "1000")
    page.click("#create-tier")
    _text(page, "#page-status", "已新增等级 金卡")
    page.locator("#tiers tbody tr", has_text="金卡").wait_for(timeout=WAIT)
    page.select_option("#item-kind", "coupon")
    page.fill("#item-name", "满50减5元券")
    page.fill("#item-cost", "50")
    page.fill("#item-face", "5")
    page.click("#create-item")
    _text(page, "#page-status", "已新增商品 满50减5元券")
    item = page.locator("#catalogue tbody tr", has_text="满50减5元券")
    item.wait_for(timeout=WAIT)
    assert "¥5.00" in item.inner_text() and "在售" in item.inner_text()
    item.locator("button", has_text="下架").click()
    page.locator("#catalogue tbody tr", has_text="已下架").wait_for(timeout=WAIT)

    # The review queue is empty; an API key is shown once.
    page.click("#nav-manage-reviews")
    _text(page, "#reviews tbody", "审核队列为空")
    page.click("#nav-manage-api-keys")
    page.fill("#key-name", "ERP")
    page.select_option("#key-role", "analyst")
    page.click("#create-key")
    token = page.inner_text("#key-token")
    assert token.startswith("yk_")
    page.click("#nav-manage-api-keys")
    page.locator("#api-keys tbody tr", has_text="ERP").wait_for(timeout=WAIT)
    assert token not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#api-keys tbody tr", has_text="ERP").locator("button", has_text="吊销").click()
    _text(page, "#keys-message", "密钥已吊销")
    assert page.problems == []


def test_held_rewards_are_released_and_denied_from_the_queue(
    runtime: Runtime, browser: Any, console_server: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime, slug="bohea", count=1)
        core_services.create_user(
            session,
            tenant_id=brand.tenant_id,
            email="boss@bohea.cn",
            role="admin",
            password=PASSWORD,
        )
        spec = config(
            starts_at=(now - dt.timedelta(hours=1)).isoformat(),
            ends_at=(now + dt.timedelta(days=9)).isoformat(),
            fraud={"member_velocity": {"max": 1, "window_seconds": 3600, "action": "hold"}},
        )
        made = campaigns.create_campaign(session, tenant_id=brand.tenant_id, raw=spec, actor="t")
        campaigns.schedule_campaign(
            session, runtime, tenant_id=brand.tenant_id, campaign_id=made.id
        )
    whys = []
    for serial in (1, 2, 3):
        with runtime.db.unit_of_work() as session:
            whys.append(scan_reward(session, runtime, brand, people[0], serial, now=now).why)
    assert whys == ["earned", "held", "held"]

    page = _signed_in(browser, console_server, "bohea")
    try:
        page.click("#nav-manage-reviews")
        page.wait_for_url(console_server + "/reviews")
        held = page.locator("#reviews tbody tr[id^=review-]")
        held.first.wait_for(timeout=WAIT)
        assert held.count() == 2
        assert "member_velocity" in held.first.inner_text()
        first_id = held.first.get_attribute("id")
        held.first.locator("input[name=note]").fill("熟客，放行")
        held.first.locator("button", has_text="放行").click()
        _text(page, "#page-status", "放行")
        page.locator(f"#{first_id}").wait_for(state="detached", timeout=WAIT)
        held.first.locator("button", has_text="拒绝").click()
        _text(page, "#reviews tbody", "审核队列为空")
        page.reload()
        _text(page, "#reviews tbody", "审核队列为空")  # decided for good
        assert page.problems == []
    finally:
        page.context.close()
