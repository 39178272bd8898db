"""Member services: members and the scan's entry into the points ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.db import utcnow
from core.runtime import Runtime
from members.errors import MemberNotFoundError
from members.ledger import Applied, Expiry, earn
from members.models import Member
from members.sessions import SignedIn
from members.settings import get_programme

# A scan with one of these verdicts earns (the first signed-in member to scan a code earns its
# points: the buyer often scans after the shop has checked the item). A suspicious or forged
# code earns nothing.
REWARDED_VERDICTS = frozenset({"genuine", "already_verified"})


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


@dataclass(frozen=True)
class ScanReward:
    """What a scan earned the signed-in member (``points`` 0: nothing, and ``why``)."""

    points: int
    pending_hours: int  # spendable after this many hours (0: at once)
    applied: bool
    why: str  # earned | already_claimed | not_rewarded | other_brand | no_points


def reward_scan(
    session: Session,
    runtime: Runtime,
    *,
    member: SignedIn,
    tenant_id: int,
    batch_id: int,
    serial: int,
    verdict: str,
    timezone: str,
    points: int | None = None,
    now: dt.datetime | None = None,
) -> ScanReward:
    """Credit a rewarded scan to a signed-in member: ``points`` (default: the brand's points per
    scan times the member's tier multiplier), pending for the programme's window, once per code
    ever; growth value (成长值) with it, once per code; a tier upgrade check after commit.

    The scan reaches this through ``campaigns.reward_scan``, whose earn rules set ``points``.
    """
    from members.tiers import add_growth, ladder_of

    if member.tenant_id != tenant_id:
        return ScanReward(0, 0, False, "other_brand")
    if verdict not in REWARDED_VERDICTS:
        return ScanReward(0, 0, False, "not_rewarded")
    programme = get_programme(runtime, session, tenant_id)
    ladder = ladder_of(runtime, session, tenant_id)  # cached: no query when warm
    tier = ladder.by_id.get(member.tier_id) if member.tier_id is not None else None
    if points is None:
        points = round(programme.scan_points * (tier.benefits.points_multiplier if tier else 1.0))
    if points <= 0:
        return ScanReward(0, 0, False, "no_points")
    now = now or utcnow()
    credited = credit_scan_points(
        session,
        tenant_id=tenant_id,
        member_id=member.member_id,
        batch_id=batch_id,
        serial=serial,
        points=points,
        expiry=programme.expiry,
        timezone=timezone,
        pending_for=programme.pending_for,
        now=now,
    )
    if not credited.applied:
        return ScanReward(0, 0, False, "already_claimed")
    if programme.growth_per_scan:
        add_growth(
            session,
            tenant_id=tenant_id,
            member_id=member.member_id,
            points=programme.growth_per_scan,
            business_key=f"scan-growth:{batch_id}:{serial}",
            reason="scan",
            now=now,
        )
    if ladder.above(tier.rank if tier else -1) is not None:
        from core.tasks import dispatch
        from members.tasks import check_tier

        dispatch(session, check_tier, tenant_id, member.member_id)
    return ScanReward(points, programme.pending_hours, True, "earned")
