"""Core services: tenants, users, API keys, the audit log and tenant key versions.

Every function takes a session, flushes and never commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import passwords
from core.db import utcnow
from core.errors import (
    AuthenticationRequiredError,
    ConflictError,
    NotFoundError,
    ValidationFailedError,
)
from core.keyring import unwrap_secret, wrap_secret
from core.models import ROLES, ApiKey, AuditEntry, CodeKey, Tenant, User

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
API_KEY_PREFIX = "yk_"


# --- tenants -------------------------------------------------------------------------------


def create_tenant(
    session: Session, *, slug: str, name: str, scan_host: str | None = None
) -> Tenant:
    if not SLUG_RE.match(slug):
        raise ValidationFailedError.field(
            "slug", "3-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        )
    if not name.strip():
        raise ValidationFailedError.field("name", "must not be empty")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise ConflictError(f"tenant {slug!r} already exists", errors={"slug": "already taken"})
    tenant = Tenant(slug=slug, name=name.strip(), scan_host=scan_host)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant_by_slug(session: Session, slug: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.slug == slug))


def get_tenant_by_slug_or_raise(session: Session, slug: str) -> Tenant:
    tenant = get_tenant_by_slug(session, slug)
    if tenant is None:
        raise NotFoundError(f"no tenant {slug!r}", errors={"tenant": "unknown tenant"})
    return tenant


DEFAULT_TIMEZONE = "Asia/Shanghai"


def tenant_timezone(session: Session, tenant_id: int) -> str:
    """The brand's timezone name (days, expiry and local times are the brand's)."""
    tenant = session.get(Tenant, tenant_id)
    return tenant.timezone if tenant is not None and tenant.timezone else DEFAULT_TIMEZONE


def tenant_today(session: Session, tenant_id: int, now: dt.datetime | None = None) -> dt.date:
    """Today in the brand's timezone."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(ZoneInfo(tenant_timezone(session, tenant_id))).date()


def list_tenants(session: Session) -> Sequence[Tenant]:
    return session.scalars(select(Tenant).order_by(Tenant.id)).all()


# --- users and API keys -------------------------------------------------------------------


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationFailedError.field("role", f"must be one of {', '.join(ROLES)}")


def create_user(
    session: Session,
    *,
    tenant_id: int,
    email: str,
    role: str,
    password: str | None = None,
    name: str = "",
    distributor_id: int | None = None,
) -> User:
    """A console user (``password`` None: it cannot sign in until one is set)."""
    _check_role(role)
    email = email.strip().lower() if isinstance(email, str) else ""
    local, _, domain = email.partition("@")
    if not local or "." not in domain or "@" in domain or len(email) > 254 or " " in email:
        raise ValidationFailedError.field("email", "must be an e-mail address")
    if password is not None:
        try:
            passwords.check_new_password(password, email=email)
        except ValueError as exc:
            raise ValidationFailedError.field("password", str(exc)) from None
    if len(name) > 200:
        raise ValidationFailedError.field("name", "at most 200 characters")
    if role == "distributor" and distributor_id is None:
        raise ValidationFailedError.field(
            "distributor_id", "a distributor user acts for one distributor: name it"
        )
    exists = select(User.id).where(User.tenant_id == tenant_id, User.email == email)
    if session.scalar(exists) is not None:
        raise ConflictError(f"user {email} already exists", errors={"email": "already taken"})
    user = User(
        tenant_id=tenant_id,
        email=email,
        role=role,
        name=name.strip(),
        distributor_id=distributor_id if role == "distributor" else None,
        password_hash=passwords.hash_password(password) if password else None,
        password_changed_at=utcnow() if password else None,
    )
    session.add(user)
    session.flush()
    return user


def check_user_password(user: User, password: str) -> bool:
    return passwords.verify_password(user.password_hash, password)


@dataclasses.dataclass(frozen=True)
class IssuedApiKey:
    """An API key as issued: ``token`` is shown once and never stored."""

    key: ApiKey
    token: str


def _hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_api_key(
    session: Session, *, tenant_id: int, name: str, role: str, user_id: int | None = None
) -> IssuedApiKey:
    _check_role(role)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=tenant_id,
        user_id=user_id,
        name=name,
        role=role,
        prefix=prefix,
        secret_hash=_hash_secret(secret),
    )
    session.add(key)
    session.flush()
    return IssuedApiKey(key=key, token=f"{API_KEY_PREFIX}{prefix}_{secret}")


def authenticate_api_key(session: Session, token: str) -> ApiKey:
    """The live key a bearer token names, or AuthenticationRequiredError."""
    if not token.startswith(API_KEY_PREFIX) or token.count("_") < 2:
        raise AuthenticationRequiredError("the API key is malformed")
    prefix, _, secret = token[len(API_KEY_PREFIX) :].partition("_")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.secret_hash, _hash_secret(secret)):
        raise AuthenticationRequiredError("the API key is not valid")
    if key.revoked_at is not None:
        raise AuthenticationRequiredError("the API key has been revoked")
    return key


def revoke_api_key(session: Session, *, tenant_id: int, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFoundError(f"no API key {key_id}")
    key.revoked_at = key.revoked_at or utcnow()
    session.flush()
    return key


# --- audit ---------------------------------------------------------------------------------


def record_audit(
    session: Session,
    *,
    tenant_id: int | None,
    actor: str,
    action: str,
    target_type: str,
    target_id: object,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
        ip=ip,
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(
    session: Session,
    *,
    tenant_id: int,
    limit: int = 100,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_id: int | None = None,
) -> Sequence[AuditEntry]:
    """The tenant's audit entries, newest first: of one ``action``, at or after ``since`` and
    before ``until``, older than the entry ``before_id`` (the keyset page)."""
    stmt = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)).all()


def audit_actions(session: Session, *, tenant_id: int) -> list[str]:
    """The actions the tenant's audit log holds (what its filter offers)."""
    stmt = (
        select(AuditEntry.action)
        .where(AuditEntry.tenant_id == tenant_id)
        .distinct()
        .order_by(AuditEntry.action)
    )
    return list(session.scalars(stmt).all())


# --- tenant key versions (the key ring) -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeySecret:
    """An unwrapped key version, for the code layer to derive its working keys from."""

    key_id: int
    tenant_id: int
    secret: bytes
    status: str


def create_code_key(session: Session, *, master_key: bytes, tenant_id: int) -> CodeKey:
    """A new current key version for ``tenant_id``; the previous current one stays active."""
    session.execute(
        update(CodeKey)
        .where(CodeKey.tenant_id == tenant_id, CodeKey.status == "current")
        .values(status="active")
    )
    for _attempt in range(64):
        key_id = secrets.randbelow(32767) + 1
        secret = secrets.token_bytes(32)
        key = CodeKey(
            id=key_id,
            tenant_id=tenant_id,
            status="current",
            wrapped_secret=wrap_secret(
                master_key, key_id=key_id, tenant_id=tenant_id, secret=secret
            ),
        )
        try:
            with session.begin_nested():
                session.add(key)
                session.flush()
        except IntegrityError:
            continue  # the random id is taken (or a concurrent rotation won): draw again
        return key
    raise ConflictError("could not allocate a key id; the key space is nearly full")


def get_current_code_key(session: Session, *, tenant_id: int) -> CodeKey | None:
    stmt = select(CodeKey).where(CodeKey.tenant_id == tenant_id, CodeKey.status == "current")
    return session.scalar(stmt)


def list_code_keys(session: Session, *, tenant_id: int | None = None) -> Sequence[CodeKey]:
    stmt = select(CodeKey).order_by(CodeKey.created_at, CodeKey.id)
    if tenant_id is not None:
        stmt = stmt.where(CodeKey.tenant_id == tenant_id)
    return session.scalars(stmt).all()


def retire_code_key(session: Session, *, tenant_id: int, key_id: int, reason: str) -> CodeKey:
    """Retire a key version: every code it made stops verifying."""
    key = session.get(CodeKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFoundError(f"no key {key_id} for this tenant", errors={"key_id": "unknown key"})
    if not reason.strip():
        raise ValidationFailedError.field("reason", "say why the key is retired")
    if key.status != "retired":
        key.status = "retired"
        key.retired_at = utcnow()
        key.retired_reason = reason.strip()[:200]
        session.flush()
    return key


def get_key_secret(session: Session, *, master_key: bytes, key_id: int) -> KeySecret | None:
    """One key version, unwrapped, as this session sees it (its own uncommitted keys too)."""
    key = session.get(CodeKey, key_id)
    if key is None:
        return None
    return KeySecret(
        key_id=key.id,
        tenant_id=key.tenant_id,
        status=key.status,
        secret=unwrap_secret(
            master_key, key_id=key.id, tenant_id=key.tenant_id, wrapped=key.wrapped_secret
        ),
    )


def load_key_secrets(session: Session, *, master_key: bytes) -> list[KeySecret]:
    """Every key version, unwrapped: what an offline verifier keeps in memory."""
    return [
        KeySecret(
            key_id=key.id,
            tenant_id=key.tenant_id,
            status=key.status,
            secret=unwrap_secret(
                master_key, key_id=key.id, tenant_id=key.tenant_id, wrapped=key.wrapped_secret
            ),
        )
        for key in list_code_keys(session)
    ]


# --- data keys ----------------------------------------------------------------------------------


def data_key(session: Session, *, master_key: bytes, tenant_id: int, purpose: str) -> bytes:
    """The tenant's 32-byte key for ``purpose`` (e.g. ``pii``), made on first use. Concurrent
    first uses agree: the primary key lets one insert win, and everyone reads that one."""
    from core.db import insert_ignore
    from core.keyring import unwrap_data_key, wrap_data_key
    from core.models import DataKey

    row = session.get(DataKey, (tenant_id, purpose))
    if row is None:
        secret = secrets.token_bytes(32)
        insert_ignore(
            session,
            DataKey.__table__,
            {
                "tenant_id": tenant_id,
                "purpose": purpose,
                "wrapped": wrap_data_key(
                    master_key, tenant_id=tenant_id, purpose=purpose, secret=secret
                ),
                "created_at": utcnow(),
            },
        )
        row = session.get(DataKey, (tenant_id, purpose), populate_existing=True)
        assert row is not None
    return unwrap_data_key(master_key, tenant_id=tenant_id, purpose=purpose, wrapped=row.wrapped)
