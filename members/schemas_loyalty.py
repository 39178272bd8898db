"""Request and response shapes of the loyalty API: tiers, programme settings, my tier,
check-in and referral."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from members.models import Tier, TierChange
from members.settings import Programme
from members.tiers import MAX_THRESHOLD, Benefits, Ladder, TierFields

MAX_INT = 2**31 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- management: programme ---------------------------------------------------------------------

# Every field of the programme, optional: a PUT changes only what it names; the merged whole is
# validated by ``update_programme`` (so the rules live in one place, members/settings.py).
ProgrammeChanges: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ProgrammeChanges",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Some fields of the programme; the others keep their values.",
    **{
        name: (cast(Any, info.annotation) | None, Field(None, description=info.description))
        for name, info in Programme.model_fields.items()
    },
)


# --- management: tiers -----------------------------------------------------------------------

TierIn = TierFields


class BenefitsPatch(Strict):
    points_multiplier: float | None = Field(None, ge=1.0, le=10.0)
    discount_rate: float | None = Field(None, ge=0.5, le=1.0)
    free_shipping: bool | None = None
    birthday_points: int | None = Field(None, ge=0, le=1_000_000)
    priority_service: bool | None = None


class TierPatch(Strict):
    """Some fields of a tier; a threshold set to null is removed."""

    rank: int | None = Field(None, ge=0, le=99)
    name: str | None = Field(None, min_length=1, max_length=40)
    name_en: str | None = Field(None, min_length=1, max_length=40)
    min_growth: int | None = Field(None, ge=0, le=MAX_THRESHOLD)
    min_spend: int | None = Field(None, ge=0, le=MAX_THRESHOLD)
    min_scans: int | None = Field(None, ge=0, le=MAX_INT)
    qualify: Literal["any", "all"] | None = None
    benefits: BenefitsPatch | None = None
    upgrade_gift_points: int | None = Field(None, ge=0, le=1_000_000)

    def changes(self) -> dict[str, Any]:
        found = self.model_dump(exclude_unset=True)
        for name in ("rank", "name", "qualify", "benefits", "upgrade_gift_points"):
            if name in found and found[name] is None:
                found.pop(name)  # not nullable: null leaves it as it is
        if isinstance(found.get("benefits"), dict):
            found["benefits"] = {k: v for k, v in found["benefits"].items() if v is not None}
        return found


class TierOut(BaseModel):
    id: int
    rank: int
    name: str
    name_en: str | None
    min_growth: int | None
    min_spend: int | None
    min_scans: int | None
    qualify: str
    benefits: Benefits
    upgrade_gift_points: int
    members: int | None = Field(None, description="members holding the tier (in lists)")
    created_at: dt.datetime

    @classmethod
    def of(cls, tier: Tier, members: int | None = None) -> TierOut:
        return cls(
            id=tier.id,
            rank=tier.rank,
            name=tier.name,
            name_en=tier.name_en,
            min_growth=tier.min_growth,
            min_spend=tier.min_spend,
            min_scans=tier.min_scans,
            qualify=tier.qualify,
            benefits=Benefits.model_validate(tier.benefits or {}),
            upgrade_gift_points=tier.upgrade_gift_points,
            members=members,
            created_at=tier.created_at,
        )


class TierList(BaseModel):
    items: list[TierOut]


class TierRef(BaseModel):
    id: int
    name: str
    rank: int


class TierChangeOut(BaseModel):
    id: int
    from_tier: TierRef | None = Field(description="null: no tier, or a tier since deleted")
    to_tier: TierRef | None
    reason: str
    at: dt.datetime

    @classmethod
    def of(cls, change: TierChange, ladder: Ladder) -> TierChangeOut:
        def ref(tier_id: int | None) -> TierRef | None:
            rule = ladder.by_id.get(tier_id) if tier_id is not None else None
            return TierRef(id=rule.id, name=rule.name, rank=rule.rank) if rule else None

        return cls(
            id=change.id,
            from_tier=ref(change.from_tier_id),
            to_tier=ref(change.to_tier_id),
            reason=change.reason,
            at=change.created_at,
        )


class TierChangePage(BaseModel):
    items: list[TierChangeOut]
    next_after: int | None


# --- consumer -------------------------------------------------------------------------------


class Need(BaseModel):
    """What is still missing for the next tier, per threshold it has."""

    growth: int | None = None
    spend: int | None = None
    scans: int | None = None


class NextTier(TierRef):
    qualify: str = Field(description="'any': reaching one threshold is enough; 'all': every one")
    need: Need


class ProgressOut(BaseModel):
    growth: int
    spend: int
    scans: int


class MyTier(BaseModel):
    tier: TierRef | None
    next: NextTier | None
    progress: ProgressOut = Field(description="in the review window, ending now")
    benefits: Benefits
    window_days: int
    review_at: dt.datetime | None = Field(
        description="the earliest the tier may be reviewed (null: no tier)"
    )


class CheckInOut(BaseModel):
    day: dt.date
    streak: int
    points: int
    bonus: int


class CheckInMonthOut(BaseModel):
    days: list[dt.date]
    streak: int


class ReferralOut(BaseModel):
    code: str | None
    link: str | None
    invited: int
    points_earned: int
