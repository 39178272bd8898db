"""Signed-in members: bearer tokens ``ms_<43 url-safe characters>`` stored as their SHA-256.

A token names one member of one brand; it lasts ``SESSION_DAYS`` and is revoked by sign-out or
erasure. The consumer API takes it as ``Authorization: Bearer ms_...``; the scan app's pages as
the ``yima_m`` cookie (HttpOnly, SameSite=Lax), so a scan made while signed in earns points.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from members.models import Member, MemberSession

SESSION_DAYS = 30
TOKEN_PREFIX = "ms_"


@dataclass(frozen=True)
class SignedIn:
    """Who a member token names."""

    tenant_id: int
    member_id: int
    session_id: int
    tier_id: int | None
    # For the reward-fraud rules: when the member joined, and its phone's block (keyed hash).
    created_at: dt.datetime | None = None
    phone_block: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session, *, tenant_id: int, member_id: int, now: dt.datetime | None = None
) -> str:
    """A new token for the member (shown once: only its hash is kept)."""
    now = now or utcnow()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        MemberSession(
            token_hash=_hash(token),
            tenant_id=tenant_id,
            member_id=member_id,
            created_at=now,
            expires_at=now + dt.timedelta(days=SESSION_DAYS),
        )
    )
    session.flush()
    return token


def member_of_token(
    session: Session, token: str | None, *, now: dt.datetime | None = None
) -> SignedIn | None:
    """The member a live token names, or None (unknown, expired, revoked, erased member)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 64:
        return None
    row = session.execute(
        select(
            MemberSession.id,
            MemberSession.tenant_id,
            MemberSession.member_id,
            MemberSession.expires_at,
            MemberSession.revoked_at,
            Member.tier_id,
            Member.status,
            Member.created_at,
            Member.phone_block,
        )
        .join(Member, Member.id == MemberSession.member_id)
        .where(MemberSession.token_hash == _hash(token))
    ).first()
    if row is None or row.revoked_at is not None or row.status != "active":
        return None
    if row.expires_at <= (now or utcnow()):
        return None
    return SignedIn(
        row.tenant_id, row.member_id, row.id, row.tier_id, row.created_at, row.phone_block
    )


def close_session(session: Session, *, session_id: int) -> None:
    session.execute(
        update(MemberSession)
        .where(MemberSession.id == session_id, MemberSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def close_all_sessions(session: Session, *, member_id: int) -> int:
    """Revoke every token of the member (erasure, a changed phone); how many were live."""
    done = session.execute(
        update(MemberSession)
        .where(MemberSession.member_id == member_id, MemberSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def purge_sessions(session: Session, *, now: dt.datetime | None = None, keep_days: int = 30) -> int:
    """Delete tokens expired or revoked more than ``keep_days`` ago (they only ever fail)."""
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    done = session.execute(
        delete(MemberSession).where(
            or_(MemberSession.expires_at < cutoff, MemberSession.revoked_at < cutoff)
        )
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
