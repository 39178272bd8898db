"""Request and response shapes of the tags and segments API (console)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from members.rfm import SegmentMember, segment_label
from members.tags import Rule, TagView


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagIn(Strict):
    """A manual tag (no rule), or an automatic one with its rule (evaluated at once)."""

    name: str = Field(min_length=1, max_length=40)
    kind: Literal["manual", "auto"] = "manual"
    rule: Rule | None = None


class TagPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=40)
    rule: Rule | None = None


class TagOut(BaseModel):
    id: int
    name: str
    kind: str
    rule: dict[str, Any] | None
    members: int
    created_at: dt.datetime
    evaluated_at: dt.datetime | None

    @classmethod
    def of(cls, tag: TagView) -> TagOut:
        return cls(**tag.__dict__)


class TagList(BaseModel):
    items: list[TagOut]


class MemberTagOut(BaseModel):
    member_id: int
    tag_id: int
    added: bool


class EvaluateOut(BaseModel):
    tags: int
    added: int
    removed: int


class RfmRunOut(BaseModel):
    tenants: int
    members: int
    seconds: float


class SegmentCount(BaseModel):
    segment: str
    zh: str
    en: str
    members: int


class TierCount(BaseModel):
    tier_id: int | None
    name: str | None
    name_en: str | None
    rank: int | None
    members: int


class Means(BaseModel):
    r: float | None
    f: float | None
    m: float | None


class SummaryOut(BaseModel):
    """As of the last computation (``computed_at``; null: never computed)."""

    members: int
    computed_at: dt.datetime | None
    sleeping_days: int
    window_days: int
    segments: list[SegmentCount]
    tiers: list[TierCount]
    scored: int = Field(description="members with a rewarded scan in the window")
    not_scored: int = Field(description="no rewarded scan in the window: general_retain, R=F=M=0")
    not_computed: int = Field(description="members who joined after the last computation")
    sleeping: int
    churn_risk: int = Field(description="idle at least half of sleeping_days, not yet sleeping")
    means: Means


class TierRef(BaseModel):
    id: int
    name: str | None
    rank: int | None


class SegmentMemberOut(BaseModel):
    id: int
    phone: str | None = Field(description="masked: 138****5678")
    joined_at: dt.datetime
    tier: TierRef | None
    segment: str | None
    segment_zh: str | None
    segment_en: str | None
    r: int | None
    f: int | None
    m: int | None
    frequency: int | None
    monetary: int | None
    recency_days: int | None
    last_scan_at: dt.datetime | None
    sleeping: bool | None

    @classmethod
    def of(cls, x: SegmentMember) -> SegmentMemberOut:
        label = segment_label(x.segment) if x.segment else None
        return cls(
            id=x.id,
            phone=x.phone,
            joined_at=x.joined_at,
            tier=TierRef(id=x.tier_id, name=x.tier_name, rank=x.tier_rank)
            if x.tier_id is not None
            else None,
            segment=x.segment,
            segment_zh=label["zh"] if label else None,
            segment_en=label["en"] if label else None,
            r=x.r,
            f=x.f,
            m=x.m,
            frequency=x.frequency,
            monetary=x.monetary,
            recency_days=x.recency_days,
            last_scan_at=x.last_scan_at,
            sleeping=x.sleeping,
        )


class SegmentMembersOut(BaseModel):
    items: list[SegmentMemberOut]
    next_after: int | None
