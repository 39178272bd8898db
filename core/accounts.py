"""Console accounts: sign-in with lock-out, server-side sessions, CSRF tokens, TOTP, and the
admin's management of users (roles, passwords, disabling).

Every function takes a session, flushes and never commits. Sign-in answers the same for an
unknown brand, an unknown e-mail, a disabled user and a wrong password, in the same time (an
unknown account still pays for a scrypt verification); failures are counted per brand and
e-mail in ``core_sign_in_throttles`` by one atomic upsert, so concurrent guesses on many
processes are all counted. Numbers and reasons: docs/console-access.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.orm import Session

from core import passwords
from core.config import Settings
from core.db import UTCDateTime, dialect_insert, utcnow
from core.errors import ConflictError, NotFoundError, ValidationFailedError
from core.keyring import open_sealed, seal
from core.models import ROLES, ConsoleSession, SignInThrottle, Tenant, User
from core.services import SLUG_RE, data_key, get_tenant_by_slug, record_audit

SESSION_TOKEN_PREFIX = "cs_"
SECOND_FACTOR_MINUTES = 5  # how long a right password waits for its TOTP code
TOUCH_SECONDS = 60  # last_seen_at is written at most this often per session
TOTP_DIGITS = 6
TOTP_PERIOD = 30
TOTP_ISSUER = "Yima"


def user_actor(user_id: int, email: str) -> str:
    """The audit log's name for a console user."""
    return f"user:{user_id}:{email}"


# --- e-mail addresses ------------------------------------------------------------------------


def normalize_email(text: object) -> str:
    """The address lower-cased and trimmed, or a 422 naming ``email``."""
    if not isinstance(text, str):
        raise ValidationFailedError.field("email", "must be an e-mail address")
    email = text.strip().lower()
    local, _, domain = email.partition("@")
    if (
        not local
        or "." not in domain
        or len(email) > 254
        or any(c.isspace() or ord(c) < 0x20 for c in email)
        or domain.startswith(".")
        or domain.endswith(".")
        or "@" in domain
    ):
        raise ValidationFailedError.field("email", "must be an e-mail address")
    return email


def _email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


# --- lock-out ----------------------------------------------------------------------------------


def locked_until(
    session: Session, *, tenant_id: int, email: str, now: dt.datetime
) -> dt.datetime | None:
    """When the e-mail's lock at this brand ends, or None when it may try."""
    until = session.scalar(
        select(SignInThrottle.locked_until).where(
            SignInThrottle.tenant_id == tenant_id,
            SignInThrottle.email_hash == _email_hash(email),
        )
    )
    return until if until is not None and until > now else None


def record_failure(
    session: Session, *, settings: Settings, tenant_id: int, email: str, now: dt.datetime
) -> dt.datetime | None:
    """Count one failed sign-in of ``email``; the end of the lock it is under, or None.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING: the count lives in the database, and
    concurrent failures each add one, so the lock comes at the Nth failure however many
    processes answer. A count starts again once its first failure is older than the lock
    period (and so once a lock has run out).
    """
    table = SignInThrottle.__table__
    window_start = now - dt.timedelta(minutes=settings.sign_in_lock_minutes)
    stale = table.c.first_failed_at < window_start
    stmt = dialect_insert(session)(table).values(
        tenant_id=tenant_id, email_hash=_email_hash(email), failures=1, first_failed_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.tenant_id, table.c.email_hash],
        set_={
            "failures": case((stale, 1), else_=table.c.failures + 1),
            "first_failed_at": case(
                (stale, literal(now, UTCDateTime())), else_=table.c.first_failed_at
            ),
        },
    ).returning(table.c.failures, table.c.locked_until)
    failures, until = session.execute(stmt).one()
    if until is not None and until > now:
        return until  # locked meanwhile by a concurrent failure
    if failures < settings.sign_in_max_failures:
        return None
    until = now + dt.timedelta(minutes=settings.sign_in_lock_minutes)
    session.execute(
        update(SignInThrottle)
        .where(
            SignInThrottle.tenant_id == tenant_id,
            SignInThrottle.email_hash == _email_hash(email),
        )
        .values(locked_until=until)
    )
    return until


def clear_failures(session: Session, *, tenant_id: int, email: str) -> None:
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.tenant_id == tenant_id,
            SignInThrottle.email_hash == _email_hash(email),
        )
    )


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInUser:
    """Who a console session token names."""

    tenant_id: int
    user_id: int
    session_id: int
    email: str
    name: str
    role: str
    distributor_id: int | None
    stage: str
    totp_enabled: bool


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(secret_key: str, token: str) -> str:
    """The CSRF token that goes with a session token: an HMAC under the app's secret, so it is
    never stored, changes with every session and cannot be computed without the cookie."""
    mac = hmac.new(secret_key.encode(), b"yima/csrf/" + token.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def csrf_token_matches(secret_key: str, token: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(
        csrf_token_for(secret_key, token).encode(), (sent or "").encode()
    )


def open_console_session(
    session: Session,
    *,
    settings: Settings,
    user: User,
    stage: Literal["totp", "active"],
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A new session for ``user``; its token (only the hash is kept)."""
    now = now or utcnow()
    token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    lasts = (
        dt.timedelta(minutes=SECOND_FACTOR_MINUTES)
        if stage == "totp"
        else dt.timedelta(hours=settings.console_session_hours)
    )
    session.add(
        ConsoleSession(
            token_hash=_token_hash(token),
            tenant_id=user.tenant_id,
            user_id=user.id,
            stage=stage,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lasts,
            ip=ip[:64] if ip else None,
            user_agent=user_agent.replace("\x00", "")[:200] if user_agent else None,
        )
    )
    session.flush()
    return token


def session_of_token(
    session: Session, *, settings: Settings, token: str | None, now: dt.datetime | None = None
) -> SignedInUser | None:
    """The user a live session token names, or None (unknown, expired, idle too long, revoked,
    its user disabled). A live session's ``last_seen_at`` moves on (at most once a minute)."""
    if not token or not token.startswith(SESSION_TOKEN_PREFIX) or len(token) > 64:
        return None
    now = now or utcnow()
    row = session.execute(
        select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(ConsoleSession.token_hash == _token_hash(token))
    ).first()
    if row is None:
        return None
    live, user = row[0], row[1]
    idle = dt.timedelta(minutes=settings.console_session_idle_minutes)
    if (
        live.revoked_at is not None
        or live.expires_at <= now
        or (live.stage == "active" and live.last_seen_at + idle <= now)
        or user.disabled_at is not None
    ):
        return None
    if (now - live.last_seen_at).total_seconds() >= TOUCH_SECONDS:
        session.execute(
            update(ConsoleSession).where(ConsoleSession.id == live.id).values(last_seen_at=now)
        )
    return SignedInUser(
        tenant_id=user.tenant_id,
        user_id=user.id,
        session_id=live.id,
        email=user.email,
        name=user.name,
        role=user.role,
        distributor_id=user.distributor_id,
        stage=live.stage,
        totp_enabled=user.totp_enabled_at is not None,
    )


def close_session(session: Session, *, session_id: int, now: dt.datetime | None = None) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


def revoke_user_sessions(session: Session, *, user_id: int, now: dt.datetime | None = None) -> int:
    """End every live session of the user (a new password, role or status); how many."""
    done = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def purge_sessions(session: Session, *, now: dt.datetime | None = None, keep_days: int = 30) -> int:
    """Delete sessions that ended more than ``keep_days`` ago, and stale failure counts."""
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    done = session.execute(
        delete(ConsoleSession).where(
            (ConsoleSession.expires_at < cutoff) | (ConsoleSession.revoked_at < cutoff)
        )
    )
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.first_failed_at < cutoff,
            (SignInThrottle.locked_until.is_(None)) | (SignInThrottle.locked_until < cutoff),
        )
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


# --- sign-in -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInOutcome:
    """What a sign-in step came to: ``signed_in`` (``token`` is a full session), ``totp``
    (``token`` waits for the second factor), ``failed`` or ``locked`` (until ``locked_until``).
    """

    status: Literal["signed_in", "totp", "failed", "locked"]
    token: str | None = None
    locked_until: dt.datetime | None = None
    user_id: int | None = None


def _failed(
    session: Session,
    *,
    settings: Settings,
    tenant_id: int,
    email: str,
    user: User | None,
    now: dt.datetime,
    ip: str | None,
) -> SignInOutcome:
    until = record_failure(session, settings=settings, tenant_id=tenant_id, email=email, now=now)
    if until is None:
        return SignInOutcome("failed")
    record_audit(
        session,
        tenant_id=tenant_id,
        actor=user_actor(user.id, user.email) if user is not None else f"sign-in:{email}",
        action="user.locked_out",
        target_type="user",
        target_id=user.id if user is not None else "unknown",
        detail={"email": email, "locked_until": until.isoformat()},
        ip=ip,
    )
    return SignInOutcome("locked", locked_until=until)


def attempt_sign_in(
    session: Session,
    *,
    settings: Settings,
    brand: str,
    email: str,
    password: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> SignInOutcome:
    """Check a brand, e-mail and password. The caller commits whatever the outcome: a failure
    is counted (and may lock the e-mail) even though the answer is a refusal."""
    now = now or utcnow()
    tenant = get_tenant_by_slug(session, brand) if SLUG_RE.match(brand) else None
    if tenant is None:
        passwords.burn_time(password)
        return SignInOutcome("failed")
    until = locked_until(session, tenant_id=tenant.id, email=email, now=now)
    if until is not None:
        return SignInOutcome("locked", locked_until=until)
    user = session.scalar(select(User).where(User.tenant_id == tenant.id, User.email == email))
    if user is None:
        passwords.burn_time(password)
    if (
        user is None
        or not passwords.verify_password(user.password_hash, password)
        or user.disabled_at is not None
    ):
        return _failed(
            session,
            settings=settings,
            tenant_id=tenant.id,
            email=email,
            user=user,
            now=now,
            ip=ip,
        )
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    if user.totp_enabled_at is not None:
        # The count goes on until the code is right too: a known password must not buy a
        # fresh set of guesses at the code.
        token = open_console_session(
            session,
            settings=settings,
            user=user,
            stage="totp",
            ip=ip,
            user_agent=user_agent,
            now=now,
        )
        return SignInOutcome("totp", token=token, user_id=user.id)
    clear_failures(session, tenant_id=tenant.id, email=email)
    return _signed_in(session, settings=settings, user=user, ip=ip, user_agent=user_agent, now=now)


def _signed_in(
    session: Session,
    *,
    settings: Settings,
    user: User,
    ip: str | None,
    user_agent: str | None,
    now: dt.datetime,
    second_factor: bool = False,
) -> SignInOutcome:
    token = open_console_session(
        session, settings=settings, user=user, stage="active", ip=ip, user_agent=user_agent, now=now
    )
    user.last_sign_in_at = now
    record_audit(
        session,
        tenant_id=user.tenant_id,
        actor=user_actor(user.id, user.email),
        action="user.sign_in",
        target_type="user",
        target_id=user.id,
        detail={"second_factor": "totp" if second_factor else None},
        ip=ip,
    )
    return SignInOutcome("signed_in", token=token, user_id=user.id)


def complete_second_factor(
    session: Session,
    *,
    settings: Settings,
    token: str,
    code: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> SignInOutcome:
    """The TOTP step of a sign-in. A right code ends the waiting session and opens a new one
    (a new token: whoever saw the first learns nothing); a wrong code counts as a failed
    sign-in. ``failed`` with no user when the waiting session is gone (start again)."""
    now = now or utcnow()
    waiting = session_of_token(session, settings=settings, token=token, now=now)
    if waiting is None or waiting.stage != "totp":
        return SignInOutcome("failed")
    user = session.get(User, waiting.user_id)
    assert user is not None
    until = locked_until(session, tenant_id=user.tenant_id, email=user.email, now=now)
    if until is not None:
        close_session(session, session_id=waiting.session_id, now=now)
        return SignInOutcome("locked", locked_until=until)
    if not use_totp_code(session, settings=settings, user=user, code=code, now=now):
        outcome = _failed(
            session,
            settings=settings,
            tenant_id=user.tenant_id,
            email=user.email,
            user=user,
            now=now,
            ip=ip,
        )
        if outcome.status == "locked":
            close_session(session, session_id=waiting.session_id, now=now)
        return SignInOutcome(
            outcome.status, token=None, locked_until=outcome.locked_until, user_id=user.id
        )
    clear_failures(session, tenant_id=user.tenant_id, email=user.email)
    close_session(session, session_id=waiting.session_id, now=now)
    return _signed_in(
        session,
        settings=settings,
        user=user,
        ip=ip,
        user_agent=user_agent,
        now=now,
        second_factor=True,
    )


def sign_out(session: Session, *, who: SignedInUser, ip: str | None = None) -> None:
    close_session(session, session_id=who.session_id)
    record_audit(
        session,
        tenant_id=who.tenant_id,
        actor=user_actor(who.user_id, who.email),
        action="user.sign_out",
        target_type="user",
        target_id=who.user_id,
        ip=ip,
    )


# --- TOTP (RFC 6238) -------------------------------------------------------------------------


def _totp_key(session: Session, settings: Settings, tenant_id: int) -> bytes:
    return data_key(
        session, master_key=settings.master_key_bytes, tenant_id=tenant_id, purpose="totp"
    )


def _seal_totp(key: bytes, user_id: int, secret: bytes) -> bytes:
    return seal(key, secret, f"yima/totp/{user_id}".encode())


def _open_totp(key: bytes, user_id: int, sealed: bytes) -> bytes:
    return open_sealed(key, sealed, f"yima/totp/{user_id}".encode())


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, TOTP_DIGITS, SHA1(), TOTP_PERIOD, enforce_key_length=True)


@dataclass(frozen=True)
class TotpEnrolment:
    """A secret waiting for its first code: show ``uri`` as a QR code, ``secret`` for typing."""

    secret: str
    uri: str


def begin_totp_enrolment(session: Session, *, settings: Settings, user: User) -> TotpEnrolment:
    """A new secret for ``user`` (replacing any unconfirmed one), stored sealed; not in force
    until :func:`confirm_totp` sees a code made with it."""
    if user.totp_enabled_at is not None:
        raise ConflictError(
            "two-step sign-in is already on; turn it off first", errors={"totp": "already on"}
        )
    secret = secrets.token_bytes(20)  # 160 bits, as RFC 4226 recommends
    user.totp_secret = _seal_totp(_totp_key(session, settings, user.tenant_id), user.id, secret)
    user.totp_last_step = 0
    session.flush()
    return _enrolment(session, user, secret)


def _enrolment(session: Session, user: User, secret: bytes) -> TotpEnrolment:
    """What an authenticator app needs: the key in text and the provisioning URI (QR code)."""
    tenant = session.get(Tenant, user.tenant_id)
    issuer = f"{TOTP_ISSUER} {tenant.name}" if tenant is not None else TOTP_ISSUER
    return TotpEnrolment(
        secret=base64.b32encode(secret).decode().rstrip("="),
        uri=_totp(secret).get_provisioning_uri(user.email, issuer.replace(":", " ")),
    )


def pending_totp_enrolment(
    session: Session, *, settings: Settings, user: User
) -> TotpEnrolment | None:
    """The enrolment begun and not yet confirmed, if any (to show its QR code again)."""
    if user.totp_secret is None or user.totp_enabled_at is not None:
        return None
    secret = _open_totp(_totp_key(session, settings, user.tenant_id), user.id, user.totp_secret)
    return _enrolment(session, user, secret)


def use_totp_code(
    session: Session, *, settings: Settings, user: User, code: str, now: dt.datetime | None = None
) -> bool:
    """True when ``code`` is the user's code for now (or the step before or after, for clock
    drift) and was not used before: accepting it moves ``totp_last_step`` forward in one
    guarded UPDATE, so two requests with the same code cannot both pass."""
    code = code.strip().replace(" ", "")
    if user.totp_secret is None or len(code) != TOTP_DIGITS or not code.isdigit():
        return False
    secret = _open_totp(_totp_key(session, settings, user.tenant_id), user.id, user.totp_secret)
    totp = _totp(secret)
    moment = (now or utcnow()).timestamp()
    current = int(moment) // TOTP_PERIOD
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate(step * TOTP_PERIOD), code.encode()):
            done = session.execute(
                update(User)
                .where(User.id == user.id, User.totp_last_step < step)
                .values(totp_last_step=step)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return False  # used already
            session.refresh(user, ["totp_last_step"])
            return True
    return False


def confirm_totp(
    session: Session,
    *,
    settings: Settings,
    user: User,
    code: str,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Turn two-step sign-in on with the first code from the user's app (422 when wrong)."""
    if user.totp_enabled_at is not None:
        raise ConflictError("two-step sign-in is already on", errors={"totp": "already on"})
    if user.totp_secret is None:
        raise ConflictError("start the enrolment first", errors={"totp": "not started"})
    if not use_totp_code(session, settings=settings, user=user, code=code, now=now):
        raise ValidationFailedError.field("code", "not the code the app shows now")
    user.totp_enabled_at = now or utcnow()
    session.flush()
    record_audit(
        session,
        tenant_id=user.tenant_id,
        actor=user_actor(user.id, user.email),
        action="user.totp_enable",
        target_type="user",
        target_id=user.id,
        ip=ip,
    )


def disable_totp(session: Session, *, user: User, actor: str, ip: str | None = None) -> None:
    """Turn two-step sign-in off (the user with its password, or an admin for a lost phone)."""
    was_on = user.totp_enabled_at is not None
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = 0
    session.flush()
    if was_on:
        record_audit(
            session,
            tenant_id=user.tenant_id,
            actor=actor,
            action="user.totp_disable",
            target_type="user",
            target_id=user.id,
            ip=ip,
        )


# --- users as an admin manages them ------------------------------------------------------------


def get_user(session: Session, *, tenant_id: int, user_id: int) -> User | None:
    user = session.get(User, user_id)
    return user if user is not None and user.tenant_id == tenant_id else None


def get_user_or_raise(session: Session, *, tenant_id: int, user_id: int) -> User:
    user = get_user(session, tenant_id=tenant_id, user_id=user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id}")
    return user


def list_users(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    role: str | None = None,
) -> Sequence[User]:
    stmt = select(User).where(User.tenant_id == tenant_id, User.id > after_id)
    if role is not None:
        check_role(role)
        stmt = stmt.where(User.role == role)
    return session.scalars(stmt.order_by(User.id).limit(limit)).all()


def check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationFailedError.field("role", f"must be one of {', '.join(ROLES)}")
    return role


def check_distributor(role: str, distributor_id: int | None) -> int | None:
    """A distributor user needs its distributor; no other role has one."""
    if role == "distributor":
        if distributor_id is None:
            raise ValidationFailedError.field(
                "distributor_id", "a distributor user acts for one distributor: name it"
            )
        return distributor_id
    return None


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse to take away the brand's last active admin (nobody could manage users)."""
    if user.role != "admin" or user.disabled_at is not None:
        return
    others = session.scalar(
        select(func.count()).select_from(
            select(User.id)
            .where(
                User.tenant_id == user.tenant_id,
                User.role == "admin",
                User.disabled_at.is_(None),
                User.id != user.id,
            )
            .with_for_update()
            .subquery()
        )
    )
    if not others:
        raise ConflictError(
            "the brand's last active admin cannot lose the role or be disabled",
            errors={"role": "keep at least one active admin"},
        )


def change_role(
    session: Session,
    *,
    tenant_id: int,
    user_id: int,
    role: str,
    distributor_id: int | None,
    actor: str,
    ip: str | None = None,
) -> User:
    """A user's new role (and distributor); its sessions end, audited."""
    check_role(role)
    distributor_id = check_distributor(role, distributor_id)
    user = get_user_or_raise(session, tenant_id=tenant_id, user_id=user_id)
    if user.role == role and user.distributor_id == distributor_id:
        return user
    if role != "admin":
        _keep_an_admin(session, user)
    before = {"role": user.role, "distributor_id": user.distributor_id}
    user.role = role
    user.distributor_id = distributor_id
    session.flush()
    revoke_user_sessions(session, user_id=user.id)
    record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="user.role_change",
        target_type="user",
        target_id=user.id,
        detail={"from": before, "to": {"role": role, "distributor_id": distributor_id}},
        ip=ip,
    )
    return user


def set_disabled(
    session: Session,
    *,
    tenant_id: int,
    user_id: int,
    disabled: bool,
    actor: str,
    by_user_id: int | None = None,
    ip: str | None = None,
) -> User:
    """Disable a user (its sessions end; it can no longer sign in) or enable it again."""
    user = get_user_or_raise(session, tenant_id=tenant_id, user_id=user_id)
    if disabled == (user.disabled_at is not None):
        return user
    if disabled:
        if by_user_id == user.id:
            raise ConflictError(
                "you cannot disable yourself", errors={"disabled": "ask another admin"}
            )
        _keep_an_admin(session, user)
        user.disabled_at = utcnow()
        revoke_user_sessions(session, user_id=user.id)
    else:
        user.disabled_at = None
    session.flush()
    record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="user.disable" if disabled else "user.enable",
        target_type="user",
        target_id=user.id,
        ip=ip,
    )
    return user


def set_password(
    session: Session,
    *,
    user: User,
    password: str,
    actor: str,
    action: Literal["user.password_change", "user.password_reset"],
    ip: str | None = None,
) -> None:
    """Store a new password (422 naming ``password`` when too weak); every session of the user
    ends, audited (without the password). An admin's reset is also the way back in for a user
    who lost its phone: it turns two-step verification off (the user turns it on again)."""
    try:
        passwords.check_new_password(password, email=user.email)
    except ValueError as exc:
        raise ValidationFailedError.field("password", str(exc)) from None
    user.password_hash = passwords.hash_password(password)
    user.password_changed_at = utcnow()
    session.flush()
    revoke_user_sessions(session, user_id=user.id)
    clear_failures(session, tenant_id=user.tenant_id, email=user.email)
    if action == "user.password_reset":
        disable_totp(session, user=user, actor=actor, ip=ip)
    record_audit(
        session,
        tenant_id=user.tenant_id,
        actor=actor,
        action=action,
        target_type="user",
        target_id=user.id,
        ip=ip,
    )


def change_own_password(
    session: Session,
    *,
    user: User,
    current: str,
    new: str,
    ip: str | None = None,
) -> None:
    """The user's own change: the current password first (422 naming ``current_password``)."""
    if not passwords.verify_password(user.password_hash, current):
        raise ValidationFailedError.field("current_password", "is not your current password")
    set_password(
        session,
        user=user,
        password=new,
        actor=user_actor(user.id, user.email),
        action="user.password_change",
        ip=ip,
    )


def temporary_password() -> str:
    """A password for an admin to hand over (16 characters of an unambiguous alphabet)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(16))
