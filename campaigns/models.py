"""Campaign tables: campaigns and their prizes, the sharded counters that keep stock and budget,
the one reward record per code, and the fulfilment outbox.

What must hold under any concurrency is held by these tables, not by Python:

- one reward (points and draw) per code, ever: ``campaigns_rewards`` is unique on
  ``(tenant_id, batch_id, serial)``;
- a prize never issued beyond its stock: each prize's stock is split into shards
  (``campaigns_stock_shards``); a unit is taken by ``UPDATE ... SET issued = issued + 1 WHERE
  issued < stock``, the check constraint ``issued <= stock`` backs it, and the unit taken
  (prize, shard, ordinal) is unique among rewards: each prize slot is issued at most once;
- a budget never overspent: the budget is split the same way (``campaigns_budget_shards``,
  ``spent_fen <= limit_fen``);
- per-member limits: one counter row per member, campaign and local day (and one for the whole
  campaign), bumped by an atomic upsert;
- a prize delivered once: one outbox row per reward, and a cash payout's merchant order number
  unique (the provider is told the same number on every retry).

Why shards: every winning draw of a prize would otherwise update one row, and concurrent draws
queue on its lock. With N shards and ``FOR UPDATE SKIP LOCKED`` a draw takes whichever shard is
free (bench/bench_draws.py measures the difference).
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
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import BigId

MAX_SHARDS = 16  # rows a prize's stock or a campaign's budget is split into, at most
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "ended")
PRIZE_KINDS = ("points", "coupon", "cash", "goods", "thanks")
REWARD_STATUSES = ("granted", "held", "denied", "clawed_back")
DRAW_OUTCOMES = ("won", "fallback", "nothing")
FULFILMENT_STATUSES = (
    "pending",  # to deliver (points, coupon, cash): the outbox worker picks it up
    "held",  # waiting for a fraud review
    "retry",  # a transient failure; next_attempt_at says when
    "done",  # delivered
    "failed",  # permanently refused by the provider (money limit, bad parameters)
    "claim_wanted",  # goods: waiting for the winner's shipping details
    "claimed",  # goods: details given, to ship
    "shipped",  # goods: on its way
    "cancelled",  # denied or clawed back before delivery
)


class Campaign(Base):
    """A brand's campaign: its window, targeting, earn rules and draw, as validated JSON
    (campaigns/rules.py), plus the draw's sealed seed and published commitments."""

    __tablename__ = "campaigns_campaigns"
    __table_args__ = (
        Index("ix_campaigns_campaigns_tenant", "tenant_id", "status", "starts_at"),
        CheckConstraint(f"status IN {CAMPAIGN_STATUSES!r}", name="status"),
        CheckConstraint("ends_at > starts_at", name="window"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="draft")
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    priority: Mapped[int] = mapped_column(Integer, default=100)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The draw's secret seed, sealed under the brand's data key until the campaign ends; its
    # commitment and the prize table's, published when the campaign is scheduled.
    seed_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    seed_hash: Mapped[str | None] = mapped_column(String(64))
    table_hash: Mapped[str | None] = mapped_column(String(64))
    seed_revealed: Mapped[str | None] = mapped_column(String(64))  # hex, after the end
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revealed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class Prize(Base):
    """One line of a campaign's prize table (in display order)."""

    __tablename__ = "campaigns_prizes"
    __table_args__ = (
        UniqueConstraint("campaign_id", "key"),
        CheckConstraint(f"kind IN {PRIZE_KINDS!r}", name="kind"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns_campaigns.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    stock: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    unit_value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    points: Mapped[int | None] = mapped_column(Integer)
    amount_fen: Mapped[int | None] = mapped_column(Integer)
    coupon_item_id: Mapped[int | None] = mapped_column(Integer)


class StockShard(Base):
    """A share of one prize's stock; a unit is issued by bumping ``issued`` under the check."""

    __tablename__ = "campaigns_stock_shards"
    __table_args__ = (
        CheckConstraint("issued >= 0 AND issued <= stock", name="issued"),
        {"sqlite_autoincrement": False},
    )

    prize_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns_prizes.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    stock: Mapped[int] = mapped_column(Integer)
    issued: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class BudgetShard(Base):
    """A share of one campaign's draw budget (fen)."""

    __tablename__ = "campaigns_budget_shards"
    __table_args__ = (CheckConstraint("spent_fen >= 0 AND spent_fen <= limit_fen", name="spent"),)

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    limit_fen: Mapped[int] = mapped_column(BigInteger)
    spent_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class MemberCount(Base):
    """What one member has had of one campaign in one local day (``period`` YYYY-MM-DD) or in
    all of it (``period`` ``all``): draws, wins and points, for the per-member limits."""

    __tablename__ = "campaigns_member_counts"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    draws: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    wins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    points: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class MemberFirst(Base):
    """A member's first rewarded scan of the brand (the first-scan bonus is paid once)."""

    __tablename__ = "campaigns_member_firsts"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    serial: Mapped[int] = mapped_column(BigInteger)


class Reward(Base):
    """What one code earned, once ever: the points (and the campaigns that gave them), the fraud
    rules' verdict, and the draw with the inputs anyone can recompute it from."""

    __tablename__ = "campaigns_rewards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "batch_id", "serial"),
        # Each prize slot at most once (shard and ordinal are set when a stocked unit is taken).
        UniqueConstraint("prize_id", "shard", "unit"),
        Index("ix_campaigns_rewards_member", "member_id", "id"),
        Index("ix_campaigns_rewards_draws", "draw_campaign_id", "id"),
        Index("ix_campaigns_rewards_held", "tenant_id", "status", "id"),
        CheckConstraint(f"status IN {REWARD_STATUSES!r}", name="status"),
        CheckConstraint(f"outcome IS NULL OR outcome IN {DRAW_OUTCOMES!r}", name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int] = mapped_column(Integer)
    serial: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    points: Mapped[int] = mapped_column(Integer, default=0)
    # [[campaign id or null, label, points], ...]: how the points were made up
    breakdown: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default="granted")
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    counts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    device: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(45))
    region: Mapped[str | None] = mapped_column(String(80))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    review_note: Mapped[str | None] = mapped_column(String(500))
    # The draw (None when no campaign with a draw applied)
    draw_campaign_id: Mapped[int | None] = mapped_column(Integer)
    draw_inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    slot: Mapped[int | None] = mapped_column(BigInteger)
    drawn_key: Mapped[str | None] = mapped_column(String(64))  # what the seed chose
    outcome: Mapped[str | None] = mapped_column(String(8))
    prize_id: Mapped[int | None] = mapped_column(Integer)  # what was given
    downgrade: Mapped[str | None] = mapped_column(String(16))  # why the drawn prize was not
    shard: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[int | None] = mapped_column(Integer)
    value_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class Fulfilment(Base):
    """The outbox: one row per prize to deliver, worked until done, never delivered twice."""

    __tablename__ = "campaigns_fulfilments"
    __table_args__ = (
        UniqueConstraint("reward_id"),
        UniqueConstraint("merchant_order_no"),
        Index("ix_campaigns_fulfilments_due", "status", "next_attempt_at"),
        Index("ix_campaigns_fulfilments_member", "member_id", "id"),
        CheckConstraint(f"status IN {FULFILMENT_STATUSES!r}", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reward_id: Mapped[int] = mapped_column(BigInteger)
    tenant_id: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(Integer)
    prize_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    merchant_order_no: Mapped[str | None] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    last_code: Mapped[str | None] = mapped_column(String(32))
    coupon_code: Mapped[str | None] = mapped_column(String(32))
    shipping_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    tracking_no: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


# --- the rollups behind a campaign's figures (campaigns/rollups.py) -----------------------------


class RollupCursor(Base):
    """How far the campaign rollups have counted the reward rows (core/rollups.py: watermark
    and gaps). Its one row (``rewards``) is made by the migration: readers lock it to see the
    rollups and the rows not yet in them as of one moment."""

    __tablename__ = "campaigns_rollup_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RewardDay(Base):
    """Rewards a campaign gave, per campaign-local day, review status, draw outcome, downgrade
    reason and prize given: how many, the campaign's own points in them (from the breakdown;
    denied ones included, readers leave them out), and for its draws how many cost money and how
    much. A campaign that only gave points has outcome, downgrade and prize "" / "" / 0 (a
    primary key holds no NULL). A review moves a reward's count from one status to another."""

    __tablename__ = "campaigns_reward_days"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8), primary_key=True)
    downgrade: Mapped[str] = mapped_column(String(16), primary_key=True)
    prize_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rewards: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    valued: Mapped[int] = mapped_column(BigInteger)
    value_fen: Mapped[int] = mapped_column(BigInteger)


class RewardMember(Base):
    """A member who took part in a campaign's draw, and whether they ever won a real prize (not
    "thanks"): the distinct engaged members and winners, counted once each."""

    __tablename__ = "campaigns_reward_members"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    won: Mapped[bool] = mapped_column(Boolean)


class RewardTotal(Base):
    """Per campaign: its distinct engaged members and winners (the rows of RewardMember)."""

    __tablename__ = "campaigns_reward_totals"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    engaged: Mapped[int] = mapped_column(BigInteger)
    winners: Mapped[int] = mapped_column(BigInteger)
