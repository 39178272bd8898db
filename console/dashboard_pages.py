"""The console's dashboard pages: overview, map, diversion, counterfeit, campaigns, members and
production, in the shell of console/pages.py.

Each page is server-rendered with its filter bar (period presets, from / to, product, batch,
region, campaign), all kept in the URL's query string, and a link to the CSV of the matching
``/api/v1/dashboards/<page>``. ``static/dashboards.js`` then reads the same endpoint with the
session cookie and draws the figures (ECharts, vendored under ``static/vendor/``); actions
(reviewing a diversion alert or a held reward) post to the management API with the session's
CSRF token. No inline script: the CSP allows ``script-src 'self'`` only.

A page answers 403 to a role that may not read it (the rule of console/dashboards.py, which
the API enforces again); the navigation shows a user only the pages its role may open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, redirect, request, url_for

import campaigns
import codegen
from anti_fraud.geo import CN_PROVINCES
from console import pages as shell
from console.dashboard_texts import DASHBOARD_TEXTS, SCRIPT_TEXTS
from console.dashboards import DEFAULT_DAYS
from console.dashboards import PAGES as API_PAGES
from core import accounts
from core.auth import PERMISSIONS, signed_in_user
from core.errors import PermissionDeniedError, YimaError
from core.services import tenant_timezone
from core.web import db_session, page_lang

dashboard_pages = Blueprint("dashboard_pages", __name__)

ECHARTS = "vendor/echarts-6.1.0.min.js"
CHINA_MAP = "vendor/china-provinces.json"
WORLD_MAP = "vendor/world-countries.json"  # outlines named by ISO code (console/maps)
OPTIONS_LIMIT = 200  # products, batches, campaigns offered in the filter bar
FILTER_KEYS = ("from", "to", "sku", "batch_id", "region", "campaign_id")
PRESETS = (("today", 1), ("7d", 7), ("30d", 30), ("90d", 90))
MAP_METRICS = ("scans", "counterfeit", "suspicious", "diverted")


@dataclass(frozen=True)
class Dashboard:
    name: str
    # Which filters the page offers (the API takes them all; a page shows those that change
    # what it draws).
    filters: tuple[str, ...]


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard("overview", FILTER_KEYS),
    Dashboard("map", FILTER_KEYS),
    Dashboard("diversion", FILTER_KEYS),
    Dashboard("counterfeit", FILTER_KEYS),
    Dashboard("campaigns", ("from", "to", "campaign_id")),
    Dashboard("members", ("from", "to")),
    Dashboard("production", ("from", "to", "sku", "batch_id")),
)
BY_NAME = {d.name: d for d in DASHBOARDS}


def may_see(who: accounts.SignedInUser, name: str) -> bool:
    """Whether the user's role may open the dashboard (as its API decides: a distributor sees
    its own diversion only)."""
    if name == "diversion" and who.role == "distributor":
        return who.distributor_id is not None
    permission, roles = API_PAGES[name]
    return who.role in roles and permission in PERMISSIONS.get(who.role, frozenset())


# --- navigation (every console page) --------------------------------------------------------------


@dashboard_pages.app_context_processor
def _navigation() -> dict[str, Any]:
    """The dashboards the signed-in user may open, for the shell's side navigation."""
    try:
        who = signed_in_user()
    except Exception:  # no request database (a template rendered outside a request)
        return {"dash_nav": [], "dash_nav_title": ""}
    if who is None or who.stage != "active":
        return {"dash_nav": [], "dash_nav_title": ""}
    texts = DASHBOARD_TEXTS[page_lang()]
    items = [
        {
            "id": f"dash-{d.name}",
            "href": url_for(f"dashboard_pages.{d.name}"),
            "label": texts[f"nav_{d.name}"],
            "current": request.endpoint == f"dashboard_pages.{d.name}",
        }
        for d in DASHBOARDS
        if may_see(who, d.name)
    ]
    return {
        "dash_nav": items,
        "dash_nav_title": texts["nav_group"],
        "dash_nav_css": shell.static_url("dashboards.css"),
    }


# --- errors: the shell's pages answer them --------------------------------------------------------


@dashboard_pages.errorhandler(shell.SignInRequired)
def _sign_in_first(exc: shell.SignInRequired) -> Response:
    return shell.sign_in_first(exc)


@dashboard_pages.errorhandler(YimaError)
def _page_error(exc: YimaError) -> Response:
    return shell.page_error(exc)


# --- the filter bar -------------------------------------------------------------------------------


def _arg(name: str, limit: int = 64) -> str:
    return request.args.get(name, "").strip()[:limit]


@dataclass(frozen=True)
class FilterBar:
    values: dict[str, str]  # what the reader chose (or the defaults the API applies)
    query: dict[str, str]  # what the page's API calls carry
    presets: list[dict[str, Any]]
    products: list[tuple[str, str]]  # (sku, label)
    batches: list[tuple[int, str]]
    regions: list[tuple[str, str]]
    campaigns: list[tuple[int, str]]
    extra: dict[str, str]  # page-only choices kept in the URL (interval, metric)


def _today(tenant_id: int) -> dt.date:
    zone = ZoneInfo(tenant_timezone(db_session(), tenant_id))
    return dt.datetime.now(zone).date()


def _link(args: dict[str, str]) -> str:
    kept = {k: v for k, v in args.items() if v}
    return request.path if not kept else request.path + "?" + urlencode(kept)


def filter_bar(who: accounts.SignedInUser, board: Dashboard, lang: str) -> FilterBar:
    session = db_session()
    texts = DASHBOARD_TEXTS[lang]
    chosen = {k: _arg(k) for k in board.filters}
    extra: dict[str, str] = {}
    if board.name == "overview":
        extra["interval"] = "hour" if _arg("interval") == "hour" else "day"
    if board.name == "map":
        metric = _arg("metric")
        extra["metric"] = metric if metric in MAP_METRICS else "scans"
    query = {k: v for k, v in chosen.items() if v}
    if extra.get("interval") == "hour":
        query["interval"] = "hour"

    today = _today(who.tenant_id)
    shown = dict(chosen)
    if not shown.get("to"):
        shown["to"] = today.isoformat()
    if not shown.get("from"):
        try:
            last = dt.date.fromisoformat(shown["to"])
        except ValueError:
            last = today
        shown["from"] = (last - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    presets = []
    for key, days in PRESETS:
        first = (today - dt.timedelta(days=days - 1)).isoformat()
        args = {**chosen, **extra, "from": first, "to": today.isoformat()}
        if key == "today" and extra.get("interval") == "day" and board.name == "overview":
            args["interval"] = "hour"  # a single day reads best by the hour
        active = shown["from"] == first and shown["to"] == today.isoformat()
        presets.append(
            {"key": key, "label": texts[f"preset_{key}"], "href": _link(args), "active": active}
        )

    products: list[tuple[str, str]] = []
    batches: list[tuple[int, str]] = []
    campaign_options: list[tuple[int, str]] = []
    if "sku" in board.filters and who.role != "distributor":
        products = [
            (p.sku, f"{p.name} ({p.sku})")
            for p in codegen.list_products(session, tenant_id=who.tenant_id, limit=OPTIONS_LIMIT)
        ]
    if "batch_id" in board.filters and who.role != "distributor":
        batches = [
            (b.id, texts["batch_option"].format(id=b.id, lot=b.lot))
            for b in codegen.list_batches(session, tenant_id=who.tenant_id, limit=OPTIONS_LIMIT)
        ]
    if "campaign_id" in board.filters and shell.may(who, "campaigns"):
        campaign_options = [
            (c.id, c.name)
            for c in campaigns.list_campaigns(session, tenant_id=who.tenant_id, limit=OPTIONS_LIMIT)
            if c.status != "draft"
        ]
    regions: list[tuple[str, str]] = []
    if "region" in board.filters:
        regions = [("CN", texts["all_china"])] + [
            (p.iso, p.short_zh if lang == "zh" else p.name_en) for p in CN_PROVINCES
        ]
    return FilterBar(
        values=shown,
        query=query,
        presets=presets,
        products=products,
        batches=batches,
        regions=regions,
        campaigns=campaign_options,
        extra=extra,
    )


# --- the pages ------------------------------------------------------------------------------------


def _dashboard(name: str) -> Response:
    who = shell.page_user()
    board = BY_NAME[name]
    if not may_see(who, name):
        raise PermissionDeniedError(f"the role {who.role!r} may not read the {name} dashboard")
    lang = page_lang()
    bar = filter_bar(who, board, lang)
    api = request.script_root + shell.API_PREFIX
    endpoint = f"/dashboards/{name}"
    csv = api + endpoint + "?" + urlencode({**bar.query, "format": "csv"})
    config: dict[str, Any] = {
        "page": name,
        "endpoint": endpoint,
        "query": bar.query,
        "lang": lang,
        "timezone": tenant_timezone(db_session(), who.tenant_id),
        "can": {
            "review_diversion": shell.may(who, "write") and who.role != "distributor",
            "campaigns": shell.may(who, "campaigns"),
            "review_rewards": shell.may(who, "campaigns_write"),
        },
        "extra": bar.extra,
        "texts": SCRIPT_TEXTS[lang],
    }
    if name == "map":
        config["map_url"] = shell.static_url(CHINA_MAP)
        config["world_map_url"] = shell.static_url(WORLD_MAP)
    if name == "production":
        config["products"] = {
            p.id: p.name
            for p in codegen.list_products(
                db_session(), tenant_id=who.tenant_id, limit=OPTIONS_LIMIT
            )
        }
    # Places come as ISO 3166-2 codes (CN-ZJ); the map's features are named 浙江.
    config["provinces"] = {
        p.iso: {"map": p.short_zh, "label": p.short_zh if lang == "zh" else p.name_en}
        for p in CN_PROVINCES
    }
    metric_links = {m: _link({**bar.query, **bar.extra, "metric": m}) for m in MAP_METRICS}
    interval_links = {i: _link({**bar.query, "interval": i}) for i in ("day", "hour")}
    return shell.render_page(
        f"dashboards/{name}.html",
        who=who,
        d=DASHBOARD_TEXTS[lang],
        board=board,
        bar=bar,
        csv_url=csv,
        config=config,
        metric_links=metric_links,
        interval_links=interval_links,
        reset_url=request.path,
        dash_css=shell.static_url("dashboards.css"),
        dash_js=shell.static_url("dashboards.js"),
        echarts_js=shell.static_url(ECHARTS),
    )


def _view(name: str) -> Callable[[], Response]:
    def view() -> Response:
        return _dashboard(name)

    view.__name__ = name
    view.__doc__ = f"The {name} dashboard page."
    return view


for _board in DASHBOARDS:
    dashboard_pages.add_url_rule(
        f"/dashboards/{_board.name}", endpoint=_board.name, view_func=_view(_board.name)
    )


@dashboard_pages.get("/dashboards")
def dashboards_home() -> Response:
    """The first dashboard the user may open."""
    who = shell.page_user()
    for board in DASHBOARDS:
        if may_see(who, board.name):
            query = request.query_string.decode("latin-1")
            target = url_for(f"dashboard_pages.{board.name}") + ("?" + query if query else "")
            return make_response(redirect(target, 303))
    raise PermissionDeniedError(f"the role {who.role!r} may read no dashboard")
