"""Member tables: members and the points ledger.

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
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import BigId

ENTRY_KINDS = ("earn", "spend", "expire", "adjust", "reverse")
LOT_STATUSES = ("pending", "active")


class Member(Base):
    """A consumer of one brand. Identity (phone, profile) arrives with sign-in."""

    __tablename__ = "members_members"
    __table_args__ = (Index("ix_members_members_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


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
