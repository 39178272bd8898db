"""Request and response shapes of the campaigns management API.

A campaign's configuration itself is :class:`campaigns.rules.CampaignSpec`, validated by
``rules.check_campaign`` so that every error names its field the same way wherever it comes from;
the body is read here only as a JSON object (:class:`CampaignBody`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from campaigns.lifecycle import display_status
from campaigns.models import Campaign, Fulfilment, Prize, Reward


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- campaigns ----------------------------------------------------------------------------------


class CampaignBody(RootModel[dict[str, Any]]):
    """A campaign's configuration as a JSON object (checked by ``rules.check_campaign``)."""


class CampaignSummary(BaseModel):
    id: int
    name: str
    status: str = Field(description="draft, scheduled, running, paused or ended, as of now")
    starts_at: dt.datetime
    ends_at: dt.datetime
    priority: int
    has_draw: bool
    seed_hash: str | None = Field(description="published when scheduled")
    table_hash: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def fields_of(cls, campaign: Campaign) -> dict[str, Any]:
        return {
            "id": campaign.id,
            "name": campaign.name,
            "status": display_status(campaign),
            "starts_at": campaign.starts_at,
            "ends_at": campaign.ends_at,
            "priority": campaign.priority,
            "has_draw": campaign.spec.get("draw") is not None,
            "seed_hash": campaign.seed_hash,
            "table_hash": campaign.table_hash,
            "created_at": campaign.created_at,
            "updated_at": campaign.updated_at,
        }

    @classmethod
    def of(cls, campaign: Campaign) -> CampaignSummary:
        return cls(**cls.fields_of(campaign))


class CampaignOut(CampaignSummary):
    seed_revealed: str | None = Field(description="the draw's seed (hex), once it has ended")
    published_at: dt.datetime | None
    revealed_at: dt.datetime | None
    created_by: str | None
    config: dict[str, Any] = Field(description="the configuration, as PUT takes it")

    @classmethod
    def of(cls, campaign: Campaign) -> CampaignOut:
        return cls(
            **cls.fields_of(campaign),
            seed_revealed=campaign.seed_revealed,
            published_at=campaign.published_at,
            revealed_at=campaign.revealed_at,
            created_by=campaign.created_by,
            config=campaign.spec,
        )


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    next_after: int | None = Field(description="pass as ?after= for older campaigns")


class CommitmentsOut(BaseModel):
    algorithm: str
    seed_hash: str | None
    table_hash: str | None
    table: list[list[str]] | None = Field(description="the canonical prize table that is hashed")
    published_at: dt.datetime | None
    seed: str | None = Field(description="revealed when the campaign ends")
    revealed_at: dt.datetime | None


class PrizeText(BaseModel):
    key: str
    name: str
    kind: str
    kind_text: str
    value: str
    value_fen: int
    stock: int | None
    stock_text: str
    probability: str
    percent: str


class RulesOut(BaseModel):
    campaign_id: int
    lang: Literal["zh", "en"]
    lines: list[str]
    prizes: list[PrizeText]
    commitments: CommitmentsOut


# --- reports ------------------------------------------------------------------------------------


class PrizePoolOut(BaseModel):
    key: str
    name: str
    kind: str
    stock: int | None
    issued: int
    left: int | None
    unit_value_fen: int
    won: int
    fallback_given: int


class PrizePoolList(BaseModel):
    items: list[PrizePoolOut]


class DaySpendOut(BaseModel):
    day: dt.date
    spent_fen: int
    prizes: int


class BudgetOut(BaseModel):
    budget_fen: int | None
    spent_fen: int
    left_fen: int | None
    timezone: str
    by_day: list[DaySpendOut]


class StatsOut(BaseModel):
    rewards: int = Field(description="codes the campaign rewarded (points or a draw)")
    points: int
    draws: int
    outcomes: dict[str, int]
    downgrades: dict[str, int]
    winners: int = Field(description="distinct members given a prize other than 'thanks'")
    held: int
    denied: int
    statuses: dict[str, int]


class OwedPrizesOut(BaseModel):
    kind: str
    status: str
    count: int
    value_fen: int


class LiabilityOut(BaseModel):
    points_active: int
    points_pending: int
    points_per_yuan: int
    points_fen: int
    prizes: list[OwedPrizesOut]
    prizes_fen: int
    total_fen: int


# --- draws and verification ---------------------------------------------------------------------


class DrawOut(BaseModel):
    reward_id: int
    created_at: dt.datetime
    member_id: int
    batch_id: int
    serial: int
    status: str
    inputs: dict[str, Any] | None
    slot: int | None
    drawn_key: str | None
    outcome: str | None
    prize_key: str | None
    prize_name: str | None
    downgrade: str | None
    value_fen: int

    @classmethod
    def of(cls, reward: Reward, prize: Prize | None) -> DrawOut:
        return cls(
            reward_id=reward.id,
            created_at=reward.created_at,
            member_id=reward.member_id,
            batch_id=reward.batch_id,
            serial=reward.serial,
            status=reward.status,
            inputs=reward.draw_inputs,
            slot=reward.slot,
            drawn_key=reward.drawn_key,
            outcome=reward.outcome,
            prize_key=prize.key if prize else None,
            prize_name=prize.name if prize else None,
            downgrade=reward.downgrade,
            value_fen=reward.value_fen,
        )


class DrawPage(BaseModel):
    items: list[DrawOut]
    next_after: int | None = Field(description="pass as ?after= for older draws")


class PrizeCountOut(BaseModel):
    key: str
    stock: int | None
    won: int
    fallback_given: int


class VerificationOut(BaseModel):
    campaign_id: int
    ok: bool
    draws: int
    seed_hex: str
    seed_hash: str
    table_hash: str
    commitments_ok: bool
    problems: list[str] = Field(description="the first 100")
    problem_count: int
    per_prize: list[PrizeCountOut]
    budget_fen: int | None
    spent_fen: int


# --- reviews ------------------------------------------------------------------------------------


class HeldDraw(BaseModel):
    campaign_id: int
    outcome: str | None
    prize_key: str | None


class ReviewOut(BaseModel):
    id: int = Field(description="the reward")
    member_id: int
    batch_id: int
    serial: int
    created_at: dt.datetime
    points: int
    reasons: list[str]
    counts: dict[str, int] | None = Field(description="what the fraud rules counted")
    device: str | None
    region: str | None
    draw: HeldDraw | None

    @classmethod
    def of(cls, reward: Reward, prize: Prize | None) -> ReviewOut:
        draw = None
        if reward.draw_campaign_id is not None:
            draw = HeldDraw(
                campaign_id=reward.draw_campaign_id,
                outcome=reward.outcome,
                prize_key=prize.key if prize else None,
            )
        return cls(
            id=reward.id,
            member_id=reward.member_id,
            batch_id=reward.batch_id,
            serial=reward.serial,
            created_at=reward.created_at,
            points=reward.points,
            reasons=list(reward.reasons or []),
            counts=reward.counts,
            device=reward.device,
            region=reward.region,
            draw=draw,
        )


class ReviewPage(BaseModel):
    items: list[ReviewOut]
    next_after: int | None = Field(description="pass as ?after= for the next held rewards")


class DecisionIn(Strict):
    decision: Literal["release", "deny", "claw_back"]
    note: str = Field(default="", max_length=500)


class DecidedOut(BaseModel):
    id: int
    status: str
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    review_note: str | None


# --- fulfilment ---------------------------------------------------------------------------------


class FulfilmentOut(BaseModel):
    id: int
    reward_id: int
    campaign_id: int
    member_id: int
    prize_key: str
    prize_name: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime | None
    merchant_order_no: str | None
    provider_ref: str | None
    tracking_no: str | None
    has_shipping: bool = Field(description="the winner gave shipping details (see /shipping)")
    created_at: dt.datetime
    updated_at: dt.datetime
    done_at: dt.datetime | None

    @classmethod
    def of(cls, row: Fulfilment, prize: Prize) -> FulfilmentOut:
        return cls(
            id=row.id,
            reward_id=row.reward_id,
            campaign_id=row.campaign_id,
            member_id=row.member_id,
            prize_key=prize.key,
            prize_name=prize.name,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            merchant_order_no=row.merchant_order_no,
            provider_ref=row.provider_ref,
            tracking_no=row.tracking_no,
            has_shipping=row.shipping_sealed is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            done_at=row.done_at,
        )


class FulfilmentPage(BaseModel):
    items: list[FulfilmentOut]
    next_after: int | None = Field(description="pass as ?after= for the next prizes")


class ShippingDetails(BaseModel):
    name: str
    phone: str
    address: str


class ShippingOut(BaseModel):
    reward_id: int
    status: str
    shipping: ShippingDetails | None


class ShipIn(Strict):
    tracking_no: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
