"""What a brand's staff see of its members: lists with filters, one member's profile, the
full phone (for the ``pii`` permission, audited by the view), spreadsheet exports (phones masked
unless asked and allowed), and point adjustments with a reason."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import ValidationFailedError
from core.runtime import Runtime
from core.services import tenant_timezone
from members.errors import MemberErasedError
from members.identity import (
    PhoneVault,
    normalize_phone,
    phone_vault,
    points_summary,
    tier_of,
)
from members.ledger import Applied, adjust
from members.models import (
    MEMBER_STATUSES,
    Balance,
    Member,
    Tier,
)
from members.services import get_member_or_raise
from members.settings import get_programme

# --- what a brand's staff see -----------------------------------------------------------------


@dataclass(frozen=True)
class MemberFilter:
    """Which members a list or an export covers (every field optional)."""

    phone_hash: str | None = None
    tier_id: int | None = None
    status: str | None = None
    created_since: dt.datetime | None = None
    created_until: dt.datetime | None = None
    source: str | None = None
    channel: str | None = None

    def apply(self, stmt: Any) -> Any:
        if self.phone_hash is not None:
            stmt = stmt.where(Member.phone_hash == self.phone_hash)
        if self.tier_id is not None:
            stmt = stmt.where(Member.tier_id == self.tier_id)
        if self.status is not None:
            stmt = stmt.where(Member.status == self.status)
        if self.created_since is not None:
            stmt = stmt.where(Member.created_at >= self.created_since)
        if self.created_until is not None:
            stmt = stmt.where(Member.created_at < self.created_until)
        if self.source is not None:
            stmt = stmt.where(Member.source == self.source)
        if self.channel is not None:
            stmt = stmt.where(Member.channel == self.channel)
        return stmt

    def described(self) -> dict[str, Any]:
        """The filter for an audit entry: a phone searched for is named, never written."""
        out: dict[str, Any] = {}
        for name in ("tier_id", "status", "source", "channel"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("created_since", "created_until"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat()
        if self.phone_hash is not None:
            out["phone"] = "given"
        return out


def member_filter(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    phone: str | None = None,
    tier_id: int | None = None,
    status: str | None = None,
    created_since: dt.datetime | None = None,
    created_until: dt.datetime | None = None,
    source: str | None = None,
    channel: str | None = None,
) -> MemberFilter:
    """A checked filter: the phone (any spelling) becomes its lookup hash."""
    if status is not None and status not in MEMBER_STATUSES:
        raise ValidationFailedError.field("status", f"one of {', '.join(MEMBER_STATUSES)}")
    if created_since and created_until and created_until <= created_since:
        raise ValidationFailedError.field("created_until", "must be after created_since")
    phone_hash = None
    if phone is not None:
        phone_hash = phone_vault(session, runtime, tenant_id).lookup_hash(normalize_phone(phone))
    return MemberFilter(
        phone_hash=phone_hash,
        tier_id=tier_id,
        status=status,
        created_since=created_since,
        created_until=created_until,
        source=source,
        channel=channel,
    )


def list_members(
    session: Session,
    *,
    tenant_id: int,
    filters: MemberFilter = MemberFilter(),  # frozen: safe as a default
    after_id: int = 0,
    limit: int = 50,
) -> Sequence[Member]:
    stmt = select(Member).where(Member.tenant_id == tenant_id, Member.id > after_id)
    return session.scalars(filters.apply(stmt).order_by(Member.id).limit(limit)).all()


def member_row(member: Member) -> dict[str, Any]:
    """A member in a list: the phone masked."""
    return {
        "id": member.id,
        "status": member.status,
        "phone": member.phone_masked,
        "nickname": member.nickname,
        "gender": member.gender,
        "birthday": member.birthday,
        "region": member.region,
        "tier_id": member.tier_id,
        "growth": member.growth,
        "source": member.source,
        "channel": member.channel,
        "created_at": member.created_at,
        "last_active_at": member.last_active_at,
    }


def member_profile(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    unmasked: bool = False,
) -> dict[str, Any]:
    """One member as the brand's staff see it; the phone in full only with ``unmasked`` (the
    caller holds ``pii`` and audits the view)."""
    member = get_member_or_raise(session, tenant_id=tenant_id, member_id=member_id)
    phone = member.phone_masked
    if unmasked and member.phone_sealed is not None:
        phone = phone_vault(session, runtime, tenant_id).open(member.phone_sealed)
    invited = session.scalar(
        select(func.count()).select_from(Member).where(Member.referrer_id == member.id)
    )
    return {
        **member_row(member),
        "phone": phone,
        "referral_code": member.referral_code,
        "referrer_id": member.referrer_id,
        "invited": int(invited or 0),
        "tier": tier_of(session, member.tier_id),
        "tier_since": member.tier_since,
        "points": points_summary(session, member_id=member.id),
        "erased_at": member.erased_at,
    }


def member_phone(session: Session, runtime: Runtime, *, tenant_id: int, member_id: int) -> str:
    """The member's full phone number (``+8613812345678``)."""
    member = get_member_or_raise(session, tenant_id=tenant_id, member_id=member_id)
    if member.phone_sealed is None:
        raise MemberErasedError(f"member {member_id} was erased: there is no phone")
    return phone_vault(session, runtime, tenant_id).open(member.phone_sealed)


def count_members(session: Session, *, tenant_id: int, filters: MemberFilter) -> tuple[int, int]:
    """How many members the filter covers, and the highest id among them (0: none)."""
    stmt = select(func.count(), func.coalesce(func.max(Member.id), 0)).where(
        Member.tenant_id == tenant_id
    )
    count, top = session.execute(filters.apply(stmt)).one()
    return int(count), int(top)


EXPORT_COLUMNS = (
    "id",
    "phone",
    "nickname",
    "gender",
    "birthday",
    "region",
    "tier",
    "growth",
    "points_active",
    "points_pending",
    "source",
    "channel",
    "status",
    "created_at",
    "last_active_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """Text for a spreadsheet: a leading formula character is quoted so it stays text."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_rows(
    runtime: Runtime,
    *,
    tenant_id: int,
    filters: MemberFilter,
    upto_id: int,
    vault: PhoneVault | None = None,
    page: int = 1_000,
) -> Iterator[list[str]]:
    """Rows for :data:`EXPORT_COLUMNS`, members up to ``upto_id``, read page by page in a
    session of their own (constant memory). With ``vault`` the phones are in full."""
    after = 0
    while after < upto_id:
        with runtime.db.read_only() as session:
            stmt = (
                select(Member, Balance.active, Balance.pending, Tier.name)
                .outerjoin(Balance, Balance.member_id == Member.id)
                .outerjoin(Tier, Tier.id == Member.tier_id)
                .where(Member.tenant_id == tenant_id, Member.id > after, Member.id <= upto_id)
            )
            rows = session.execute(filters.apply(stmt).order_by(Member.id).limit(page)).all()
        if not rows:
            return
        for member, active, pending, tier in rows:
            phone = member.phone_masked
            if vault is not None and member.phone_sealed is not None:
                phone = vault.open(member.phone_sealed)
            yield [
                str(member.id),
                phone or "",  # a phone is never a formula: +86... stays as it is
                _cell(member.nickname),
                _cell(member.gender),
                _cell(member.birthday),
                _cell(member.region),
                _cell(tier),
                str(member.growth),
                str(active or 0),
                str(pending or 0),
                _cell(member.source),
                _cell(member.channel),
                member.status,
                _cell(member.created_at),
                _cell(member.last_active_at),
            ]
        after = rows[-1][0].id


ADJUSTMENT_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def adjust_points(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    reason: str,
    idempotency_key: str,
    actor: str,
    now: dt.datetime | None = None,
) -> Applied:
    """A manual credit or debit with a reason, applied once per ``idempotency_key``; credits
    expire as the brand's programme says."""
    if not ADJUSTMENT_KEY.match(idempotency_key):
        raise ValidationFailedError.field(
            "idempotency_key", "1-100 characters of A-Z, a-z, 0-9, '_', '.', ':', '-'"
        )
    member = get_member_or_raise(session, tenant_id=tenant_id, member_id=member_id)
    if member.status != "active":
        raise MemberErasedError(f"member {member_id} was erased")
    return adjust(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        points=points,
        business_key=f"manual:{idempotency_key}",
        reason=reason.strip(),
        actor=actor,
        expiry=get_programme(runtime, session, tenant_id).expiry,
        timezone=tenant_timezone(session, tenant_id),
        now=now,
    )
