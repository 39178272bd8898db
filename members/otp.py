"""Sign-in by phone and one-time code (短信验证码).

A code is 6 digits from ``secrets``, sent by SMS and stored only as a keyed hash (HMAC under a
key derived from the brand's ``pii`` data key, bound to the phone's lookup hash), so a copy of
the database gives neither the codes nor a cheap way to guess them. A code lives
``otp_ttl_seconds`` (5 min), is superseded by the next code sent to the same phone, allows
``otp_max_attempts`` wrong guesses and is used once: the atomic ``UPDATE ... WHERE used_at IS
NULL AND expires_at > now AND attempts < max`` decides, so a replayed or concurrently
submitted code opens one session at most.

Sending is limited per phone (1 a minute, 5 an hour, 10 a day) and per IP (20 an hour), checking
per phone (20 an hour), with :mod:`core.ratelimit` (Redis when configured, else in-process):
over a limit is a 429 with Retry-After. Rate-limit keys hold the phone's lookup hash, never the
number.

SMS go through an :class:`SmsSender` chosen by the ``sms_sender`` setting (``log``: the code is
written to the ``yima.sms`` log, for development); a provider is a class with ``send(phone,
text)``. Tests and demos swap a runtime's sender with :func:`use_sms_sender` (and its limiter
with :func:`use_rate_limiter`). A message is sent
only once the code is committed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.db import after_commit, utcnow
from core.errors import ValidationFailedError
from core.models import Tenant
from core.ratelimit import Limit, RateLimiter, build_rate_limiter
from core.runtime import Runtime
from members.errors import OtpInvalidError, OtpRateLimitedError
from members.identity import (
    Enrolled,
    enrol_member,
    mask_phone,
    normalize_phone,
    phone_vault,
)
from members.models import Member, OneTimeCode
from members.sessions import open_session

log = logging.getLogger("yima.sms")

CODE_DIGITS = 6
_CODE = re.compile(r"^[0-9]{6}$")


# --- SMS ----------------------------------------------------------------------------------------


class SmsSender(Protocol):
    """Sends one text message to a phone (``+8613812345678``); raises when it cannot."""

    def send(self, phone: str, text: str) -> None: ...


class LogSmsSender:
    """Development sender: the message goes to the ``yima.sms`` log (the phone masked)."""

    def send(self, phone: str, text: str) -> None:
        log.info("SMS to %s: %s", mask_phone(phone), text)


class RecordingSmsSender:
    """Keeps every message in memory (tests, demos): ``sent`` is [(phone, text), ...]."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        with self._lock:
            self.sent.append((phone, text))

    def last_code(self, phone: str | None = None) -> str:
        """The code in the newest message (to ``phone``, when given)."""
        with self._lock:
            for to, text in reversed(self.sent):
                if phone is None or to == normalize_phone(phone):
                    found = re.search(r"\b[0-9]{6}\b", text)
                    if found:
                        return found.group(0)
        raise LookupError("no code was sent")


SENDERS: dict[str, Callable[[], SmsSender]] = {"log": LogSmsSender}

_senders: weakref.WeakKeyDictionary[Runtime, SmsSender] = weakref.WeakKeyDictionary()
_limiters: weakref.WeakKeyDictionary[Runtime, RateLimiter] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def sms_sender_for(runtime: Runtime) -> SmsSender:
    """The runtime's SMS sender: the one installed by :func:`use_sms_sender`, else the one the
    ``sms_sender`` setting names."""
    with _registry_lock:
        sender = _senders.get(runtime)
        if sender is None:
            sender = _senders[runtime] = SENDERS[runtime.settings.sms_sender]()
        return sender


def use_sms_sender(runtime: Runtime, sender: SmsSender) -> None:
    """Send this runtime's codes through ``sender`` (a provider, or a recorder in tests)."""
    with _registry_lock:
        _senders[runtime] = sender


def use_rate_limiter(runtime: Runtime, limiter: RateLimiter) -> None:
    """Count this runtime's sign-in limits with ``limiter`` (tests: one with its own clock)."""
    with _registry_lock:
        _limiters[runtime] = limiter


def rate_limiter_for(runtime: Runtime) -> RateLimiter:
    with _registry_lock:
        limiter = _limiters.get(runtime)
        if limiter is None:
            limiter = _limiters[runtime] = build_rate_limiter(runtime.redis)
        return limiter


# --- limits -------------------------------------------------------------------------------------


def _send_limits(runtime: Runtime) -> tuple[list[Limit], Limit]:
    s = runtime.settings
    per_phone = [
        Limit("otp-phone-minute", s.otp_per_phone_per_minute, 60.0),
        Limit("otp-phone-hour", s.otp_per_phone_per_hour, 3600.0),
        Limit("otp-phone-day", s.otp_per_phone_per_day, 86400.0),
    ]
    return per_phone, Limit("otp-ip-hour", s.otp_per_ip_per_hour, 3600.0)


def _check_limit(runtime: Runtime) -> Limit:
    return Limit("otp-check-hour", runtime.settings.otp_checks_per_phone_per_hour, 3600.0)


def _take(limiter: RateLimiter, hits: list[tuple[Limit, str]], what: str) -> None:
    """Count one event under every (limit, key), or none when any is full (then a 429)."""
    waits = [limiter.peek(limit, key) for limit, key in hits]
    refused = [d.retry_after for d in waits if not d.allowed]
    if not refused:
        for limit, key in hits:
            decision = limiter.hit(limit, key)
            if not decision.allowed:  # a concurrent request took the last slot
                refused.append(decision.retry_after)
    if refused:
        wait = max(refused)
        raise OtpRateLimitedError(f"too many {what}; retry in {wait} s", retry_after=wait)


# --- codes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSent:
    expires_in: int  # seconds
    resend_after: int  # seconds before another code may be asked for


def _message(brand: str, code: str, minutes: int) -> str:
    return f"【{brand}】验证码 {code}，{minutes} 分钟内有效，请勿告诉他人。Your code is {code}."


def send_code(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    phone: str,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> CodeSent:
    """Make a sign-in code for the phone and send it once the transaction commits; codes sent
    before to the same phone stop working. 429 when the phone or the IP asked too often."""
    phone = normalize_phone(phone)
    vault = phone_vault(session, runtime, tenant_id)
    phone_hash = vault.lookup_hash(phone)
    per_phone, per_ip = _send_limits(runtime)
    hits = [(limit, f"{tenant_id}:{phone_hash}") for limit in per_phone]
    if ip:
        hits.append((per_ip, ip))
    limiter = rate_limiter_for(runtime)
    _take(limiter, hits, "codes asked for")
    now = now or utcnow()
    ttl = runtime.settings.otp_ttl_seconds
    session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.tenant_id == tenant_id,
            OneTimeCode.phone_hash == phone_hash,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    session.add(
        OneTimeCode(
            tenant_id=tenant_id,
            phone_hash=phone_hash,
            code_hash=vault.code_hash(phone_hash, code),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
            attempts=0,
        )
    )
    session.flush()
    tenant = session.get(Tenant, tenant_id)
    text = _message(tenant.name if tenant else "Yima", code, max(1, ttl // 60))
    sender = sms_sender_for(runtime)

    def deliver() -> None:
        sender.send(phone, text)

    after_commit(session, deliver)
    # When the next code may be asked for, as the sliding windows see it now.
    waits = [limiter.peek(limit, key) for limit, key in hits[: len(per_phone)]]
    resend_after = max((d.retry_after for d in waits if not d.allowed), default=0)
    return CodeSent(expires_in=ttl, resend_after=resend_after)


def verify_code(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    phone: str,
    code: str,
    now: dt.datetime | None = None,
) -> str:
    """Use the phone's live code; its lookup hash when ``code`` is right.

    Otherwise :class:`OtpInvalidError`, after counting a wrong guess against the code (flushed:
    an entry point that rolls back on errors must commit first, or the guess is not counted —
    the sign-in view does). 429 when the phone was checked too often.
    """
    phone = normalize_phone(phone)
    if not isinstance(code, str) or not _CODE.match(code):
        raise ValidationFailedError.field("code", f"the {CODE_DIGITS} digits sent by SMS")
    vault = phone_vault(session, runtime, tenant_id)
    phone_hash = vault.lookup_hash(phone)
    _take(
        rate_limiter_for(runtime),
        [(_check_limit(runtime), f"{tenant_id}:{phone_hash}")],
        "codes checked",
    )
    now = now or utcnow()
    limit = runtime.settings.otp_max_attempts
    live = session.execute(
        select(OneTimeCode.id, OneTimeCode.code_hash, OneTimeCode.attempts)
        .where(
            OneTimeCode.tenant_id == tenant_id,
            OneTimeCode.phone_hash == phone_hash,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
        )
        .order_by(OneTimeCode.id.desc())
        .limit(1)
    ).first()
    if live is None:
        raise OtpInvalidError(
            "the code has expired or was used: ask for a new one",
            errors={"code": "expired or used"},
        )
    if live.attempts >= limit:
        raise OtpInvalidError(
            "too many wrong codes: ask for a new one", errors={"code": "too many attempts"}
        )
    if not hmac.compare_digest(live.code_hash, vault.code_hash(phone_hash, code)):
        session.execute(
            update(OneTimeCode)
            .where(
                OneTimeCode.id == live.id,
                OneTimeCode.used_at.is_(None),
                OneTimeCode.attempts < limit,
            )
            .values(attempts=OneTimeCode.attempts + 1)
        )
        session.flush()
        left = max(0, limit - live.attempts - 1)
        raise OtpInvalidError(
            f"the code is wrong ({left} attempts left)", errors={"code": "wrong code"}
        )
    used = session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.id == live.id,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
            OneTimeCode.attempts < limit,
        )
        .values(used_at=now)
    )
    if not used.rowcount:  # type: ignore[attr-defined]
        # A concurrent sign-in with the same code got there first.
        raise OtpInvalidError("the code was used: ask for a new one", errors={"code": "used"})
    return phone_hash


@dataclass(frozen=True)
class SignedInMember:
    """A signed-in member: ``token`` is shown once (only its hash is kept)."""

    token: str
    created: bool
    member: Member


def sign_in(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    phone: str,
    code: str,
    referral_code: str | None = None,
    channel: str | None = None,
    source: str = "scan",
    now: dt.datetime | None = None,
) -> SignedInMember:
    """Check the code, find or enrol the member, open a session; one session per code, ever."""
    now = now or utcnow()
    verify_code(session, runtime, tenant_id=tenant_id, phone=phone, code=code, now=now)
    enrolled: Enrolled = enrol_member(
        session,
        runtime,
        tenant_id=tenant_id,
        phone=phone,
        source=source,
        channel=channel,
        referral_code=referral_code,
        now=now,
    )
    member = enrolled.member
    member.last_active_at = now
    token = open_session(session, tenant_id=tenant_id, member_id=member.id, now=now)
    return SignedInMember(token=token, created=enrolled.created, member=member)


def purge_codes(session: Session, *, now: dt.datetime | None = None, keep_days: int = 1) -> int:
    """Delete codes expired more than ``keep_days`` ago (they only ever fail); how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    done = session.execute(delete(OneTimeCode).where(OneTimeCode.expires_at < cutoff))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
