"""The management pages' forms: regions chosen and shown by name in the reader's language, a
campaign's own page offering its edit form (a draft: everything; once scheduled: what the API
allows), catalogue stock added from the tiers & catalogue page, and the one console.js that the
dashboards and the management pages share."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import json
import re
from collections.abc import Callable
from typing import Any

import campaigns
from console.manage_texts import MANAGE_TEXTS
from core.runtime import Runtime
from tests.console.conftest import Browser, Staff

ZH = {"Accept-Language": "zh-CN"}


def _config(html: str) -> dict[str, Any]:
    found = re.search(r"id=\"manage\" data-config='([^']*)'", html)
    assert found, "the page hands its script a config"
    config: dict[str, Any] = json.loads(html_lib.unescape(found.group(1)))
    return config


def test_regions_are_chosen_and_named_in_the_readers_language(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    zh = browser.client.get("/distributors").get_data(as_text=True)
    assert '<option value="CN-ZJ">浙江</option>' in zh
    assert '<option value="CN">全国</option>' in zh
    assert _config(zh)["regions"]["CN-GD"] == "广东"
    en = browser.client.get("/distributors?lang=en").get_data(as_text=True)
    assert '<option value="CN-ZJ">Zhejiang</option>' in en
    assert _config(en)["regions"]["CN-GD"] == "Guangdong"
    # The campaign form chooses its regions by name too.
    form = browser.client.get("/campaigns?lang=zh").get_data(as_text=True)
    picker = re.search(r'<select id="c-region-pick".*?</select>', form, re.DOTALL)
    assert picker and '<option value="CN-JS">江苏</option>' in picker.group(0)


def _campaign(runtime: Runtime, staff: Staff, *, schedule: bool = False, end: bool = False) -> int:
    now = dt.datetime.now(dt.UTC)
    with runtime.db.unit_of_work() as session:
        made = campaigns.create_campaign(
            session,
            tenant_id=staff.tenant_id,
            raw={
                "name": "春茶",
                "starts_at": (now - dt.timedelta(minutes=1)).isoformat(),
                "ends_at": (now + dt.timedelta(days=5)).isoformat(),
                "priority": 100 + 10 * schedule + 20 * end,
            },
            actor="tests",
        )
        if schedule or end:
            campaigns.schedule_campaign(
                session, runtime, tenant_id=staff.tenant_id, campaign_id=made.id
            )
        if end:
            campaigns.end_campaign(session, runtime, tenant_id=staff.tenant_id, campaign_id=made.id)
        return made.id


def test_a_campaigns_page_offers_its_edit_form_while_it_may_change(
    runtime: Runtime, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    draft = _campaign(runtime, acme)
    running = _campaign(runtime, acme, schedule=True)
    ended = _campaign(runtime, acme, end=True)
    zh = MANAGE_TEXTS["zh"]
    admin = signed_in(acme.users["admin"])

    page = admin.client.get(f"/campaigns/{draft}").get_data(as_text=True)
    assert '<form id="edit-campaign"' in page and 'id="save-campaign"' in page
    assert zh["edit_campaign_draft_hint"] in page
    assert _config(page)["campaign_id"] == draft

    page = admin.client.get(f"/campaigns/{running}").get_data(as_text=True)
    assert '<form id="edit-campaign"' in page
    assert html_lib.unescape(zh["edit_campaign_live_hint"]) in html_lib.unescape(page)

    page = admin.client.get(f"/campaigns/{ended}").get_data(as_text=True)
    assert 'id="edit-campaign"' not in page  # an ended campaign cannot change

    # A role that reads campaigns but may not change them gets no form.
    service = signed_in(acme.users["customer_service"])
    seen = service.client.get(f"/campaigns/{draft}")
    assert seen.status_code == 200 and 'id="edit-campaign"' not in seen.get_data(as_text=True)


def test_catalogue_stock_is_added_with_errors_in_the_readers_language(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    page = browser.client.get("/loyalty").get_data(as_text=True)
    assert _config(page)["texts"]["add_stock"] == "补货"

    def item(stock: int | None) -> int:
        answer = browser.client.post(
            "/api/v1/catalogue/items",
            json={"kind": "goods", "name": f"Cup {stock}", "points_cost": 100, "stock": stock},
            headers={"X-CSRF-Token": browser.csrf},
        )
        assert answer.status_code == 201, answer.get_json()
        item_id: int = answer.get_json()["id"]
        return item_id

    def restock(item_id: int, add: int) -> Any:
        return browser.client.post(
            f"/api/v1/catalogue/items/{item_id}/stock",
            json={"add": add},
            headers={"X-CSRF-Token": browser.csrf, **ZH},
        )

    limited, unlimited = item(3), item(None)
    added = restock(limited, 7)
    assert added.status_code == 200 and added.get_json()["stock"] == 10
    assert restock(limited, 0).get_json()["errors"] == {"add": "请输入非零整数。"}
    short = restock(limited, -11)
    assert short.status_code == 409 and short.get_json()["errors"] == {"add": "库存只有 10。"}
    assert restock(unlimited, 5).get_json()["errors"] == {"add": "此商品库存不限，无需补货。"}
    listed = browser.client.get(f"/api/v1/catalogue/items/{limited}").get_json()
    assert listed["stock"] == 10


def test_the_dashboards_and_management_pages_share_console_js(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    for path, script in (("/products", "manage.js"), ("/dashboards/overview", "dashboards.js")):
        answer = browser.client.get(path)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200, path
        head = html.split("</head>")[0]
        # console.js first (in <head>, deferred: run in order), then the page's own script.
        assert re.search(r'<script src="[^"]*console\.js\?v=\w+" defer></script>', head), path
        assert html.index("console.js?v=") < html.index(f"{script}?v="), path
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert not re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
    static = browser.client.application.static_folder
    assert static is not None
    for name in ("manage.js", "dashboards.js"):
        with open(f"{static}/{name}", encoding="utf-8") as source:
            code = source.read()
        # The setup lives in console.js only: no fetch wrapper, CSRF lookup or config parsing.
        assert "fetch(" not in code.replace('fetch(url, { credentials: "same-origin" })', "")
        assert "csrf-token" not in code and "X-CSRF-Token" not in code
        assert "JSON.parse(root" not in code and "yima.page(" in code
