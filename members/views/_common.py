"""What the members' views share: the two blueprints and who is asking.

``consumer`` is registered by the scan app (a member's bearer token or the ``yima_m`` cookie);
``manage`` by the console (an API key whose role carries the ``members`` permissions).
"""

from __future__ import annotations

from flask import Blueprint, g, request

from core.auth import Principal, caller_with
from core.errors import AuthenticationRequiredError
from core.web import db_session
from members.sessions import SignedIn, member_of_token

consumer = Blueprint("members_consumer", __name__)
manage = Blueprint("members_api", __name__)

MEMBER_COOKIE = "yima_m"


def member_token() -> str | None:
    """The member token of this request: the bearer header, else the scan app's cookie."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(MEMBER_COOKIE)


def signed_in_member() -> SignedIn | None:
    """The signed-in member, or None (no token, or not a live one)."""
    if "yima_member" not in g:
        g.yima_member = member_of_token(db_session(), member_token())
    who: SignedIn | None = g.yima_member
    return who


def current_member() -> SignedIn:
    """The signed-in member, or a 401 problem."""
    who = signed_in_member()
    if who is None:
        raise AuthenticationRequiredError(
            "sign in with your phone: send 'Authorization: Bearer ms_...'"
        )
    return who


def manager(need: str) -> Principal:
    """The console caller, who must hold the ``need`` permission (``members``,
    ``members_write`` or ``pii``)."""
    return caller_with(need)
