"""What the management API reads about campaigns: prize pools, budget burn, the brand's open
liability, a campaign's numbers, and the lists behind them (draws, fulfilments).

Read-only: nothing here writes. Money is integer fen; days are the campaign's local days. A
campaign's numbers (draws, wins by prize, budget burn by day, rewards by status) come from its
rollups plus the reward rows not yet counted (campaigns/rollups.py), so they cost the same for a
campaign of a thousand draws and of ten million.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import members
from campaigns.lifecycle import get_campaign_or_raise, prizes_of, spec_of
from campaigns.models import (
    DRAW_OUTCOMES,
    FULFILMENT_STATUSES,
    REWARD_STATUSES,
    BudgetShard,
    Campaign,
    Fulfilment,
    Prize,
    Reward,
    StockShard,
)
from campaigns.rollups import Tally, campaign_tally
from core.errors import ValidationFailedError

# Prizes won and not yet in the winner's hands: the brand still owes them.
UNDELIVERED = ("pending", "retry", "held", "claim_wanted", "claimed")


# --- prize pools ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrizePool:
    """One prize's stock: how many units were issued and are left (None: unlimited)."""

    key: str
    name: str
    kind: str
    stock: int | None
    issued: int
    left: int | None
    unit_value_fen: int
    won: int
    fallback_given: int


def _given(tally: Tally) -> Counter[tuple[int, str]]:
    """(prize id, outcome) → how many draws gave it."""
    given: Counter[tuple[int, str]] = Counter()
    for (_day, _status, outcome, _downgrade, prize_id), sums in tally.days.items():
        if prize_id and outcome:
            given[(prize_id, outcome)] += sums[0]
    return given


def prize_pools(session: Session, *, tenant_id: int, campaign_id: int) -> list[PrizePool]:
    """The campaign's prizes in display order with their stock, issued, left and given counts.
    Issued is what the stock counters say (for an unlimited prize, how often it was given)."""
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    return pools_of(session, campaign, campaign_tally(session, campaign))


def pools_of(session: Session, campaign: Campaign, tally: Tally) -> list[PrizePool]:
    prizes = prizes_of(session, campaign.id)
    issued = dict(
        session.execute(
            select(StockShard.prize_id, func.sum(StockShard.issued))
            .where(StockShard.prize_id.in_([p.id for p in prizes]))
            .group_by(StockShard.prize_id)
        ).all()
    )
    given = _given(tally)
    pools = []
    for prize in prizes:
        won, fallback = given[(prize.id, "won")], given[(prize.id, "fallback")]
        out = int(issued.get(prize.id) or 0) if prize.stock is not None else won + fallback
        pools.append(
            PrizePool(
                key=prize.key,
                name=prize.name,
                kind=prize.kind,
                stock=prize.stock,
                issued=out,
                left=prize.stock - out if prize.stock is not None else None,
                unit_value_fen=prize.unit_value_fen,
                won=won,
                fallback_given=fallback,
            )
        )
    return pools


# --- budget -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaySpend:
    day: dt.date  # the campaign's local day
    spent_fen: int
    prizes: int


@dataclass(frozen=True)
class BudgetBurn:
    """The draw's budget and what was spent of it, by local day. Without a budget, ``spent_fen``
    is the value of the prizes given."""

    budget_fen: int | None
    spent_fen: int
    left_fen: int | None
    timezone: str
    by_day: list[DaySpend]


def budget_burn(session: Session, *, tenant_id: int, campaign_id: int) -> BudgetBurn:
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    return burn_of(session, campaign, campaign_tally(session, campaign))


def burn_of(session: Session, campaign: Campaign, tally: Tally) -> BudgetBurn:
    spec = spec_of(campaign)
    budget = spec.draw.budget_fen if spec.draw is not None else None
    # The prizes that cost money, by the campaign's local day (the rollups keep that day).
    days: dict[dt.date, list[int]] = {}
    for (day, _status, outcome, _downgrade, _prize), sums in tally.days.items():
        if outcome and sums[2]:
            spent = days.setdefault(day, [0, 0])
            spent[0] += sums[3]
            spent[1] += sums[2]
    total = sum(fen for fen, _n in days.values())
    if budget is not None:
        # The budget's own counters: what the draws took from it.
        total = int(
            session.scalar(
                select(func.sum(BudgetShard.spent_fen)).where(
                    BudgetShard.campaign_id == campaign.id
                )
            )
            or 0
        )
    return BudgetBurn(
        budget_fen=budget,
        spent_fen=total,
        left_fen=budget - total if budget is not None else None,
        timezone=spec.timezone,
        by_day=[DaySpend(day, fen, n) for day, (fen, n) in sorted(days.items()) if n],
    )


# --- liability ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwedPrizes:
    kind: str
    status: str
    count: int
    value_fen: int


@dataclass(frozen=True)
class Liability:
    """What the brand owes its members now: points held (valued at ``points_per_yuan``) and
    prizes won but not yet delivered."""

    points_active: int
    points_pending: int
    points_per_yuan: int
    points_fen: int
    prizes: list[OwedPrizes]
    prizes_fen: int
    total_fen: int


def points_value_fen(points: int, points_per_yuan: int) -> int:
    """Points in fen, rounded up (a liability is never understated)."""
    return -(-points * 100 // points_per_yuan)


def liability(session: Session, *, tenant_id: int, points_per_yuan: int = 100) -> Liability:
    """The brand's open liability: every member's points (active and pending) and the prizes
    still owed (outbox rows pending, retrying, held, or goods waiting for a claim or shipping)."""
    if not 1 <= points_per_yuan <= 10_000:
        raise ValidationFailedError.field("points_per_yuan", "1 to 10000")
    points = members.open_points(session, tenant_id=tenant_id)
    owed = [
        OwedPrizes(str(kind), str(status), int(n), int(value or 0))
        for kind, status, n, value in session.execute(
            select(Fulfilment.kind, Fulfilment.status, func.count(), func.sum(Prize.unit_value_fen))
            .join(Prize, Prize.id == Fulfilment.prize_id)
            .where(Fulfilment.tenant_id == tenant_id, Fulfilment.status.in_(UNDELIVERED))
            .group_by(Fulfilment.kind, Fulfilment.status)
            .order_by(Fulfilment.kind, Fulfilment.status)
        )
    ]
    points_fen = points_value_fen(points.active + points.pending, points_per_yuan)
    prizes_fen = sum(o.value_fen for o in owed)
    return Liability(
        points_active=points.active,
        points_pending=points.pending,
        points_per_yuan=points_per_yuan,
        points_fen=points_fen,
        prizes=owed,
        prizes_fen=prizes_fen,
        total_fen=points_fen + prizes_fen,
    )


# --- a campaign's numbers -----------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignStats:
    """What a campaign has done: codes it paid points for and how many, draws by outcome and
    by downgrade reason, distinct winners of a real prize, and rewards by review status."""

    rewards: int
    points: int
    draws: int
    outcomes: dict[str, int]
    downgrades: dict[str, int]
    winners: int
    statuses: dict[str, int]  # granted | held | denied | clawed_back

    @property
    def held(self) -> int:
        return self.statuses.get("held", 0)

    @property
    def denied(self) -> int:
        return self.statuses.get("denied", 0)


def campaign_stats(session: Session, *, tenant_id: int, campaign_id: int) -> CampaignStats:
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    return stats_of(campaign_tally(session, campaign))


def stats_of(tally: Tally) -> CampaignStats:
    """A campaign's numbers from its tally (campaigns/rollups.py). Its points leave out denied
    rewards (they were never credited)."""
    outcomes = dict.fromkeys(DRAW_OUTCOMES, 0)
    statuses = dict.fromkeys(REWARD_STATUSES, 0)
    downgrades: Counter[str] = Counter()
    points = 0
    for (_day, status, outcome, downgrade, _prize), sums in tally.days.items():
        statuses[status] += sums[0]
        if outcome:
            outcomes[outcome] += sums[0]
        if downgrade:
            downgrades[downgrade] += sums[0]
        if status != "denied":
            points += sums[1]
    return CampaignStats(
        rewards=sum(statuses.values()),
        points=points,
        draws=sum(outcomes.values()),
        outcomes=outcomes,
        downgrades={k: n for k, n in downgrades.items() if n},
        winners=tally.winners,
        statuses=statuses,
    )


# --- lists --------------------------------------------------------------------------------------


def draws_of(
    session: Session,
    *,
    tenant_id: int,
    campaign_id: int,
    outcome: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[tuple[Reward, Prize | None]]:
    """The campaign's draws, newest first (``after``: the last reward id seen), with the prize
    each gave."""
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if outcome is not None and outcome not in DRAW_OUTCOMES:
        raise ValidationFailedError.field("outcome", ", ".join(DRAW_OUTCOMES))
    stmt = (
        select(Reward, Prize)
        .outerjoin(Prize, Prize.id == Reward.prize_id)
        .where(Reward.draw_campaign_id == campaign.id, Reward.tenant_id == tenant_id)
    )
    if outcome is not None:
        stmt = stmt.where(Reward.outcome == outcome)
    if after:
        stmt = stmt.where(Reward.id < after)
    return [(r, p) for r, p in session.execute(stmt.order_by(Reward.id.desc()).limit(limit))]


def fulfilments_of(
    session: Session,
    *,
    tenant_id: int,
    status: str | None = None,
    campaign_id: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[tuple[Fulfilment, Prize]]:
    """The brand's prizes to deliver, oldest first (``after``: the last fulfilment id seen),
    optionally of one status or campaign."""
    if status is not None and status not in FULFILMENT_STATUSES:
        raise ValidationFailedError.field("status", ", ".join(FULFILMENT_STATUSES))
    if campaign_id is not None:
        get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    stmt = (
        select(Fulfilment, Prize)
        .join(Prize, Prize.id == Fulfilment.prize_id)
        .where(Fulfilment.tenant_id == tenant_id)
    )
    if status is not None:
        stmt = stmt.where(Fulfilment.status == status)
    if campaign_id is not None:
        stmt = stmt.where(Fulfilment.campaign_id == campaign_id)
    if after:
        stmt = stmt.where(Fulfilment.id > after)
    return [(f, p) for f, p in session.execute(stmt.order_by(Fulfilment.id).limit(limit))]


def fulfilment_of(session: Session, *, tenant_id: int, reward_id: int) -> Fulfilment | None:
    """The outbox row of one reward's prize (None: no such prize of the brand)."""
    return session.scalars(
        select(Fulfilment).where(
            Fulfilment.reward_id == reward_id, Fulfilment.tenant_id == tenant_id
        )
    ).first()


def prizes_by_id(session: Session, ids: Sequence[int]) -> dict[int, Prize]:
    if not ids:
        return {}
    return {p.id: p for p in session.scalars(select(Prize).where(Prize.id.in_(set(ids))))}
