"""Member tables: members and their identity, the points ledger, tiers and growth value,
redemption (catalogue, orders, coupons), engagement (check-in), tags and RFM scores.

The ledger is the source of truth and is append-only: ``members_points_entries`` holds every
credit and debit with a business key unique per tenant (a retried or concurrent request can
never apply twice). Credits open *lots* (``members_points_lots``: points, what remains, when they
become spendable, when they expire); debits are *allocated* to lots, soonest expiry first
(``members_points_allocations``; a debit the lots cannot cover, such as a clawback of points
already spent, is allocated to no lot: a deficit, and the balance goes negative, visibly). A lot's
``remaining`` and the member's balance (``members_balances``) are caches of those rows, written
in the same transaction and checkable against them (members/ledger.py ``check_balances``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import BigId

ENTRY_KINDS = ("earn", "spend", "expire", "adjust", "reverse")
LOT_STATUSES = ("pending", "active")


GENDERS = ("female", "male", "other")
MEMBER_STATUSES = ("active", "erased")


class Member(Base):
    """A consumer of one brand, found by the keyed hash of a phone number.

    Personal data lives in these columns only (phone sealed, its hash and masked form, profile);
    erasure empties them and keeps the row, so the ledger and statistics stay, anonymous.
    """

    __tablename__ = "members_members"
    __table_args__ = (
        Index("ix_members_members_tenant", "tenant_id", "id"),
        UniqueConstraint("tenant_id", "phone_hash"),
        UniqueConstraint("tenant_id", "referral_code"),
        CheckConstraint(f"gender IN {GENDERS!r}", name="gender"),
        CheckConstraint(f"status IN {MEMBER_STATUSES!r}", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(8), default="active", server_default="active")
    # Identity (personal data: emptied by erasure)
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_masked: Mapped[str | None] = mapped_column(String(16))
    # A keyed hash of the number's first seven digits (its 号段 block): reward-fraud rules count
    # members per block, since farms buy consecutive numbers. Not the number; erased with it.
    phone_block: Mapped[str | None] = mapped_column(String(16))
    nickname: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(8))
    region: Mapped[str | None] = mapped_column(String(64))  # traceability's region codes
    # Where the member came from (statistics: kept by erasure)
    source: Mapped[str] = mapped_column(String(32), default="scan", server_default="scan")
    channel: Mapped[str | None] = mapped_column(String(64))
    referrer_id: Mapped[int | None] = mapped_column(ForeignKey("members_members.id"))
    referral_code: Mapped[str | None] = mapped_column(String(16))
    # Loyalty state (caches of their ledgers, written with them)
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("members_tiers.id"))
    tier_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    growth: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_active_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class MemberSettings(Base):
    """A brand's member programme: scan points, expiry, pending window, engagement rewards.

    One row per tenant, absent until the brand changes a default (members/settings.py).
    """

    __tablename__ = "members_settings"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("core_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OneTimeCode(Base):
    """A sign-in code sent to a phone: expires, single use, a few attempts (its hash only)."""

    __tablename__ = "members_otps"
    __table_args__ = (Index("ix_members_otps_phone", "tenant_id", "phone_hash", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    phone_hash: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")


class MemberSession(Base):
    """A signed-in member's bearer token (its SHA-256 only), revocable, with an expiry."""

    __tablename__ = "members_sessions"
    __table_args__ = (Index("ix_members_sessions_member", "member_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class PointsEntry(Base):
    """One credit or debit of points: append-only, unique by business key per tenant."""

    __tablename__ = "members_points_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "business_key"),
        CheckConstraint(f"kind IN {ENTRY_KINDS!r}", name="kind"),
        CheckConstraint("points <> 0", name="points"),
        Index("ix_members_points_entries_member", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)  # credits > 0, debits < 0
    business_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(200), default="system")
    ref: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PointsLot(Base):
    """What a credit left to spend: pending until ``available_at``, void after ``expires_at``."""

    __tablename__ = "members_points_lots"
    __table_args__ = (
        CheckConstraint(f"status IN {LOT_STATUSES!r}", name="status"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining"),
        Index("ix_members_points_lots_spend", "member_id", "status", "expires_at"),
        Index(
            "ix_members_points_lots_due",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_members_points_lots_pending",
            "available_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigId, ForeignKey("members_points_entries.id"), primary_key=True, autoincrement=False
    )
    tenant_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class PointsAllocation(Base):
    """How much of a debit came out of which lot (no lot: a deficit the lots could not cover)."""

    __tablename__ = "members_points_allocations"
    __table_args__ = (
        CheckConstraint("points > 0", name="points"),
        Index("ix_members_points_allocations_lot", "lot_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("members_points_entries.id"), index=True)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("members_points_lots.id"))
    points: Mapped[int] = mapped_column(BigInteger)


class Balance(Base):
    """The member's balance: a cache of the ledger, written with it, checked against it."""

    __tablename__ = "members_balances"

    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer, index=True)
    active: Mapped[int] = mapped_column(BigInteger, default=0)  # may go negative (clawback)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- tiers and growth value (成长值) ---------------------------------------------------------

QUALIFY_MODES = ("any", "all")


class Tier(Base):
    """A level of the brand's programme, qualified by growth, points spent and/or scans over the
    review window; ``rank`` orders the tiers (0: the entry tier)."""

    __tablename__ = "members_tiers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "rank"),
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(f"qualify IN {QUALIFY_MODES!r}", name="qualify"),
        CheckConstraint("rank >= 0", name="rank"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str | None] = mapped_column(String(40))
    min_growth: Mapped[int | None] = mapped_column(BigInteger)
    min_spend: Mapped[int | None] = mapped_column(BigInteger)  # points spent in the window
    min_scans: Mapped[int | None] = mapped_column(Integer)  # rewarded scans in the window
    qualify: Mapped[str] = mapped_column(String(3), default="any")
    # points_multiplier, discount_rate, free_shipping, birthday_points, priority_service
    benefits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    upgrade_gift_points: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GrowthEntry(Base):
    """One change of a member's growth value: append-only, unique by business key per tenant."""

    __tablename__ = "members_growth_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "business_key"),
        Index("ix_members_growth_entries_member", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    business_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TierChange(Base):
    """A member's move between tiers (upgrade at once, downgrade at review): the history."""

    __tablename__ = "members_tier_changes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "business_key"),
        Index("ix_members_tier_changes_member", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    from_tier_id: Mapped[int | None] = mapped_column(ForeignKey("members_tiers.id"))
    to_tier_id: Mapped[int | None] = mapped_column(ForeignKey("members_tiers.id"))
    reason: Mapped[str] = mapped_column(String(16))  # upgrade, downgrade, review, manual
    business_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- redemption: catalogue, orders, coupons ------------------------------------------------

ITEM_KINDS = ("goods", "coupon", "cash_deduction")
ORDER_STATUSES = ("placed", "shipped", "delivered", "completed", "cancelled")


class CatalogueItem(Base):
    """Something members redeem points for; ``stock`` NULL is unlimited, never below zero."""

    __tablename__ = "members_catalogue_items"
    __table_args__ = (
        CheckConstraint(f"kind IN {ITEM_KINDS!r}", name="kind"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock"),
        CheckConstraint("points_cost > 0", name="points_cost"),
        Index("ix_members_catalogue_items_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(2000), default="")
    image_url: Mapped[str | None] = mapped_column(String(500))
    points_cost: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int | None] = mapped_column(Integer)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    min_tier_rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    face_value_fen: Mapped[int | None] = mapped_column(Integer)  # coupons, cash deductions
    min_order_fen: Mapped[int | None] = mapped_column(Integer)  # a coupon's threshold
    coupon_valid_days: Mapped[int | None] = mapped_column(Integer)
    on_sale_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    on_sale_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RedemptionCount(Base):
    """How many of an item a member has redeemed: the guard of per-member limits."""

    __tablename__ = "members_redemption_counts"

    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("members_catalogue_items.id"), primary_key=True)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)


class Order(Base):
    """A redemption: points spent (ledger entry ``redeem:<order key>``), then fulfilled."""

    __tablename__ = "members_orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "business_key"),
        CheckConstraint(f"status IN {ORDER_STATUSES!r}", name="status"),
        Index("ix_members_orders_member", "member_id", "id"),
        Index("ix_members_orders_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("members_catalogue_items.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="placed")
    business_key: Mapped[str] = mapped_column(String(200))
    shipping: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # personal data: erased
    tracking: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Coupon(Base):
    """A coupon a member holds: valid in a window, used once (``used_at``, set atomically)."""

    __tablename__ = "members_coupons"
    __table_args__ = (Index("ix_members_coupons_member", "member_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("members_orders.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("members_catalogue_items.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    face_value_fen: Mapped[int] = mapped_column(Integer)
    min_order_fen: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- engagement ------------------------------------------------------------------------------


class CheckIn(Base):
    """A member's daily check-in (签到), one per local day; ``streak`` counts consecutive days."""

    __tablename__ = "members_checkins"

    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    streak: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- tags and segments ------------------------------------------------------------------------

TAG_KINDS = ("manual", "auto")
RFM_SEGMENTS = (
    "important_value",  # 重要价值: R high, F high, M high
    "important_keep",  # 重要保持: R low, F high, M high
    "important_develop",  # 重要发展: R high, F low, M high
    "important_retain",  # 重要挽留: R low, F low, M high
    "general_value",  # 一般价值: R high, F high, M low
    "general_keep",  # 一般保持: R low, F high, M low
    "general_develop",  # 一般发展: R high, F low, M low
    "general_retain",  # 一般挽留: R low, F low, M low
)


class Tag(Base):
    """A label on members: set by hand, or by a rule on profile and behaviour (``auto``)."""

    __tablename__ = "members_tags"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(f"kind IN {TAG_KINDS!r}", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(8))
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class MemberTag(Base):
    __tablename__ = "members_member_tags"
    __table_args__ = (Index("ix_members_member_tags_tag", "tag_id", "member_id"),)

    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("members_tags.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RfmScore(Base):
    """A member's latest RFM: raw recency / frequency / monetary, 1-5 scores, the segment."""

    __tablename__ = "members_rfm"
    __table_args__ = (
        Index("ix_members_rfm_segment", "tenant_id", "segment"),
        CheckConstraint(f"segment IN {RFM_SEGMENTS!r}", name="segment"),
    )

    member_id: Mapped[int] = mapped_column(ForeignKey("members_members.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    last_scan_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    recency_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary: Mapped[int] = mapped_column(BigInteger)
    r: Mapped[int] = mapped_column(SmallInteger)
    f: Mapped[int] = mapped_column(SmallInteger)
    m: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float)
    segment: Mapped[str] = mapped_column(String(24))
    sleeping: Mapped[bool] = mapped_column(Boolean, default=False)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- rollups for the dashboards (members/rollups.py keeps them up to date) --------------------


class MemberDay(Base):
    """Per brand-local day: members who joined and points by ledger kind (earned, spent, expired
    as positive amounts; adjusted and reversed as the signed net of the day)."""

    __tablename__ = "members_days"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    new_members: Mapped[int] = mapped_column(Integer, default=0)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    points_adjusted: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupCursor(Base):
    """How far a members rollup has counted its source (core/rollups.py: watermark and gaps)."""

    __tablename__ = "members_rollup_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RfmSummary(Base):
    """Per brand: the RFM figures of its live members as of the last computation, written by it
    in its transaction (members/rfm.py); an erasure takes its member out at once."""

    __tablename__ = "members_rfm_summaries"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    computed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Idle since before this instant and not sleeping: churn risk (as of ``computed_at``).
    churn_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(Integer, default=0)  # live members with an RFM row
    not_scored: Mapped[int] = mapped_column(Integer, default=0)  # R = F = M = 0
    sleeping: Mapped[int] = mapped_column(Integer, default=0)
    churn_risk: Mapped[int] = mapped_column(Integer, default=0)
    # Sums of the scores of the scored members: the means without a recount.
    sum_r: Mapped[int] = mapped_column(BigInteger, default=0)
    sum_f: Mapped[int] = mapped_column(BigInteger, default=0)
    sum_m: Mapped[int] = mapped_column(BigInteger, default=0)


class SegmentCount(Base):
    """Per brand and RFM segment: live members, as of the last computation (with the summary)."""

    __tablename__ = "members_segment_counts"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    segment: Mapped[str] = mapped_column(String(24), primary_key=True)
    members: Mapped[int] = mapped_column(Integer, default=0)


class TierCount(Base):
    """Per brand and tier (``tier_key`` 0: no tier): live members, kept by the rollup task from
    new members and tier moves, and by erasure."""

    __tablename__ = "members_tier_counts"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tier_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    members: Mapped[int] = mapped_column(Integer, default=0)


class PointsHeld(Base):
    """Per brand: the points its members hold (liability) and those expiring soon, recounted
    by the rollup task (``counted_at``)."""

    __tablename__ = "members_points_held"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    active: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    expiring_points: Mapped[int] = mapped_column(BigInteger, default=0)
    expiring_members: Mapped[int] = mapped_column(Integer, default=0)
    within_days: Mapped[int] = mapped_column(Integer, default=30)
    counted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
