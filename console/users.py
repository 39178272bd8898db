"""The console users API: who am I (``/me``), and the admin's management of users and roles
(``/users``). Thin: parse, authorise, call a core service, serialise. Every change is audited
and ends the changed user's sessions (core.accounts)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from flask import Blueprint, request
from pydantic import BaseModel, ConfigDict, Field

import traceability
from core import accounts
from core import services as core_services
from core.auth import PERMISSIONS, Principal, audit, caller_with, current_principal
from core.errors import ValidationFailedError
from core.models import ROLES, Tenant, User
from core.openapi import PAGINATION, next_after, operation, page_args, parse_body, secured
from core.web import client_ip, db_session

api = Blueprint("users_api", __name__)

Role = Literal["admin", "factory_operator", "analyst", "customer_service", "distributor"]
RowId = Field(default=None, ge=1, le=2**31 - 1)


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    distributor_id: int | None
    disabled: bool
    totp_enabled: bool
    created_at: dt.datetime
    last_sign_in_at: dt.datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,  # type: ignore[arg-type]
            distributor_id=user.distributor_id,
            disabled=user.disabled_at is not None,
            totp_enabled=user.totp_enabled_at is not None,
            created_at=user.created_at,
            last_sign_in_at=user.last_sign_in_at,
        )


class UserPage(BaseModel):
    items: list[UserOut]
    next_after: int | None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    name: str = Field(default="", max_length=200)
    role: Role
    distributor_id: int | None = RowId
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="the first password; left out, one is generated and answered once",
    )


class UserCreatedOut(UserOut):
    password: str | None = Field(description="the generated first password, shown only once")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    distributor_id: int | None = RowId
    name: str | None = Field(default=None, max_length=200)
    disabled: bool | None = None


class PasswordOut(BaseModel):
    password: str = Field(description="a temporary password, shown only once")


class MeOut(BaseModel):
    tenant_id: int
    tenant: str
    role: Role
    permissions: list[str]
    api_key_id: int | None
    user: UserOut | None


def _distributor_of(principal: Principal, role: str, distributor_id: int | None) -> int | None:
    """The distributor a user of ``role`` acts for: one of the caller's brand (422 if not)."""
    if role != "distributor":
        return None
    if distributor_id is None or (
        traceability.get_distributor(
            db_session(), tenant_id=principal.tenant_id, distributor_id=distributor_id
        )
        is None
    ):
        raise ValidationFailedError.field(
            "distributor_id", "a distributor user needs one of this brand's distributors"
        )
    return distributor_id


@api.get("/me")
@operation(
    "Who the caller is: brand, role, permissions (and the console user)",
    tag="users",
    response=MeOut,
)
@secured
def get_me() -> Any:
    principal = current_principal()
    session = db_session()
    tenant = session.get(Tenant, principal.tenant_id)
    user = (
        accounts.get_user(session, tenant_id=principal.tenant_id, user_id=principal.user_id)
        if principal.user_id is not None
        else None
    )
    return MeOut(
        tenant_id=principal.tenant_id,
        tenant=tenant.slug if tenant is not None else "",
        role=principal.role,  # type: ignore[arg-type]
        permissions=sorted(PERMISSIONS.get(principal.role, frozenset())),
        api_key_id=principal.api_key_id,
        user=UserOut.of(user) if user is not None else None,
    ).model_dump(mode="json")


@api.get("/users")
@operation(
    "List the brand's console users",
    tag="users",
    response=UserPage,
    query={**PAGINATION, "role": {"type": "string", "enum": list(ROLES)}},
)
@secured
def list_users() -> Any:
    principal = caller_with("users")
    limit, after = page_args()
    items = list(
        accounts.list_users(
            db_session(),
            tenant_id=principal.tenant_id,
            after_id=after,
            limit=limit,
            role=request.args.get("role") or None,
        )
    )
    return UserPage(
        items=[UserOut.of(u) for u in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.post("/users")
@operation(
    "Create (invite) a console user with a role; a generated first password is answered once",
    tag="users",
    body=UserIn,
    response=UserCreatedOut,
    status=201,
    errors=(409, 415),
)
@secured
def create_user() -> Any:
    principal = caller_with("users")
    body = parse_body(UserIn)
    distributor_id = _distributor_of(principal, body.role, body.distributor_id)
    generated = accounts.temporary_password() if body.password is None else None
    user = core_services.create_user(
        db_session(),
        tenant_id=principal.tenant_id,
        email=accounts.normalize_email(body.email),
        role=body.role,
        password=body.password or generated,
        name=body.name,
        distributor_id=distributor_id,
    )
    audit(
        "user.create",
        target_type="user",
        target_id=user.id,
        detail={"email": user.email, "role": user.role, "distributor_id": distributor_id},
    )
    return UserCreatedOut(**UserOut.of(user).model_dump(), password=generated).model_dump(
        mode="json"
    ), 201


@api.get("/users/<id:user_id>")
@operation("Get a console user", tag="users", response=UserOut)
@secured
def get_user(user_id: int) -> Any:
    principal = caller_with("users")
    user = accounts.get_user_or_raise(db_session(), tenant_id=principal.tenant_id, user_id=user_id)
    return UserOut.of(user).model_dump(mode="json")


@api.patch("/users/<id:user_id>")
@operation(
    "Change a user's role (and distributor), name, or disable / enable it; its sessions end",
    tag="users",
    body=UserPatch,
    response=UserOut,
    errors=(409, 415),
)
@secured
def patch_user(user_id: int) -> Any:
    principal = caller_with("users")
    body = parse_body(UserPatch)
    session = db_session()
    user = accounts.get_user_or_raise(session, tenant_id=principal.tenant_id, user_id=user_id)
    if body.role is not None or body.distributor_id is not None:
        role = body.role or user.role
        wanted = body.distributor_id if body.distributor_id is not None else user.distributor_id
        accounts.change_role(
            session,
            tenant_id=principal.tenant_id,
            user_id=user.id,
            role=role,
            distributor_id=_distributor_of(principal, role, wanted),
            actor=principal.actor,
            ip=client_ip(),
        )
    if body.name is not None and body.name.strip() != user.name:
        user.name = body.name.strip()
        session.flush()
        audit("user.rename", target_type="user", target_id=user.id, detail={"name": user.name})
    if body.disabled is not None:
        accounts.set_disabled(
            session,
            tenant_id=principal.tenant_id,
            user_id=user.id,
            disabled=body.disabled,
            actor=principal.actor,
            by_user_id=principal.user_id,
            ip=client_ip(),
        )
    return UserOut.of(user).model_dump(mode="json")


@api.post("/users/<id:user_id>/password-reset")
@operation(
    "Give a user a new temporary password (answered once); its sessions end",
    tag="users",
    response=PasswordOut,
)
@secured
def reset_password(user_id: int) -> Any:
    principal = caller_with("users")
    session = db_session()
    user = accounts.get_user_or_raise(session, tenant_id=principal.tenant_id, user_id=user_id)
    password = accounts.temporary_password()
    accounts.set_password(
        session,
        user=user,
        password=password,
        actor=principal.actor,
        action="user.password_reset",
        ip=client_ip(),
    )
    return PasswordOut(password=password).model_dump()
