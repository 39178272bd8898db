"""The console's management pages: products and batches (with print-file exports and their
progress), distributors and their regions, campaigns (the structured form, the lifecycle
buttons, prize pools and budget burn) and the review queue, members (search by phone, the 360
view), tiers and the catalogue, API keys and alert rules, in the shell of console/pages.py.

A page is server-rendered with its forms; ``static/manage.js`` reads and writes the same
``/api/v1`` as integrations, with the session cookie and the session's CSRF token in the
``X-CSRF-Token`` header, and shows the API's 422 field errors next to the fields. The page hands
the script its settings and texts as JSON in ``#manage[data-config]``: no inline script (the CSP
allows ``script-src 'self'`` only). API keys have no management endpoint: their page posts forms
to itself and calls core.services, as the users page does.

A page answers 403 to a role that may not open it (the API is the real guard of every call),
404 for an object id of another brand; the navigation shows a user only what its role may open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request, url_for
from sqlalchemy import select

import campaigns
import codegen
import members
import traceability
from anti_fraud.geo import CN_PROVINCES
from console import pages as shell
from console.manage_texts import MANAGE_TEXTS
from core import accounts
from core import services as core_services
from core.auth import PERMISSIONS, check_csrf, signed_in_user
from core.errors import YimaError
from core.models import ROLES, ApiKey
from core.services import tenant_timezone
from core.web import client_ip, db_session, page_lang

manage_pages = Blueprint("manage_pages", __name__)

KEY_NAME_MAX = 200
ACTIVATION_LIMIT = 1000  # batches whose activation the list shows (the oldest first)


@dataclass(frozen=True)
class Section:
    endpoint: str
    text: str
    permission: str  # the role must hold it to open the page


# The management navigation, in order; each page is shown to the roles that may open it.
SECTIONS: tuple[Section, ...] = (
    Section("products", "nav_products", "read"),
    Section("batches", "nav_batches", "read"),
    Section("distributors", "nav_distributors", "read"),
    Section("campaign_list", "nav_campaigns", "campaigns"),
    Section("reviews", "nav_reviews", "campaigns"),
    Section("member_search", "nav_members", "members"),
    Section("loyalty", "nav_loyalty", "members"),
    Section("alert_rules", "nav_alert_rules", "read"),
    Section("api_keys", "nav_api_keys", "keys"),
)
PERMISSION_OF = {s.endpoint: s.permission for s in SECTIONS} | {
    "batch": "read",
    "campaign": "campaigns",
    "member": "members",
}


@manage_pages.app_context_processor
def _navigation() -> dict[str, Any]:
    """The management pages the signed-in user may open, for the shell's side navigation."""
    try:
        who = signed_in_user()
    except Exception:  # no request database (a template rendered outside a request)
        return {"manage_nav": []}
    if who is None or who.stage != "active":
        return {"manage_nav": []}
    texts = MANAGE_TEXTS[page_lang()]
    current = request.endpoint or ""
    items = [
        {
            "id": f"nav-manage-{s.endpoint.replace('_', '-')}",
            "href": url_for(f"manage_pages.{s.endpoint}"),
            "label": texts[s.text],
            "current": current == f"manage_pages.{s.endpoint}"
            or (current, s.endpoint)
            in {
                ("manage_pages.batch", "batches"),
                ("manage_pages.campaign", "campaign_list"),
                ("manage_pages.member", "member_search"),
            },
        }
        for s in SECTIONS
        if shell.may(who, s.permission)
    ]
    return {
        "manage_nav": items,
        "manage_nav_title": texts["nav_group"],
        "manage_css": shell.static_url("manage.css"),
    }


@manage_pages.errorhandler(shell.SignInRequired)
def _sign_in_first(exc: shell.SignInRequired) -> Response:
    return shell.sign_in_first(exc)


@manage_pages.errorhandler(YimaError)
def _page_error(exc: YimaError) -> Response:
    return shell.page_error(exc)


def region_names(lang: str) -> dict[str, str]:
    """Region codes by the name a reader knows them by: China and its provinces (浙江 /
    Zhejiang), from anti_fraud.geo's table (the dashboards' too)."""
    texts = MANAGE_TEXTS[lang]
    return {"CN": texts["region_cn"]} | {
        p.iso: p.short_zh if lang == "zh" else p.name_en for p in CN_PROVINCES
    }


def page_user() -> accounts.SignedInUser:
    """The signed-in user, whose role may open this page (else 403)."""
    return shell.page_user(PERMISSION_OF[(request.endpoint or "").rpartition(".")[2]])


def _page(
    who: accounts.SignedInUser,
    name: str,
    *,
    status: int = 200,
    config: dict[str, Any] | None = None,
    **ctx: Any,
) -> Response:
    lang = page_lang()
    texts = MANAGE_TEXTS[lang]
    perms = sorted(PERMISSIONS.get(who.role, frozenset()))
    settings = {
        "page": name,
        "lang": lang,
        "timezone": tenant_timezone(db_session(), who.tenant_id),
        "can": perms,
        "pages": request.script_root,
        "texts": texts,
        "regions": region_names(lang),
        **(config or {}),
    }
    return shell.render_page(
        f"manage/{name}.html",
        who=who,
        status=status,
        m=texts,
        can=lambda permission: permission in perms,
        config=settings,
        manage_js=shell.static_url("manage.js"),
        manage_css=shell.static_url("manage.css"),
        regions=region_names(lang),
        **ctx,
    )


# --- products, batches and print files ------------------------------------------------------------


@manage_pages.get("/products")
def products() -> Response:
    """Products: the list and a form to add one (SKU, GTIN, name)."""
    return _page(page_user(), "products")


@manage_pages.get("/batches")
def batches() -> Response:
    """Batches: the list (with how many codes of each are activated) and a form to issue one
    (product, lot, quantity, URL form)."""
    who = page_user()
    session = db_session()
    ids = [
        b.id for b in codegen.list_batches(session, tenant_id=who.tenant_id, limit=ACTIVATION_LIMIT)
    ]
    coverage = traceability.batch_coverage(session, tenant_id=who.tenant_id, batch_ids=ids)
    return _page(
        who, "batches", config={"activated": {b: c["activated"] for b, c in coverage.items()}}
    )


@manage_pages.get("/batches/<id:batch_id>")
def batch(batch_id: int) -> Response:
    """A batch: its facts, activation, its print files with live progress and downloads."""
    who = page_user()
    session = db_session()
    found = codegen.get_batch_or_raise(session, tenant_id=who.tenant_id, batch_id=batch_id)
    product = codegen.get_product(session, tenant_id=who.tenant_id, product_id=found.product_id)
    coverage = traceability.batch_coverage(session, tenant_id=who.tenant_id, batch_ids=[found.id])
    return _page(
        who,
        "batch",
        config={"batch_id": found.id, "quantity": found.quantity},
        batch=found,
        product=product,
        coverage=coverage.get(found.id, {"activated": 0, "shipped": 0}),
    )


# --- distributors ---------------------------------------------------------------------------------


@manage_pages.get("/distributors")
def distributors() -> Response:
    """Distributors and their authorised sales regions."""
    return _page(page_user(), "distributors")


# --- campaigns ------------------------------------------------------------------------------------


@manage_pages.get("/campaigns")
def campaign_list() -> Response:
    """Campaigns with their status, and the structured form that creates one."""
    return _page(page_user(), "campaigns")


@manage_pages.get("/campaigns/<id:campaign_id>")
def campaign(campaign_id: int) -> Response:
    """A campaign: status and lifecycle buttons, prize pools with stock left, budget burn."""
    who = page_user()
    found = campaigns.get_campaign_or_raise(
        db_session(), tenant_id=who.tenant_id, campaign_id=campaign_id
    )
    return _page(who, "campaign", config={"campaign_id": found.id}, campaign=found)


@manage_pages.get("/reviews")
def reviews() -> Response:
    """The review queue: rewards the fraud rules held, to release, deny or claw back."""
    return _page(page_user(), "reviews")


# --- members, tiers and the catalogue -------------------------------------------------------------


@manage_pages.get("/members")
def member_search() -> Response:
    """Members: search by phone (masked in the results), the newest first."""
    return _page(page_user(), "members")


@manage_pages.get("/members/<id:member_id>")
def member(member_id: int) -> Response:
    """A member's 360 view, with points history; the phone masked unless the role has pii."""
    who = page_user()
    found = members.get_member_or_raise(db_session(), tenant_id=who.tenant_id, member_id=member_id)
    return _page(who, "member", config={"member_id": found.id}, member_id=found.id)


@manage_pages.get("/loyalty")
def loyalty() -> Response:
    """The tier ladder and the points catalogue."""
    return _page(page_user(), "loyalty")


# --- alert rules ----------------------------------------------------------------------------------


@manage_pages.get("/alert-rules")
def alert_rules() -> Response:
    """Alert rules, their test notifications and the recent notifications."""
    return _page(page_user(), "alert_rules")


# --- API keys (no management endpoint: forms posted here) ----------------------------------------


def _api_keys_page(
    who: accounts.SignedInUser,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    message: str = "",
    token: str = "",
) -> Response:
    session = db_session()
    keys = list(
        session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == who.tenant_id).order_by(ApiKey.id.desc())
        )
    )
    distributors = _key_distributors(who)
    names = {d.id: f"{d.code} · {d.name}" for d in distributors}
    bound = {}
    for key in keys:
        if key.role == "distributor":
            distributor_id = traceability.distributor_of_api_key(session, key.id)
            bound[key.id] = names.get(distributor_id or 0, "")
    zone = tenant_timezone(session, who.tenant_id)
    return _page(
        who,
        "api_keys",
        status=status,
        keys=keys,
        roles=list(ROLES),
        distributors=[d for d in distributors if d.active],
        bound=bound,
        errors=errors or {},
        form=form or {"name": "", "role": "analyst", "distributor_id": ""},
        message=message,
        token=token,
        zone=zone,
    )


def _key_distributors(who: accounts.SignedInUser) -> list[Any]:
    """The brand's distributors a key may act for (all of them, a page of 1,000 at a time)."""
    found: list[Any] = []
    while True:
        page = traceability.list_distributors(
            db_session(),
            tenant_id=who.tenant_id,
            after_id=found[-1].id if found else 0,
            limit=1000,
        )
        found.extend(page)
        if len(page) < 1000:
            return found


@manage_pages.get("/api-keys")
def api_keys() -> Response:
    """API keys: the list, a form to create one (its token shown once), revoke."""
    who = page_user()
    done = request.args.get("done", "")
    texts = MANAGE_TEXTS[page_lang()]
    return _api_keys_page(who, message=texts["key_revoked"] if done == "revoked" else "")


@manage_pages.post("/api-keys")
def create_api_key() -> Response:
    who = shell.page_user("keys")
    check_csrf()
    texts = MANAGE_TEXTS[page_lang()]
    name = request.form.get("name", "").strip()
    role = request.form.get("role", "")
    raw_distributor = request.form.get("distributor_id", "").strip()
    form = {"name": name[:KEY_NAME_MAX], "role": role[:40], "distributor_id": raw_distributor[:12]}
    errors: dict[str, str] = {}
    if not name or len(name) > KEY_NAME_MAX:
        errors["name"] = texts["err_key_name"]
    if role not in ROLES:
        errors["role"] = texts["err_key_role"]
    # A distributor's key acts for one of the brand's active distributors (its shipments and
    # alerts only); no other role's key is bound to one.
    distributor_id = None
    if role == "distributor":
        active = {d.id for d in _key_distributors(who) if d.active}
        distributor_id = int(raw_distributor) if raw_distributor.isdigit() else None
        if distributor_id not in active:
            errors["distributor_id"] = texts["err_key_distributor"]
    elif raw_distributor:
        errors["distributor_id"] = texts["err_key_not_distributor"]
    if errors:
        return _api_keys_page(who, status=422, errors=errors, form=form)
    session = db_session()
    detail: dict[str, Any] = {"name": name, "role": role}
    if distributor_id is not None:
        issued = traceability.issue_distributor_key(
            session,
            tenant_id=who.tenant_id,
            distributor_id=distributor_id,
            name=name,
            user_id=who.user_id,
        )
        detail["distributor_id"] = distributor_id
    else:
        issued = core_services.create_api_key(
            session, tenant_id=who.tenant_id, name=name, role=role, user_id=who.user_id
        )
    detail["prefix"] = issued.key.prefix
    core_services.record_audit(
        session,
        tenant_id=who.tenant_id,
        actor=accounts.user_actor(who.user_id, who.email),
        action="api_key.create",
        target_type="api_key",
        target_id=issued.key.id,
        detail=detail,
        ip=client_ip(),
    )
    return _api_keys_page(who, message=texts["key_created"].format(name=name), token=issued.token)


@manage_pages.post("/api-keys/<id:key_id>/revoke")
def revoke_api_key(key_id: int) -> Response:
    who = shell.page_user("keys")
    check_csrf()
    session = db_session()
    key = core_services.revoke_api_key(session, tenant_id=who.tenant_id, key_id=key_id)
    core_services.record_audit(
        session,
        tenant_id=who.tenant_id,
        actor=accounts.user_actor(who.user_id, who.email),
        action="api_key.revoke",
        target_type="api_key",
        target_id=key.id,
        detail={"name": key.name, "prefix": key.prefix},
        ip=client_ip(),
    )
    return shell.redirect_to("manage_pages.api_keys", done="revoked")
