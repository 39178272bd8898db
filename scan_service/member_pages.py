"""The member pages of the scan app (``/m/...``): sign-in, an invitation, my account, points
history, the rewards catalogue and my orders and coupons.

Each page is a small server-rendered shell in the member's language (Chinese by default,
English by ``?lang=en``, the ``yima_lang`` cookie or Accept-Language); ``static/member.js``
fills it from the consumer JSON API (``/api/v1``, same origin) with the ``yima_m`` cookie the
sign-in sets. No inline script: the pages' CSP allows ``script-src 'self'`` only. Times are
shown in the brand's timezone, which the page hands to the script (``data-tz``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, make_response, redirect, render_template, request, url_for
from sqlalchemy import select

from core.models import Tenant
from core.web import db_session
from scan_service.member_texts import TEXTS
from scan_service.pages import API_PREFIX, page_headers, page_lang, signed_in

BRAND_COOKIE = "yima_mb"  # the brand last signed in to: where a signed-out visitor signs in
HOME = "/m/"
SCRIPT = Path(__file__).parent / "static" / "member.js"
_REFERRAL_CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_CHANNEL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_YEAR = 365 * 86400


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site (``/...``), else the account page.

    ``//evil.example``, ``/\\evil.example``, ``https://...`` and control characters are refused:
    browsers read those as another host.
    """
    if not value or len(value) > 512 or not value.startswith("/"):
        return HOME
    if value.startswith(("//", "/\\")) or any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def _tenant(slug: str | None) -> Tenant | None:
    if not slug or not _SLUG.fullmatch(slug):
        return None
    return db_session().scalar(select(Tenant).where(Tenant.slug == slug))


def _tenant_of_host() -> Tenant | None:
    """The brand whose own scan host this is (a shared host names no brand)."""
    found = db_session().scalars(select(Tenant).where(Tenant.scan_host == request.host).limit(2))
    tenants = list(found)
    return tenants[0] if len(tenants) == 1 else None


def _lang_switch(lang: str) -> str:
    """This page in the other language (its other query arguments kept)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    args.append(("lang", "zh" if lang == "en" else "en"))
    return request.script_root + request.path + "?" + urlencode(args)


def _sign_in_url(slug: str | None, next_path: str, **extra: str) -> str:
    args = {"brand": slug or "", "next": next_path, **extra}
    return request.script_root + "/m/sign-in?" + urlencode({k: v for k, v in args.items() if v})


def _here() -> str:
    """This page's app-relative path and query (what sign-in comes back to)."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _page(
    template: str, lang: str, *, tenant: Tenant | None, page: str, status: int = 200, **ctx: Any
) -> Response:
    texts = TEXTS[lang]
    response = make_response(
        render_template(
            f"member/{template}",
            lang=lang,
            t=texts,
            texts=texts,
            page=page,
            brand=tenant.slug if tenant is not None else "",
            brand_name=tenant.name if tenant is not None else "",
            tz=tenant.timezone if tenant is not None else "Asia/Shanghai",
            api=request.script_root + API_PREFIX,
            root=request.script_root,
            script=url_for("static", filename="member.js", v=_script_version()),
            lang_switch=_lang_switch(lang),
            **ctx,
        ),
        status,
    )
    return page_headers(response, lang, script="'self'")


def _redirect(location: str, lang: str) -> Response:
    return page_headers(make_response(redirect(location, 303)), lang, script="'self'")


@functools.cache
def _script_version() -> str:
    """The script's content hash: its URL changes with it, so browsers may keep it a year."""
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]


def _unknown_brand(lang: str) -> Response:
    return _page("unknown_brand.html", lang, tenant=None, page="none", status=404)


def _member_page(template: str, page: str) -> Response:
    """A page of the signed-in member's own brand, or a redirect to sign in."""
    lang = page_lang()
    who = signed_in()
    asked = request.args.get("brand")
    tenant = db_session().get(Tenant, who.tenant_id) if who is not None else None
    if tenant is None or (asked and asked != tenant.slug):
        # Not signed in, or signed in at another brand than the link names.
        brand = asked or (tenant.slug if tenant else request.cookies.get(BRAND_COOKIE))
        return _redirect(_sign_in_url(brand, _here()), lang)
    return _page(template, lang, tenant=tenant, page=page)


def register_member_pages(app: Flask) -> None:
    """Add the member pages (``/m/...``) to the scan app and a long cache to ``member.js``."""

    @app.get("/m/sign-in")
    def member_sign_in() -> Response:
        lang = page_lang()
        tenant = _tenant(request.args.get("brand"))
        if tenant is None:
            return _unknown_brand(lang)
        next_path = safe_next(request.args.get("next"))
        who = signed_in()
        if who is not None and who.tenant_id == tenant.id:
            return _redirect(request.script_root + next_path, lang)
        ref = request.args.get("ref", "")
        channel = request.args.get("channel", "")
        response = _page(
            "sign_in.html",
            lang,
            tenant=tenant,
            page="sign-in",
            next=next_path,
            ref=ref if _REFERRAL_CODE.fullmatch(ref) else "",
            channel=channel if _CHANNEL.fullmatch(channel) else "",
            erased=request.args.get("erased") == "1",
        )
        response.set_cookie(
            BRAND_COOKIE,
            tenant.slug,
            max_age=_YEAR,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
        )
        return response

    @app.get("/m/invite/<code>")
    def member_invite(code: str) -> Response:
        lang = page_lang()
        tenant = _tenant(request.args.get("brand")) or _tenant_of_host()
        if tenant is None or not _REFERRAL_CODE.fullmatch(code):
            return _unknown_brand(lang)
        join = _sign_in_url(tenant.slug, HOME, ref=code, channel="referral", lang=lang)
        return _page("invite.html", lang, tenant=tenant, page="invite", join=join)

    @app.get("/m/")
    def member_account() -> Response:
        return _member_page("account.html", "account")

    @app.get("/m/points")
    def member_points() -> Response:
        return _member_page("points.html", "points")

    @app.get("/m/orders")
    def member_orders() -> Response:
        return _member_page("orders.html", "orders")

    @app.get("/m/catalogue")
    def member_catalogue() -> Response:
        """Anyone may look; redeeming needs the brand's member signed in."""
        lang = page_lang()
        who = signed_in()
        asked = request.args.get("brand")
        tenant = _tenant(asked) if asked else None
        if tenant is None and not asked and who is not None:
            tenant = db_session().get(Tenant, who.tenant_id)
        if tenant is None:
            return _unknown_brand(lang)
        here = who is not None and who.tenant_id == tenant.id
        return _page(
            "catalogue.html",
            lang,
            tenant=tenant,
            page="catalogue",
            signed_in=here,
            sign_in=_sign_in_url(tenant.slug, _here(), lang=lang),
        )

    @app.after_request
    def _cache_versioned_script(response: Response) -> Response:
        # member.js is linked with ?v=<its hash>: a new file is a new URL, so keep it a year.
        if request.endpoint == "static" and request.args.get("v") and response.status_code == 200:
            response.headers["Cache-Control"] = f"public, max-age={_YEAR}, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
