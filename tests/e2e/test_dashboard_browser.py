"""The dashboards in a real browser (headless Chromium driven by Playwright), both apps served
as ``yima serve`` does (scan app at /, console under /console): two phones in Nanjing scan tins
shipped to a Zhejiang distributor; after the rollups' refresh and the diversion evaluation (what
the worker does every minute) the brand's admin sees the scans in the overview's totals and
chart, Jiangsu coloured on the map, and confirms the diversion alert with the evidence in view."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.sync_api import expect

import anti_fraud
import codegen
import console
import members
from core import services as core_services
from core.runtime import Runtime
from tests.e2e.browser import needs_chromium
from tests.factories import Brand, make_brand

pytestmark = needs_chromium

PASSWORD = "correct horse battery"
HOST = "yima.example.com"
NANJING = {"latitude": 32.060, "longitude": 118.797}


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    """A brand with an admin user, and tins 1-5 shipped to its Zhejiang distributor."""
    with runtime.db.unit_of_work() as session:
        made = make_brand(session, runtime, quantity=50)
        core_services.create_user(
            session, tenant_id=made.tenant_id, email="boss@acme.cn", role="admin", password=PASSWORD
        )
    with console.create_app().test_client() as http:
        headers = {"Authorization": f"Bearer {made.admin_token}"}
        dealer = http.post(
            "/api/v1/trace/distributors",
            headers=headers,
            json={
                "code": "ZJ-01",
                "name": "浙江总经销",
                "level": "provincial",
                "regions": ["CN-ZJ"],
            },
        )
        assert dealer.status_code == 201, dealer.get_json()
        shipped = http.post(
            "/api/v1/trace/shipments",
            headers=headers,
            json={
                "reference": "DN-2026-118",
                "to_distributor_id": dealer.get_json()["id"],
                "units": _urls(runtime, made, 1, 2, 3, 4, 5),
            },
        )
        assert shipped.status_code == 201, shipped.get_json()
    return made


def _urls(runtime: Runtime, brand: Brand, *serials: int) -> list[str]:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return [
            codegen.code_for_serial(runtime, batch=batch, gtin=None, serial=s, host=HOST).url
            for s in serials
        ]


def _watch(page: Any) -> list[str]:
    """Script errors and CSP refusals of the page (a refused request is not one)."""
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


def _scan_in_nanjing(browser: Any, url: str) -> None:
    """A phone in Nanjing scans the tin and shares its location."""
    phone = browser.new_context(
        locale="zh-CN",
        geolocation=NANJING,
        permissions=["geolocation"],
        viewport={"width": 390, "height": 844},
    )
    page = phone.new_page()
    page.goto(url)
    assert page.get_attribute("#verdict", "data-verdict") == "genuine"
    page.click("#locate-button")
    page.locator("#locate-result:not(:empty)").wait_for(timeout=15_000)
    assert "南京" in page.inner_text("#locate-result")
    phone.close()


def _series_total(page: Any, chart_id: str, series: int = 0) -> Any:
    return page.evaluate(
        """([id, i]) => {
            const chart = echarts.getInstanceByDom(document.getElementById(id));
            return chart.getOption().series[i].data
                .map((d) => (typeof d === 'object' ? d.value : d)).reduce((a, b) => a + b, 0);
        }""",
        [chart_id, series],
    )


def _fill(page: Any, name: str, chart: str = "chart-map") -> Any:
    """The colour a map paints a place (its feature name: 江苏, 西藏; CN, FR on the world)."""
    return page.evaluate(
        """([name, id]) => {
            const chart = echarts.getInstanceByDom(document.getElementById(id));
            const data = chart.getModel().getSeriesByIndex(0).getData();
            const style = data.getItemVisual(data.indexOfName(name), 'style');
            return style && style.fill;
        }""",
        [name, chart],
    )


def _loaded(page: Any) -> None:
    page.locator("#dashboard[data-loaded]").wait_for(timeout=15_000)


def test_scans_show_up_on_the_dashboards_and_a_diversion_is_confirmed(
    runtime: Runtime, both_apps: str, browser: Any, brand: Brand
) -> None:
    base = both_apps
    for url in _urls(runtime, brand, 1, 2):
        _scan_in_nanjing(browser, base + urlsplit(url).path)
    # What the worker does every minute.
    anti_fraud.refresh_scan_rollups(runtime)
    members.refresh_member_rollups(runtime)
    assert anti_fraud.evaluate_diversion(runtime) == 1

    context = browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 900})
    page = context.new_page()
    problems = _watch(page)
    page.goto(base + "/console/dashboards/overview")
    assert "/console/sign-in?next=" in page.url
    page.fill("#brand", "acme")
    page.fill("#email", "boss@acme.cn")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(base + "/console/dashboards/overview")

    # The overview: two scans, both genuine, both diverted, by two phones.
    _loaded(page)
    assert page.inner_text("h1") == "扫码概览"
    assert page.inner_text("#kpi-scans .kpi-value") == "2"
    assert page.inner_text("#kpi-scanners .kpi-value") == "2"
    assert page.inner_text("#kpi-genuine .kpi-value") == "100%"
    assert page.inner_text("#kpi-diverted .kpi-value") == "2"
    assert _series_total(page, "chart-scans") == 2  # the line over the 30 days
    assert _series_total(page, "chart-verdicts") == 2  # the donut
    # The CSV is the same figures.
    csv = page.request.get(urljoin(page.url, page.get_attribute("#export-csv", "href")))
    assert csv.ok and csv.headers["content-type"].startswith("text/csv")
    rows = csv.text().lstrip("\ufeff").splitlines()
    assert rows[0].startswith("start,scans,genuine")
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == 2

    # The map: Jiangsu is coloured, Xizang is not; switching to diversion keeps it so.
    page.click("#nav-dash-map")
    page.wait_for_url("**/console/dashboards/map")
    _loaded(page)
    page.locator("#chart-map[data-ready]").wait_for(timeout=15_000)
    assert page.inner_text("#provinces tr[data-province='CN-JS'] td:nth-child(1)") == "江苏"
    assert page.inner_text("#provinces tr[data-province='CN-JS'] td:nth-child(2)") == "2"
    jiangsu, xizang = _fill(page, "江苏"), _fill(page, "西藏")
    assert jiangsu and xizang and jiangsu != xizang
    # The world map: China, where the scans were, is coloured; France is not.
    page.locator("#chart-world[data-ready]").wait_for(timeout=15_000)
    china, france = _fill(page, "CN", "chart-world"), _fill(page, "FR", "chart-world")
    assert china and france and china != france
    page.click("#metric-diverted")
    assert "metric=diverted" in page.url
    expect(page.locator("#dashboard")).to_have_attribute("data-metric", "diverted")
    assert _fill(page, "江苏") not in (None, _fill(page, "西藏"))

    # Diversion: the Zhejiang distributor's alert, the scans behind it, confirmed with a note.
    page.click("#nav-dash-diversion")
    page.wait_for_url("**/console/dashboards/diversion")
    _loaded(page)
    row = page.locator("#distributors tbody tr").first
    assert "浙江总经销" in row.inner_text()
    assert row.locator(".open-alerts").inner_text() == "1"
    card = page.locator(".alert-card").first
    alert_id = card.get_attribute("id")
    assert card.locator(".badge").inner_text() == "待处理"
    card.locator("button", has_text="查看证据").click()
    scans = page.locator(f"#{alert_id}-scans tbody tr")
    scans.first.wait_for()
    assert scans.count() == 2
    assert "南京" in scans.first.inner_text()
    page.fill(f"#{alert_id}-note", "南京两家门店，已约谈经销商")
    page.click(f"#{alert_id}-confirm")
    page.locator(f"#{alert_id}-status[data-status='confirmed']").wait_for()
    assert page.inner_text(f"#{alert_id}-status") == "已确认窜货"
    assert "boss@acme.cn" in page.inner_text(f"#{alert_id}-message")
    assert row.locator(".open-alerts").inner_text() == "0"
    assert page.is_hidden(f"#{alert_id}-confirm") and page.is_visible(f"#{alert_id}-reopen")
    # It stays so: the page read afresh says the same.
    page.reload()
    _loaded(page)
    assert page.inner_text(f"#{alert_id}-status") == "已确认窜货"
    # The note and who reviewed it come with the alert's evidence, read just after.
    expect(page.locator(f"#{alert_id}-note")).to_have_value("南京两家门店，已约谈经销商")
    expect(page.locator(f"#{alert_id}-message")).to_contain_text("boss@acme.cn")
    assert problems == []
    context.close()


def test_an_analyst_reads_the_dashboards_but_reviews_nothing(
    runtime: Runtime, both_apps: str, browser: Any, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        core_services.create_user(
            session,
            tenant_id=brand.tenant_id,
            email="analyst@acme.cn",
            role="analyst",
            password=PASSWORD,
        )
    context = browser.new_context(locale="en-GB", viewport={"width": 1024, "height": 1366})
    page = context.new_page()  # a tablet, portrait
    problems = _watch(page)
    page.goto(base_url := both_apps + "/console/sign-in?lang=en")
    assert base_url
    page.fill("#brand", "acme")
    page.fill("#email", "analyst@acme.cn")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url("**/console/")
    page.click("#nav-dash-production")
    _loaded(page)
    assert page.inner_text("h1") == "Production"
    batch = page.locator(f"#batches tr[data-batch='{brand.batch_id}']")
    assert "L2026A" in batch.inner_text() and "50" in batch.inner_text()
    page.click("#nav-dash-diversion")
    _loaded(page)
    assert page.locator("button[id$='-confirm']").count() == 0
    nav = page.locator("ul.dash-nav a").all_inner_texts()
    assert nav == [
        "Scans",
        "Scan map",
        "Diversion",
        "Counterfeits",
        "Campaigns",
        "Members",
        "Production",
    ]
    # Nothing overflows a tablet's width.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []
    context.close()
