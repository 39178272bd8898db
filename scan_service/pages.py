"""What the scan app's pages share: the reader's language, the security headers, and who is
signed in (only a request carrying a credential pays the lookup)."""

from __future__ import annotations

from flask import Response, request

import members
from core.web import LANG_COOKIE, page_lang, remember_lang, security_headers

__all__ = ["API_PREFIX", "LANG_COOKIE", "page_headers", "page_lang", "signed_in"]

API_PREFIX = "/api/v1"


def page_headers(response: Response, lang: str, *, script: str = "'none'") -> Response:
    """A page's security headers (``script``: the CSP script source), never cached; a chosen
    ``?lang=`` is remembered."""
    security_headers(
        response,
        csp=(
            f"default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
            f"script-src {script}; connect-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        ),
    )
    return remember_lang(response, lang)


def signed_in() -> members.SignedIn | None:
    """The member this request's token or ``yima_m`` cookie names, if any."""
    if not request.environ.get("HTTP_AUTHORIZATION") and members.MEMBER_COOKIE not in (
        request.cookies
    ):
        return None
    return members.signed_in_member()
