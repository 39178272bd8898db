"""Member services: members and the scan's entry into the points ledger."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from core.db import utcnow
from members.errors import MemberNotFoundError
from members.ledger import Applied, Expiry, earn
from members.models import Member


def create_member(session: Session, *, tenant_id: int) -> Member:
    member = Member(tenant_id=tenant_id, created_at=utcnow())
    session.add(member)
    session.flush()
    return member


def get_member_or_raise(session: Session, *, tenant_id: int, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.tenant_id != tenant_id:
        raise MemberNotFoundError(f"no member {member_id}")
    return member


def scan_key(batch_id: int, serial: int) -> str:
    """The business key of a code's points: one earn per code, ever, whoever scans it."""
    return f"scan:{batch_id}:{serial}"


def credit_scan_points(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    batch_id: int,
    serial: int,
    points: int,
    expiry: Expiry,
    timezone: str = "Asia/Shanghai",
    pending_for: dt.timedelta = dt.timedelta(days=1),
    now: dt.datetime | None = None,
) -> Applied:
    """Credit a valid scan's points, pending for ``pending_for`` (fraud checks run meanwhile).

    Exactly one earn per code, ever: the ledger's unique business key ``scan:<batch>:<serial>``
    decides under any concurrency. ``applied`` is False when the code had earned already (for
    this member or another).
    """
    return earn(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        points=points,
        business_key=scan_key(batch_id, serial),
        expiry=expiry,
        timezone=timezone,
        pending_for=pending_for,
        reason="scan",
        ref={"batch_id": batch_id, "serial": serial},
        now=now,
        once_per_key=True,
    )
