"""The dashboard pages: who may open which, the shell's navigation, the filter bar carried in
the URL into the page's API calls and its CSV link, the language, and no inline script."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

import codegen
from core.runtime import Runtime
from tests.campaigns.helpers import live_campaign
from tests.console.conftest import Browser, Staff
from tests.factories import Brand

PAGES = ("overview", "map", "diversion", "counterfeit", "campaigns", "members", "production")
# Who sees which page (as the dashboards' API decides).
ALLOWED = {
    "admin": set(PAGES),
    "analyst": set(PAGES),
    "factory_operator": {"production"},
    "customer_service": {"members"},
    "distributor": {"diversion"},
}


def _config(text: str) -> dict[str, Any]:
    found = re.search(r"data-config='([^']*)'", text)
    assert found, "the page hands its settings to the script"
    config: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return config


def _nav(text: str) -> list[str]:
    return re.findall(r'id="nav-dash-([a-z]+)"', text)


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_role_opens_the_pages_it_may_and_is_refused_the_others(
    acme: Staff, signed_in: Callable[[int], Browser], role: str
) -> None:
    client = signed_in(acme.users[role]).client
    for page in PAGES:
        answer = client.get(f"/dashboards/{page}")
        if page in ALLOWED[role]:
            assert answer.status_code == 200, (role, page)
            assert f'id="dashboard" data-page="{page}"' in answer.text
            assert _config(answer.text)["endpoint"] == f"/dashboards/{page}"
            # The navigation lists exactly the dashboards this role may open.
            assert set(_nav(answer.text)) == ALLOWED[role]
            assert 'aria-current="page">' in answer.text
        else:
            assert answer.status_code == 403, (role, page)
            assert 'id="error-title"' in answer.text


def test_the_api_agrees_with_the_pages(acme: Staff, signed_in: Callable[[int], Browser]) -> None:
    """What a page shows a role, the API answers it (and what it hides, the API refuses)."""
    for role, allowed in ALLOWED.items():
        client = signed_in(acme.users[role]).client
        for page in PAGES:
            answer = client.get(f"/api/v1/dashboards/{page}")
            assert (answer.status_code == 200) == (page in allowed), (role, page, answer.text)


def test_a_visitor_is_sent_to_sign_in_and_back(app: Flask, acme: Staff) -> None:
    answer = app.test_client().get("/dashboards/map?region=CN-ZJ")
    assert answer.status_code == 303
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/sign-in"
    assert parse_qs(location.query)["next"] == ["/dashboards/map?region=CN-ZJ"]


def test_the_dashboards_home_opens_the_first_page_the_role_may_see(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    answer = signed_in(acme.users["factory_operator"]).client.get("/dashboards?from=2026-12-01")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/dashboards/production?from=2026-12-01")
    answer = signed_in(acme.users["admin"]).client.get("/dashboards")
    assert answer.headers["Location"].endswith("/dashboards/overview")


def test_the_filters_in_the_url_are_carried_into_the_page(
    runtime: Runtime, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    with runtime.db.unit_of_work() as session:
        product = codegen.create_product(
            session, tenant_id=acme.tenant_id, sku="LJ-250", name="龙井 250 g", gtin=None
        )
        batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=acme.tenant_id,
            product_id=product.id,
            lot="L2026A",
            quantity=100,
            url_form="short",
        )
    client = signed_in(acme.users["analyst"]).client
    query = f"from=2026-11-01&to=2026-11-30&sku=LJ-250&batch_id={batch.id}&region=CN-ZJ"
    answer = client.get(f"/dashboards/map?{query}&metric=diverted")
    assert answer.status_code == 200
    text = answer.text
    config = _config(text)
    assert config["query"] == {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "sku": "LJ-250",
        "batch_id": str(batch.id),
        "region": "CN-ZJ",
    }
    assert config["extra"] == {"metric": "diverted"}
    # The filter bar shows the choices, and offers the brand's products, batches and provinces.
    assert 'name="from" id="f-from" value="2026-11-01"' in text
    assert 'name="to" id="f-to" value="2026-11-30"' in text
    assert '<option value="LJ-250" selected>龙井 250 g (LJ-250)</option>' in text
    assert f'<option value="{batch.id}" selected>#{batch.id} · L2026A</option>' in text
    assert '<option value="CN-ZJ" selected>浙江</option>' in text
    assert 'id="metric-diverted" data-metric="diverted"' in text
    # The CSV link is the same API with the same filters.
    csv_href = html.unescape(re.search(r'id="export-csv" href="([^"]+)"', text).group(1))  # type: ignore[union-attr]
    parts = urlsplit(csv_href)
    assert parts.path == "/api/v1/dashboards/map"
    assert parse_qs(parts.query) == {
        "from": ["2026-11-01"],
        "to": ["2026-11-30"],
        "sku": ["LJ-250"],
        "batch_id": [str(batch.id)],
        "region": ["CN-ZJ"],
        "format": ["csv"],
    }
    exported = client.get(csv_href)
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    # A preset keeps the other filters and sets the period.
    preset = html.unescape(re.search(r'id="preset-7d" href="([^"]+)"', text).group(1))  # type: ignore[union-attr]
    kept = parse_qs(urlsplit(preset).query)
    assert kept["sku"] == ["LJ-250"] and kept["region"] == ["CN-ZJ"]
    assert kept["metric"] == ["diverted"] and "from" in kept and "to" in kept


def test_without_filters_the_bar_shows_the_last_30_days(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    text = signed_in(acme.users["admin"]).client.get("/dashboards/overview").text
    assert _config(text)["query"] == {}
    assert re.search(r'id="preset-30d" href="[^"]*" aria-current="true"', text)
    assert 'class="chip on" id="preset-30d"' in text


def test_a_campaign_can_be_chosen_by_those_who_see_campaigns(
    runtime: Runtime, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    with runtime.db.unit_of_work() as session:
        brand = Brand(acme.tenant_id, acme.slug, "", 0, 0)
        campaign = live_campaign(session, runtime, brand, name="双十二扫码抽奖")
    analyst = signed_in(acme.users["analyst"]).client.get(
        f"/dashboards/campaigns?campaign_id={campaign.id}"
    )
    assert f'<option value="{campaign.id}" selected>双十二扫码抽奖</option>' in analyst.text
    assert 'id="review-queue"' in analyst.text
    config = _config(analyst.text)
    assert config["can"] == {
        "review_diversion": False,
        "campaigns": True,
        "review_rewards": False,
    }
    operator = signed_in(acme.users["factory_operator"]).client.get("/dashboards/production")
    assert 'id="f-campaign"' not in operator.text
    assert _config(operator.text)["can"]["campaigns"] is False


def test_only_roles_that_may_review_get_the_review_actions(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    admin = _config(signed_in(acme.users["admin"]).client.get("/dashboards/diversion").text)
    analyst = _config(signed_in(acme.users["analyst"]).client.get("/dashboards/diversion").text)
    dealer = signed_in(acme.users["distributor"]).client.get("/dashboards/diversion")
    assert admin["can"]["review_diversion"] is True
    assert analyst["can"]["review_diversion"] is False
    assert _config(dealer.text)["can"]["review_diversion"] is False
    # A distributor chooses no product, batch or campaign of the brand.
    assert 'id="f-sku"' not in dealer.text and 'id="f-campaign"' not in dealer.text


def test_pages_speak_chinese_by_default_and_english_on_request(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    client = signed_in(acme.users["admin"]).client
    zh = client.get("/dashboards/overview")
    assert '<h1 id="dash-title">扫码概览</h1>' in zh.text
    assert "导出 CSV" in zh.text and _config(zh.text)["texts"]["genuine"] == "正品"
    en = client.get("/dashboards/overview?lang=en")
    assert '<h1 id="dash-title">Scans overview</h1>' in en.text
    assert "Export CSV" in en.text and _config(en.text)["texts"]["genuine"] == "Genuine"
    assert '<option value="CN-ZJ">Zhejiang</option>' in en.text
    # The shell's other pages list the dashboards too.
    assert 'id="nav-dash-map"' in client.get("/account").text


def test_pages_carry_no_inline_script_and_the_csp_allows_none(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    client = signed_in(acme.users["admin"]).client
    for page in PAGES:
        answer = client.get(f"/dashboards/{page}")
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", answer.text, re.S)
        assert scripts, page
        for attrs, body in scripts:
            assert 'src="' in attrs and body.strip() == "", (page, attrs)
        assert not re.search(r"\son[a-z]+=", answer.text), page  # no inline handlers
        assert not re.search(r'\sstyle="', answer.text), page  # no inline style either
        sources = re.findall(r'<script src="([^"]+)"', answer.text)
        for src in sources:
            served = client.get(src)
            served.close()
            assert served.status_code == 200, src


def test_the_script_and_the_map_are_served(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    client = signed_in(acme.users["admin"]).client
    config = _config(client.get("/dashboards/map").text)
    geo = client.get(config["map_url"])
    assert geo.status_code == 200
    names = {f["properties"]["name"] for f in geo.get_json()["features"]}
    geo.close()
    # Every province the figures name has its shape on the map.
    assert {p["map"] for p in config["provinces"].values()} <= names
    assert config["provinces"]["CN-ZJ"] == {"map": "浙江", "label": "浙江"}
