"""The management forms in a real browser (headless Chromium), in Chinese: a campaign whose
prize is worth more than the legal cap is refused with the Chinese message next to the prize's
value; regions are chosen and shown by name (浙江), not code; a draft campaign is edited from its
page, and once it runs, an edit of its odds is refused with the API's message while a new name
is saved."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

import campaigns
import codegen
from core import services as core_services
from core.runtime import Runtime
from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium

PASSWORD = "correct horse battery"
WAIT = 15_000


@pytest.fixture
def acme(runtime: Runtime) -> dict[str, int]:
    now = dt.datetime.now(dt.UTC)
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        core_services.create_user(
            session, tenant_id=tenant.id, email="boss@acme.cn", role="admin", password=PASSWORD
        )
        codegen.create_product(session, tenant_id=tenant.id, sku="TEA-250", name="龙井 250g")
        draft = campaigns.create_campaign(
            session,
            tenant_id=tenant.id,
            raw={
                "name": "元旦扫码",
                "priority": 200,
                "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
                "ends_at": (now + dt.timedelta(days=20)).isoformat(),
                "targeting": {"regions": ["CN-ZJ"]},
                "draw": {
                    "prizes": [
                        {
                            "key": "cup",
                            "name": "茶杯",
                            "kind": "goods",
                            "value_fen": 2550,
                            "stock": 20,
                            "probability": "0.01",
                        },
                        {"key": "thanks", "name": "谢谢", "kind": "thanks", "probability": "0.99"},
                    ],
                    "fallback": "thanks",
                    "budget_fen": 100_000,
                },
            },
            actor="tests",
        )
        return {"tenant": tenant.id, "draft": draft.id}


@pytest.fixture
def page(browser: Any, console_server: str, acme: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 768})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    page.goto(console_server + "/campaigns")
    page.fill("#brand", "acme")
    page.fill("#email", "boss@acme.cn")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(console_server + "/campaigns")
    try:
        yield page
    finally:
        context.close()


def test_a_prize_above_the_legal_cap_is_refused_in_chinese_next_to_its_value(page: Any) -> None:
    page.locator("#campaigns[data-loaded]").wait_for(state="attached", timeout=WAIT)
    page.fill("#c-name", "双旦大奖")
    page.select_option("#c-region-pick", ["CN-ZJ", "CN-JS"])
    page.click("#add-prize")
    third = page.locator("#prize-table tbody tr").nth(2)
    third.locator('[data-prize="name"]').fill("黄金")
    third.locator('[data-prize="kind"]').select_option("goods")
    third.locator('[data-prize="probability"]').fill("0.000001")
    second = page.locator("#prize-table tbody tr").nth(1)
    second.locator('[data-prize="probability"]').fill("0.899999")
    third.locator('[data-prize="stock"]').fill("1")
    third.locator('[data-prize="value"]').fill("60000")
    page.click("#create-campaign")
    error = third.locator('[data-error-of="draw.prizes.2.value_fen"]')
    error.wait_for(timeout=WAIT)
    assert error.inner_text() == (
        "奖品价值 ¥60,000.00，超过抽奖式有奖销售的法定上限 ¥50,000.00（《反不正当竞争法》第十条）。"
    )
    assert third.locator('[data-prize="value"]').get_attribute("aria-invalid") == "true"
    assert page.inner_text("#new-campaign .form-error") == "请修正标出的字段。"

    # Fixed, it is created; its regions are shown by name.
    third.locator('[data-prize="value"]').fill("500")
    page.fill("#c-regions", "CN-ZJ/杭州市")
    assert page.inner_text("#new-campaign .region-names") == "已选：浙江 杭州市"
    page.click("#create-campaign")
    page.wait_for_url("**/console/campaigns/*", timeout=WAIT)
    targeting = page.locator("#campaign-targeting", has_text="浙江")
    targeting.wait_for(timeout=WAIT)
    assert "区域: 江苏、浙江、浙江 杭州市" in targeting.inner_text()  # in the list's order
    assert "CN-" not in targeting.inner_text()
    assert page.problems == []


def test_a_campaign_is_edited_and_a_running_ones_odds_are_refused(
    page: Any, console_server: str, acme: dict[str, int]
) -> None:
    page.goto(f"{console_server}/campaigns/{acme['draft']}")
    form = page.locator("#edit-campaign")
    # The form holds the campaign as stored.
    page.locator("#edit-campaign #prize-table tbody tr").nth(1).wait_for(timeout=WAIT)
    assert page.input_value("#c-name") == "元旦扫码"
    assert page.input_value("#c-budget") == "1000.00"
    cup = page.locator("#prize-table tbody tr").nth(0)
    assert cup.locator('[data-prize="value"]').input_value() == "25.50"
    assert page.eval_on_selector(
        "#c-region-pick", "s => Array.from(s.selectedOptions).map(o => o.textContent)"
    ) == ["浙江"]

    # A draft changes freely: more cups, at better odds, and a new name.
    page.fill("#c-name", "元旦扫码有礼")
    cup.locator('[data-prize="stock"]').fill("50")
    cup.locator('[data-prize="probability"]').fill("0.02")
    page.locator("#prize-table tbody tr").nth(1).locator('[data-prize="probability"]').fill("0.98")
    page.click("#save-campaign")
    page.locator("#page-status", has_text="已保存活动 元旦扫码有礼").wait_for(timeout=WAIT)
    page.locator("#pool-cup td", has_text="50").first.wait_for(timeout=WAIT)
    assert page.inner_text("h1") == "元旦扫码有礼"

    # Scheduled (its window has begun: running), the odds are bound by the commitment.
    page.click("#campaign-schedule")
    page.locator("#campaign-status", has_text="进行中").wait_for(timeout=WAIT)
    cup.locator('[data-prize="probability"]').fill("0.5")
    page.locator("#prize-table tbody tr").nth(1).locator('[data-prize="probability"]').fill("0.5")
    page.click("#save-campaign")
    refusal = form.locator('[data-error-of="draw"]')
    refusal.wait_for(timeout=WAIT)
    assert refusal.inner_text() == "活动排期后不能更改。"
    assert "受已公布的抽奖承诺约束，不能更改" in page.inner_text("#edit-campaign .form-error")

    # What the API allows of a running campaign is saved: the name, with the odds put back.
    cup.locator('[data-prize="probability"]').fill("0.02")
    page.locator("#prize-table tbody tr").nth(1).locator('[data-prize="probability"]').fill("0.98")
    page.fill("#c-name", "元旦扫码（延续）")
    page.click("#save-campaign")
    page.locator("#page-status", has_text="已保存活动 元旦扫码（延续）").wait_for(timeout=WAIT)
    page.reload()
    assert page.inner_text("h1") == "元旦扫码（延续）"
    page.locator("#campaign-status", has_text="进行中").wait_for(timeout=WAIT)
    assert page.problems == []


def test_catalogue_stock_is_added_from_the_page(page: Any, console_server: str) -> None:
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    made = page.request.post(
        console_server + "/api/v1/catalogue/items",
        data=json.dumps({"kind": "goods", "name": "紫砂壶", "points_cost": 800, "stock": 3}),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    item_id = made.json()["id"]
    page.click("#nav-manage-loyalty")
    page.wait_for_url(console_server + "/loyalty")
    form = page.locator(f"#restock-{item_id}")
    form.wait_for(timeout=WAIT)
    form.locator('input[name="add"]').fill("0")
    form.locator("button").click()
    error = form.locator('[data-error-of="add"]')
    error.wait_for(timeout=WAIT)
    assert error.inner_text() == "请输入非零整数。"
    form.locator('input[name="add"]').fill("7")
    form.locator("button").click()
    page.locator("#page-status", has_text="紫砂壶 库存现为 10").wait_for(timeout=WAIT)
    page.locator(f"#item-{item_id} td", has_text="10").first.wait_for(timeout=WAIT)
    assert page.problems == []


def test_a_distributors_regions_are_chosen_by_name(page: Any, console_server: str) -> None:
    page.goto(console_server + "/distributors")
    page.fill("#distributor-code", "ZJ-01")
    page.fill("#distributor-name", "浙江总代")
    page.select_option("#distributor-level", "provincial")
    page.select_option("#distributor-region-pick", label="浙江")
    page.fill("#distributor-regions", "CN-ZJ/杭州市")
    assert page.inner_text("#new-distributor .region-names") == "已选：浙江 杭州市"
    page.click("#create-distributor")
    row = page.locator("#distributors tbody tr", has_text="ZJ-01")
    row.wait_for(timeout=WAIT)
    assert "浙江、浙江 杭州市" in row.inner_text() and "CN-" not in row.inner_text()

    # Edited: the list holds the provinces it has, the field below the rest.
    row.locator("button", has_text="编辑").click()
    chosen = "s => Array.from(s.selectedOptions).map(o => o.textContent)"
    assert page.eval_on_selector("#edit-region-pick", chosen) == ["浙江"]
    assert page.input_value("#edit-regions") == "CN-ZJ/杭州市"
    page.select_option("#edit-region-pick", label=["浙江", "江苏"])
    page.fill("#edit-regions", "")
    page.click("#save-distributor")
    page.locator("#page-status", has_text="已保存经销商 ZJ-01").wait_for(timeout=WAIT)
    page.locator("#distributors tbody tr", has_text="江苏").wait_for(timeout=WAIT)
    assert "江苏、浙江" in page.locator("#distributors tbody tr", has_text="ZJ-01").inner_text()
    assert page.problems == []
