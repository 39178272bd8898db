"""What the scan app's pages share: the reader's language, the security headers, and who is
signed in (only a request carrying a credential pays the lookup)."""

from __future__ import annotations

from flask import Response, request

import members

LANG_COOKIE = "yima_lang"
API_PREFIX = "/api/v1"
_YEAR = 365 * 86400


def page_lang() -> str:
    """``?lang=``, else the ``yima_lang`` cookie, else Accept-Language; Chinese by default."""
    environ = request.environ
    if environ.get("QUERY_STRING") or environ.get("HTTP_COOKIE"):
        chosen = request.args.get("lang") or request.cookies.get(LANG_COOKIE)
        if chosen in ("zh", "en"):
            return chosen
    if not environ.get("HTTP_ACCEPT_LANGUAGE"):  # most apps send none: skip the parsing
        return "zh"
    return "en" if request.accept_languages.best_match(["zh", "en"]) == "en" else "zh"


def page_headers(response: Response, lang: str, *, script: str = "'none'") -> Response:
    """A page's security headers (``script``: the CSP script source), never cached; a chosen
    ``?lang=`` is remembered."""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
        f"script-src {script}; connect-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.args.get("lang") in ("zh", "en"):
        response.set_cookie(
            LANG_COOKIE, lang, max_age=_YEAR, samesite="Lax", secure=request.is_secure
        )
    return response


def signed_in() -> members.SignedIn | None:
    """The member this request's token or ``yima_m`` cookie names, if any."""
    if not request.environ.get("HTTP_AUTHORIZATION") and members.MEMBER_COOKIE not in (
        request.cookies
    ):
        return None
    return members.signed_in_member()
