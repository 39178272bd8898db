"""Who is calling the management API, and what its role may do.

A request carries either ``Authorization: Bearer yk_<prefix>_<secret>`` (an API key: its tenant
and role) or the console's session cookie (a signed-in user: its tenant, role and, for a
distributor, its distributor). A session's unsafe requests (POST, PUT, PATCH, DELETE) must also
carry the session's CSRF token, as the ``X-CSRF-Token`` header or a ``csrf_token`` form field;
a bearer key needs none (a browser never sends it by itself). Every query a view makes is
scoped to the caller's tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request

from core import accounts, services
from core.errors import (
    AuthenticationRequiredError,
    CsrfTokenInvalidError,
    PermissionDeniedError,
)
from core.web import app_runtime, db_session

F = TypeVar("F", bound=Callable[..., Any])

# What each role may do; admin may do everything. ``members`` reads members (phones masked),
# ``members_write`` changes them (adjustments, orders, tags), ``pii`` sees phones unmasked
# (every such view or export is audited). A factory operator sees no members. ``campaigns``
# reads campaigns, draws, budget burn and liability; ``campaigns_write`` configures and runs them
# and decides the review queue. ``users`` manages console users and their roles, ``audit``
# reads the audit log (admins only). A distributor's role holds no brand-wide permission: the
# views that serve distributors scope what they show to the caller's own distributor.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "read",
            "write",
            "export",
            "keys",
            "members",
            "members_write",
            "pii",
            "campaigns",
            "campaigns_write",
            "users",
            "audit",
            "alert_rules",
        }
    ),
    "factory_operator": frozenset({"read", "write", "export"}),
    "analyst": frozenset({"read", "members", "campaigns", "alert_rules"}),
    "customer_service": frozenset({"members", "members_write", "campaigns"}),
    "distributor": frozenset(),
}


SESSION_COOKIE = "yima_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller: an API key (``api_key_id``) or a signed-in console user (``user_id``,
    ``session_id``; ``distributor_id`` for a distributor user). ``name`` is the key's name or
    the user's e-mail."""

    tenant_id: int
    role: str
    api_key_id: int | None
    name: str
    user_id: int | None = None
    session_id: int | None = None
    distributor_id: int | None = None

    @property
    def actor(self) -> str:
        if self.user_id is not None:
            return accounts.user_actor(self.user_id, self.name)
        return f"api-key:{self.api_key_id}:{self.name}"


def session_token() -> str | None:
    """The console session token this request's cookie carries, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


def signed_in_user() -> accounts.SignedInUser | None:
    """The live console session of this request (any stage), looked up once per request."""
    if "yima_signed_in" not in g:
        token = session_token()
        g.yima_signed_in = (
            accounts.session_of_token(db_session(), settings=app_runtime().settings, token=token)
            if token
            else None
        )
    who: accounts.SignedInUser | None = g.yima_signed_in
    return who


def csrf_token() -> str | None:
    """The CSRF token of this request's session (what pages put in forms and scripts send)."""
    token = session_token()
    return accounts.csrf_token_for(app_runtime().settings.secret_key, token) if token else None


def check_csrf() -> None:
    """Refuse an unsafe request of a session that lacks its CSRF token (403)."""
    if request.method in SAFE_METHODS:
        return
    token = session_token()
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = request.form.get(CSRF_FIELD)
    if token is None or not accounts.csrf_token_matches(
        app_runtime().settings.secret_key, token, sent
    ):
        raise CsrfTokenInvalidError(
            f"send the session's CSRF token as the {CSRF_HEADER} header or a {CSRF_FIELD} field"
        )


def principal_of_user(who: accounts.SignedInUser) -> Principal:
    return Principal(
        tenant_id=who.tenant_id,
        role=who.role,
        api_key_id=None,
        name=who.email,
        user_id=who.user_id,
        session_id=who.session_id,
        distributor_id=who.distributor_id,
    )


def current_principal() -> Principal:
    principal: Principal | None = g.get("yima_principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        if not header and session_token() is not None:
            who = signed_in_user()
            if who is None or who.stage != "active":
                raise AuthenticationRequiredError("the session has ended; sign in again")
            check_csrf()
            principal = principal_of_user(who)
        else:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationRequiredError(
                    "send an API key as 'Authorization: Bearer yk_...' or sign in to the console"
                )
            key = services.authenticate_api_key(db_session(), token.strip())
            principal = Principal(
                tenant_id=key.tenant_id, role=key.role, api_key_id=key.id, name=key.name
            )
        g.yima_principal = principal
    return principal


def caller_with(permission: str) -> Principal:
    """The authenticated caller, whose role must hold ``permission`` (else 403)."""
    principal = current_principal()
    if permission not in PERMISSIONS.get(principal.role, frozenset()):
        raise PermissionDeniedError(f"the role {principal.role!r} may not {permission}")
    return principal


def requires(permission: str) -> Callable[[F], F]:
    """Decorate a view: authenticate and demand ``permission`` of the caller's role."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller_with(permission)
            return view(*args, **kwargs)

        wrapper.__dict__.setdefault("_yima_security", True)
        return wrapper  # type: ignore[return-value]

    return decorate


def audit(
    action: str, *, target_type: str, target_id: object, detail: dict[str, Any] | None = None
) -> None:
    """Write the caller's act to the audit log, in the request's transaction (with its IP)."""
    from core.web import client_ip

    principal = current_principal()
    services.record_audit(
        db_session(),
        tenant_id=principal.tenant_id,
        actor=principal.actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
        ip=client_ip(),
    )
