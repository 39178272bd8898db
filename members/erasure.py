"""Erasure (the right to be forgotten, 个人信息删除): a member's personal data goes, the
anonymous record stays.

Removed: the phone (sealed, lookup hash, masked), nickname, birthday, gender, region, the
member's referral code, the sign-in codes sent to the phone, the shipping addresses of its
orders, the tags staff put on it; every session is revoked. Kept, keyed by the member id only:
the points ledger and balances, growth and tier history, check-ins, orders (without address),
coupons, RFM scores — the brand's statistics and liabilities stay whole. The row stays with status
``erased``; the same phone signing in later is a new member. Erasing twice changes nothing.

The audit entry names the member id and counts, never the phone; a member erasing itself is
recorded without its IP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, null, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.services import record_audit
from members.models import Member, MemberTag, OneTimeCode, Order
from members.services import get_member_or_raise
from members.sessions import close_all_sessions


@dataclass(frozen=True)
class Erasure:
    member_id: int
    erased_at: dt.datetime
    already: bool  # True: it had been erased before, nothing changed
    sessions_revoked: int = 0
    codes_deleted: int = 0
    addresses_removed: int = 0


ErasureHook = Callable[[Session, int, int], int]
_erasure_hooks: list[ErasureHook] = []


def on_erasure(hook: ErasureHook) -> None:
    """Run ``hook(session, tenant_id, member_id)`` inside every erasure; it removes the member's
    personal data that another domain keeps and answers how many addresses it removed."""
    if hook not in _erasure_hooks:
        _erasure_hooks.append(hook)


def erase_member(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    actor: str,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> Erasure:
    """Remove the member's personal data and revoke its sessions (see the module docstring);
    records ``members.erase`` in the audit log. Idempotent; 404 for another brand's member."""
    member = get_member_or_raise(session, tenant_id=tenant_id, member_id=member_id)
    if member.status == "erased":
        return Erasure(member_id, member.erased_at or utcnow(), already=True)
    now = now or utcnow()
    phone_hash = member.phone_hash
    codes = 0
    if phone_hash is not None:
        codes = _count(
            session.execute(
                delete(OneTimeCode).where(
                    OneTimeCode.tenant_id == tenant_id, OneTimeCode.phone_hash == phone_hash
                )
            )
        )
    # The status guard makes a concurrent second erasure a no-op.
    erased = session.execute(
        update(Member)
        .where(Member.id == member_id, Member.status == "active")
        .values(
            status="erased",
            erased_at=now,
            phone_hash=None,
            phone_sealed=None,
            phone_masked=None,
            phone_block=None,
            nickname=None,
            birthday=None,
            gender=None,
            region=None,
            referral_code=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(member)
    if not _count(erased):
        return Erasure(member_id, member.erased_at or now, already=True)
    revoked = close_all_sessions(session, member_id=member_id)
    addresses = _count(
        session.execute(
            update(Order)
            .where(Order.member_id == member_id, Order.shipping.is_not(None))
            .values(shipping=null())  # SQL NULL, not JSON 'null'
            .execution_options(synchronize_session=False)
        )
    )
    # Labels staff put on the person go too (automatic tags never match an erased member).
    session.execute(delete(MemberTag).where(MemberTag.member_id == member_id))
    # Domains above members keep personal data of their own (a prize claim's address): they
    # registered to erase it in this same transaction.
    for hook in _erasure_hooks:
        addresses += hook(session, tenant_id, member_id)
    done = Erasure(
        member_id,
        now,
        already=False,
        sessions_revoked=revoked,
        codes_deleted=codes,
        addresses_removed=addresses,
    )
    record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor,
        action="members.erase",
        target_type="member",
        target_id=member_id,
        detail={
            "sessions_revoked": revoked,
            "codes_deleted": codes,
            "addresses_removed": addresses,
        },
        ip=ip,
    )
    return done


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
