"""Request and response shapes of the scan API (mini-programs and apps)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=2048, description="token, short URL or GS1 DL")
    device_id: str | None = Field(
        default=None,
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the app's stable device id",
    )
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)


class PlaceOut(BaseModel):
    country: str | None = None
    province: str | None = None
    city: str | None = None
    label: str | None = None
    source: str = "none"
    precision: str = "unknown"


class FirstScanOut(BaseModel):
    at: dt.datetime
    place: PlaceOut | None = None


class ProductOut(BaseModel):
    name: str
    sku: str
    gtin: str | None
    specification: str
    image_url: str | None


class JourneyStepOut(BaseModel):
    kind: str = Field(
        description="activated | deactivated | packed | unpacked | shipped | received | returned"
    )
    at: dt.datetime = Field(description="when it happened (ISO 8601, UTC)")
    text: str = Field(description="the step in plain words, in the request's language")


class PointsOut(BaseModel):
    earned: int = Field(description="points this scan earned the signed-in member (0: none)")
    pending: bool = Field(description="the points become spendable after the pending window")
    status: str = Field(
        description="earned | held (being reviewed) | denied (the scan breaks the campaign's "
        "rules) | already_yours (this member earned the code's points before: the same draw "
        "comes back) | already_claimed (the code's points went to another member) | "
        "not_rewarded (a suspicious code) | other_brand | no_points"
    )
    text: str


class DrawPrizeOut(BaseModel):
    key: str
    name: str
    kind: str = Field(description="points | coupon | cash | goods | thanks")
    amount_fen: int | None = Field(default=None, description="a cash prize's amount")
    points: int | None = Field(default=None, description="a points prize's points")


class DrawOut(BaseModel):
    """The draw the server made for this scan (the page only animates it)."""

    outcome: str = Field(
        description="won | fallback (given instead of a prize out of stock or over a limit) | "
        "nothing"
    )
    won: bool = Field(description="a prize other than 'thanks for taking part'")
    prize: DrawPrizeOut | None = Field(default=None, description="null: no prize")
    status: str | None = Field(
        default=None,
        description="the prize's delivery: held | pending | retry | done | failed | "
        "claim_wanted (goods: give the shipping details at claim_url) | claimed | shipped | "
        "cancelled; null without a prize",
    )
    text: str = Field(description="the result in words: 恭喜获得 现金红包 ¥5.00 / 谢谢参与")
    status_text: str | None = Field(default=None, description="where the prize stands, in words")
    claim_url: str | None = Field(default=None, description="the claim form of a goods prize")
    reward_id: int = Field(description="GET /me/prizes/{reward_id}")
    campaign_id: int = Field(description="the rules page: /campaigns/{brand}/{campaign_id}")


class ScanOut(BaseModel):
    verdict: str = Field(description="genuine | already_verified | suspicious | counterfeit")
    message: str
    scan_id: str | None = None
    scan_count: int = 0
    first_scan: FirstScanOut | None = None
    product: ProductOut | None = None
    lot: str | None = None
    production_date: str | None = None
    journey: list[JourneyStepOut] = Field(
        default_factory=list, description="the code's journey, oldest step first"
    )
    points: PointsOut | None = Field(
        default=None, description="for a signed-in member (Bearer ms_... or the yima_m cookie)"
    )
    draw: DrawOut | None = Field(
        default=None, description="the signed-in member's draw for this code (null: none)"
    )
    brand: str | None = Field(default=None, description="the brand's slug (for member sign-in)")


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)


class LocationOut(BaseModel):
    verdict: str
    title: str
    message: str
    place: PlaceOut
