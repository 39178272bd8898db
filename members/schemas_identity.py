"""Request and response shapes of sign-in, the member's own profile and points, and the
management of members (lists, profile, phone, export, adjustments, erasure)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from members.ledger import MAX_POINTS

MAX_INT = 2**31 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Brand = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Phone = Annotated[str, StringConstraints(min_length=1, max_length=32)]

# --- sign-in ------------------------------------------------------------------------------------


class OtpIn(Strict):
    brand: Brand = Field(description="the brand's slug")
    phone: Phone = Field(description="a mainland China mobile number, e.g. 13812345678")


class OtpSent(BaseModel):
    sent: bool
    expires_in: int = Field(description="seconds the code stays valid")
    resend_after: int = Field(description="seconds before another code may be asked for")


class SignInIn(Strict):
    brand: Brand
    phone: Phone
    code: str = Field(max_length=12, description="the 6 digits sent by SMS")
    referral_code: str | None = Field(default=None, max_length=16)
    channel: str | None = Field(default=None, min_length=1, max_length=64)
    source: str = Field(default="scan", pattern=r"^[a-z0-9_.-]{1,32}$")


class TierRef(BaseModel):
    id: int
    name: str
    rank: int


class Expiring(BaseModel):
    at: dt.datetime
    points: int


class MePoints(BaseModel):
    active: int
    pending: int
    next_expiry: Expiring | None


class Me(BaseModel):
    id: int
    phone: str | None = Field(description="masked: 138****5678")
    nickname: str | None
    birthday: dt.date | None
    gender: Literal["female", "male", "other"] | None
    region: str | None
    tier: TierRef | None
    points: MePoints
    growth: int
    referral_code: str | None


class SignedInOut(BaseModel):
    token: str = Field(description="the member token, shown once: send it as 'Bearer ms_...'")
    created: bool = Field(description="true when this sign-in made the member")
    member: Me


class ProfilePatch(Strict):
    """Only the fields given change; null clears one."""

    nickname: str | None = Field(default=None, max_length=64)
    birthday: dt.date | None = None
    gender: Literal["female", "male", "other"] | None = None
    region: str | None = Field(default=None, max_length=100)


class PointsOut(BaseModel):
    active: int
    pending: int
    next_expiry: Expiring | None
    expiring: list[Expiring]


class HistoryItem(BaseModel):
    id: int
    kind: str
    points: int
    reason: str
    at: dt.datetime


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_after: int | None


# --- management -------------------------------------------------------------------------------


class MemberOut(BaseModel):
    id: int
    status: str
    phone: str | None = Field(description="masked: 138****5678 (null once erased)")
    nickname: str | None
    gender: str | None
    birthday: dt.date | None
    region: str | None
    tier_id: int | None
    growth: int
    source: str
    channel: str | None
    created_at: dt.datetime
    last_active_at: dt.datetime | None


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_after: int | None


class MemberProfileOut(MemberOut):
    referral_code: str | None
    referrer_id: int | None
    invited: int
    tier: TierRef | None
    tier_since: dt.datetime | None
    points: PointsOut
    erased_at: dt.datetime | None


class LotOut(BaseModel):
    id: int
    points: int
    remaining: int
    status: str = Field(description="pending (not yet spendable) | active")
    available_at: dt.datetime
    expires_at: dt.datetime | None


class EntryBrief(BaseModel):
    id: int
    kind: str
    points: int
    reason: str
    at: dt.datetime


class ScanBrief(BaseModel):
    batch_id: int | None
    serial: int | None
    points: int
    at: dt.datetime


class OrderBrief(BaseModel):
    id: int
    item_id: int
    item_name: str
    quantity: int
    points: int
    status: str
    at: dt.datetime


class CouponBrief(BaseModel):
    code: str
    face_value_fen: int
    valid_until: dt.datetime
    status: str


class TagBrief(BaseModel):
    id: int
    name: str
    kind: str


class RfmBrief(BaseModel):
    segment: str
    label: dict[str, str]
    r: int
    f: int
    m: int
    recency_days: int | None
    frequency: int
    monetary: int
    sleeping: bool
    computed_at: dt.datetime


class TierChangeBrief(BaseModel):
    from_tier_id: int | None
    to_tier_id: int | None
    reason: str
    at: dt.datetime


class CheckInBrief(BaseModel):
    last_day: dt.date
    streak: int


class Member360Out(MemberProfileOut):
    """The member 360 view: the newest few of each; the full lists have their own endpoints."""

    lots: list[LotOut] = Field(description="lots still holding points, soonest expiry first")
    recent_entries: list[EntryBrief]
    recent_scans: list[ScanBrief] = Field(description="rewarded scans, newest first")
    recent_orders: list[OrderBrief]
    coupons: list[CouponBrief]
    tags: list[TagBrief]
    rfm: RfmBrief | None
    tier_changes: list[TierChangeBrief]
    check_in: CheckInBrief | None


class PhoneOut(BaseModel):
    phone: str = Field(description="the full number, +8613812345678")


class AdjustmentIn(Strict):
    points: int = Field(
        strict=True, ge=-MAX_POINTS, le=MAX_POINTS, description="credit > 0, debit < 0"
    )
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    idempotency_key: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class BalanceOut(BaseModel):
    active: int
    pending: int


class AdjustmentOut(BaseModel):
    entry_id: int
    applied: bool = Field(description="false: this idempotency key had been applied before")
    balance: BalanceOut


class ErasureOut(BaseModel):
    id: int
    status: Literal["erased"]
    erased_at: dt.datetime
    already: bool
