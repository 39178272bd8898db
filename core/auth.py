"""API-key authentication and role checks for the management API.

A request carries ``Authorization: Bearer yk_<prefix>_<secret>``; the key names its tenant and
role, and every query a view makes is scoped to that tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request

from core import services
from core.errors import AuthenticationRequiredError, PermissionDeniedError
from core.web import db_session

F = TypeVar("F", bound=Callable[..., Any])

# What each role may do; admin may do everything. ``members`` reads members (phones masked),
# ``members_write`` changes them (adjustments, orders, tags), ``pii`` sees phones unmasked
# (every such view or export is audited). A factory operator sees no members. ``campaigns``
# reads campaigns, draws, budget burn and liability; ``campaigns_write`` configures and runs them
# and decides the review queue.
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
        }
    ),
    "factory_operator": frozenset({"read", "write", "export"}),
    "analyst": frozenset({"read", "members", "campaigns"}),
    "customer_service": frozenset({"members", "members_write", "campaigns"}),
    "distributor": frozenset(),
}


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    role: str
    api_key_id: int
    name: str

    @property
    def actor(self) -> str:
        return f"api-key:{self.api_key_id}:{self.name}"


def current_principal() -> Principal:
    principal: Principal | None = g.get("yima_principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequiredError("send an API key as 'Authorization: Bearer yk_...'")
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
