"""The campaigns' consumer API, registered by the scan app under ``/api/v1``.

For the signed-in member (a bearer token or the scan app's ``yima_m`` cookie, as in members'
views): my prizes, one prize, and the claim of a goods prize (shipping details). Public, for
anyone: a campaign's rules as its rules page shows them — the window, the effective rules, the
prize table with its exact odds, the commitments published before it started, and once it has
ended the revealed seed, a check of the seed against its commitment, and every draw's inputs so
that anyone can recompute each result (``yima draws verify``).

Thin: parse, authorise, call a service, serialise. A campaign still in draft is not public (404).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, request, url_for
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import members
from campaigns import rules
from campaigns.errors import CampaignNotFoundError, RewardNotFoundError, SeedNotRevealedError
from campaigns.fairness import VERSION, seed_commitment
from campaigns.fulfilment import claim_goods
from campaigns.lifecycle import display_status, spec_of
from campaigns.models import Campaign, Fulfilment, Prize, Reward
from core.db import utcnow
from core.errors import ValidationFailedError
from core.models import Tenant
from core.openapi import PAGINATION, next_after, operation, page_args, parse_body, secured
from core.services import SLUG_RE, get_tenant_by_slug
from core.web import app_runtime, db_session

consumer = Blueprint("campaigns_consumer", __name__)

VERIFY_COMMAND = "yima draws verify {id}"
_SHIPPING_PREFIX = "shipping."


def consumer_blueprint() -> Blueprint:
    """The blueprint the scan app registers under ``/api/v1``."""
    return consumer


def _lang() -> rules.Lang:
    """``?lang=zh|en``, else Accept-Language; Chinese by default (as the scan pages)."""
    asked = request.args.get("lang")
    if asked == "en" or (
        asked != "zh" and request.accept_languages.best_match(["zh", "en"]) == "en"
    ):
        return "en"
    return "zh"


# --- shapes --------------------------------------------------------------------------------------


class PrizeOut(BaseModel):
    key: str
    name: str
    kind: str = Field(description="points | coupon | cash | goods | thanks")
    amount_fen: int | None = Field(default=None, description="a cash prize's amount")
    points: int | None = Field(default=None, description="a points prize's points")


class CampaignRef(BaseModel):
    id: int
    name: str
    brand: str = Field(description="the brand's slug (the rules page: /campaigns/<brand>/<id>)")


class MyPrizeOut(BaseModel):
    reward_id: int
    campaign: CampaignRef
    prize: PrizeOut
    outcome: str = Field(description="won | fallback (given instead of a prize out of stock)")
    status: str = Field(
        description="held (being reviewed) | pending | retry | done | failed | claim_wanted "
        "(goods: waiting for your shipping details) | claimed | shipped | cancelled"
    )
    won_at: dt.datetime
    claim_needed: bool = Field(description="a goods prize waiting for the shipping details")
    tracking_no: str | None = None
    coupon_code: str | None = None


class MyPrizesOut(BaseModel):
    items: list[MyPrizeOut]
    next_after: int | None = Field(default=None, description="pass as ?after= for the next page")


class ClaimIn(BaseModel):
    """Where to send a goods prize (checked as members check an order's shipping)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200, description="the recipient, 1-50 characters")
    phone: str = Field(max_length=40, description="a mainland China mobile number")
    address: str = Field(max_length=1000, description="the full address, 5-300 characters")


class PrizeLineOut(BaseModel):
    key: str
    name: str
    kind: str
    kind_text: str
    value: str = Field(description="what one is worth, in words")
    value_fen: int
    stock: int | None = Field(description="how many there are in all; null: unlimited")
    stock_text: str
    probability: str = Field(description="the exact chance the draw uses, as a fraction")
    percent: str


class ChanceOut(BaseModel):
    probability: str
    percent: str


class CommitmentsOut(BaseModel):
    algorithm: str = Field(description="the draw function's version (campaigns/fairness.py)")
    seed_hash: str = Field(description='SHA-256("yima-draw-v1" 0x00 "seed" 0x00 seed), hex')
    table_hash: str = Field(description='SHA-256("yima-draw-v1" 0x00 "table" 0x00 table), hex')
    table: str = Field(description="the prize table as hashed: [[key, exact probability], ...]")
    published_at: dt.datetime | None = None


class RevealedOut(BaseModel):
    seed: str = Field(description="the draw's secret seed, hex, revealed after the end")
    revealed_at: dt.datetime | None = None
    seed_matches: bool = Field(description="the seed hashes to the published seed_hash")
    table_matches: bool = Field(description="the prize table hashes to the published table_hash")
    draws: int = Field(description="draws made in the campaign")
    outcomes: dict[str, int] = Field(description="draws by outcome: won | fallback | nothing")
    verify_command: str
    draws_url: str | None = Field(
        default=None, description="every draw's inputs and result, to recompute"
    )


class PublicCampaignOut(BaseModel):
    id: int
    brand: str
    brand_name: str
    name: str
    description: str
    status: str = Field(description="scheduled | running | paused | ended")
    starts_at: dt.datetime
    ends_at: dt.datetime
    timezone: str = Field(description="the brand's timezone, in which starts/ends_local read")
    starts_local: str
    ends_local: str
    rules: list[str] = Field(description="the effective rules in plain words, one per line")
    prizes: list[PrizeLineOut]
    nothing: ChanceOut | None = Field(description="the chance of no prize (null without a draw)")
    fallback: str | None = Field(
        default=None, description="the prize given when one is out of stock or over a limit"
    )
    commitments: CommitmentsOut | None = None
    revealed: RevealedOut | None = Field(default=None, description="after the end")


class DrawRecordOut(BaseModel):
    id: int
    inputs: dict[str, Any] = Field(description="what the seed was hashed with (canonical JSON)")
    slot: int
    drawn_key: str | None = Field(description="the prize the slot names (null: no prize)")
    outcome: str
    given_key: str | None = Field(description="the prize given (the fallback when downgraded)")
    downgrade: str | None = Field(description="member_limit | budget | out_of_stock | paced")


class DrawRecordsOut(BaseModel):
    seed: str
    slots: int = Field(description="the table's slot count (its least common denominator)")
    items: list[DrawRecordOut]
    next_after: int | None = None


# --- my prizes -----------------------------------------------------------------------------------


def _my_prize_rows(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    reward_id: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Sequence[Any]:
    """The member's draws that gave a prize (every real prize has its outbox row: the inner
    join leaves out "nothing" and "thanks"), newest first."""
    stmt = (
        select(Reward, Prize, Campaign, Fulfilment)
        .join(Fulfilment, Fulfilment.reward_id == Reward.id)
        .join(Prize, Prize.id == Fulfilment.prize_id)
        .join(Campaign, Campaign.id == Fulfilment.campaign_id)
        .where(Reward.tenant_id == tenant_id, Reward.member_id == member_id)
    )
    if reward_id is not None:
        stmt = stmt.where(Reward.id == reward_id)
    if after:
        stmt = stmt.where(Reward.id < after)
    return session.execute(stmt.order_by(Reward.id.desc()).limit(limit)).all()


def _my_prize(row: Any, brand: str) -> MyPrizeOut:
    reward, prize, campaign, fulfilment = row
    return MyPrizeOut(
        reward_id=reward.id,
        campaign=CampaignRef(id=campaign.id, name=campaign.name, brand=brand),
        prize=PrizeOut(
            key=prize.key,
            name=prize.name,
            kind=prize.kind,
            amount_fen=prize.amount_fen,
            points=prize.points,
        ),
        outcome=reward.outcome or "won",
        status=fulfilment.status,
        won_at=reward.created_at,
        claim_needed=fulfilment.kind == "goods" and fulfilment.status == "claim_wanted",
        tracking_no=fulfilment.tracking_no if fulfilment.status == "shipped" else None,
        coupon_code=fulfilment.coupon_code,
    )


def _brand_slug(session: Session, tenant_id: int) -> str:
    tenant = session.get(Tenant, tenant_id)
    return tenant.slug if tenant is not None else ""


def _one_prize(session: Session, who: members.SignedIn, reward_id: int) -> MyPrizeOut:
    rows = _my_prize_rows(
        session, tenant_id=who.tenant_id, member_id=who.member_id, reward_id=reward_id, limit=1
    )
    if not rows:
        raise RewardNotFoundError(f"no prize {reward_id} of yours")
    return _my_prize(rows[0], _brand_slug(session, who.tenant_id))


@consumer.get("/me/prizes")
@operation(
    "My prizes: the draws that gave me one, newest first",
    tag="campaigns",
    response=MyPrizesOut,
    query=PAGINATION,
)
@secured
def my_prizes() -> Any:
    who = members.current_member()
    limit, after = page_args()
    session = db_session()
    rows = _my_prize_rows(
        session, tenant_id=who.tenant_id, member_id=who.member_id, after=after, limit=limit
    )
    brand = _brand_slug(session, who.tenant_id)
    items = [_my_prize(row, brand) for row in rows]
    return MyPrizesOut(
        items=items, next_after=next_after([reward for reward, *_rest in rows], limit)
    ).model_dump(mode="json")


@consumer.get("/me/prizes/<id:reward_id>")
@operation("One of my prizes", tag="campaigns", response=MyPrizeOut, errors=(404,))
@secured
def my_prize(reward_id: int) -> Any:
    who = members.current_member()
    return _one_prize(db_session(), who, reward_id).model_dump(mode="json")


@consumer.post("/me/prizes/<id:reward_id>/claim")
@operation(
    "Claim a goods prize: where to send it (again, to correct it, until it ships)",
    tag="campaigns",
    body=ClaimIn,
    response=MyPrizeOut,
    errors=(404, 409, 415),
)
@secured
def claim_prize(reward_id: int) -> Any:
    who = members.current_member()
    body = parse_body(ClaimIn)
    session = db_session()
    try:
        claim_goods(
            session,
            app_runtime(),
            tenant_id=who.tenant_id,
            member_id=who.member_id,
            reward_id=reward_id,
            shipping=body.model_dump(),
        )
    except ValidationFailedError as exc:
        # The claim's fields are at the top of the body, not under "shipping".
        raise ValidationFailedError(
            exc.detail.removeprefix(_SHIPPING_PREFIX),
            errors={k.removeprefix(_SHIPPING_PREFIX): v for k, v in exc.errors.items()},
        ) from None
    return _one_prize(session, who, reward_id).model_dump(mode="json")


# --- a campaign's public rules -------------------------------------------------------------------


def _public_campaign_row(session: Session, brand: str, campaign_id: int) -> tuple[Tenant, Campaign]:
    # Only a well-formed slug is looked up (a NUL byte or a long string never reaches SQL).
    tenant = get_tenant_by_slug(session, brand) if SLUG_RE.fullmatch(brand) else None
    campaign = session.get(Campaign, campaign_id) if tenant is not None else None
    # A draft is not published: nothing to show the public.
    if (
        tenant is None
        or campaign is None
        or campaign.tenant_id != tenant.id
        or campaign.status == "draft"
    ):
        raise CampaignNotFoundError(f"no campaign {campaign_id} of this brand")
    return tenant, campaign


def public_campaign(
    session: Session,
    *,
    brand: str,
    campaign_id: int,
    lang: rules.Lang = "zh",
    now: dt.datetime | None = None,
) -> PublicCampaignOut:
    """A published campaign of the brand (its slug) as its rules page shows it, in ``lang``;
    404 ``campaign_not_found`` for an unknown or draft one. Times are shown in the brand's
    timezone. After the end: the revealed seed, checked against its commitment, and the count
    of draws (``revealed.draws_url`` is left for the caller, who knows the URL)."""
    tenant, campaign = _public_campaign_row(session, brand, campaign_id)
    spec = spec_of(campaign)
    zone_name = spec.timezone  # the campaign's window and rules are in its own timezone
    zone = ZoneInfo(zone_name)
    draw = spec.draw
    prizes = [PrizeLineOut(**line) for line in rules.describe_prizes(draw, lang)] if draw else []
    nothing = None
    commitments = None
    revealed = None
    if draw is not None:
        odds = draw.odds
        nothing = ChanceOut(probability=str(odds.nothing), percent=rules.percent_text(odds.nothing))
        if campaign.seed_hash is not None and campaign.table_hash is not None:
            commitments = CommitmentsOut(
                algorithm=VERSION,
                seed_hash=campaign.seed_hash,
                table_hash=campaign.table_hash,
                table=odds.canonical(),
                published_at=campaign.published_at,
            )
        if campaign.seed_revealed is not None:
            seed = bytes.fromhex(campaign.seed_revealed)
            outcomes = {
                str(outcome): int(n)
                for outcome, n in session.execute(
                    select(Reward.outcome, func.count())
                    .where(Reward.draw_campaign_id == campaign.id, Reward.outcome.is_not(None))
                    .group_by(Reward.outcome)
                )
            }
            revealed = RevealedOut(
                seed=campaign.seed_revealed,
                revealed_at=campaign.revealed_at,
                seed_matches=seed_commitment(seed) == campaign.seed_hash,
                table_matches=odds.commitment() == campaign.table_hash,
                draws=sum(outcomes.values()),
                outcomes=outcomes,
                verify_command=VERIFY_COMMAND.format(id=campaign.id),
            )
    fallback = draw.prize(draw.fallback) if draw is not None and draw.fallback else None
    return PublicCampaignOut(
        id=campaign.id,
        brand=tenant.slug,
        brand_name=tenant.name,
        name=campaign.name,
        description=spec.description,
        status=display_status(campaign, now or utcnow()),
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        timezone=zone_name,
        starts_local=campaign.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        ends_local=campaign.ends_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        rules=rules.describe(spec, lang),
        prizes=prizes,
        nothing=nothing,
        fallback=fallback.name if fallback is not None else None,
        commitments=commitments,
        revealed=revealed,
    )


def draws_url(brand: str, campaign_id: int) -> str:
    """Where the ended campaign's draws are listed (inside a request of the scan app)."""
    return url_for("campaigns_consumer.public_draws", brand=brand, campaign_id=campaign_id)


@consumer.get("/campaigns/<brand>/<id:campaign_id>")
@operation(
    "A campaign's rules: window, prizes with exact odds, commitments; after the end its seed",
    tag="campaigns",
    response=PublicCampaignOut,
    query={"lang": {"type": "string", "enum": ["zh", "en"]}},
    errors=(404,),
)
def get_public_campaign(brand: str, campaign_id: int) -> Any:
    found = public_campaign(db_session(), brand=brand, campaign_id=campaign_id, lang=_lang())
    if found.revealed is not None:
        found.revealed.draws_url = draws_url(found.brand, found.id)
    return found.model_dump(mode="json")


@consumer.get("/campaigns/<brand>/<id:campaign_id>/draws")
@operation(
    "An ended campaign's draws, oldest first, with their inputs: recompute each with the seed",
    tag="campaigns",
    response=DrawRecordsOut,
    query=PAGINATION,
    errors=(404, 409),
)
def public_draws(brand: str, campaign_id: int) -> Any:
    session = db_session()
    _tenant, campaign = _public_campaign_row(session, brand, campaign_id)
    spec = spec_of(campaign)
    if campaign.seed_revealed is None or spec.draw is None:
        raise SeedNotRevealedError(
            "the campaign's seed is revealed when it ends: its draws can be checked then"
        )
    limit, after = page_args()
    given = {
        p.id: p.key for p in session.scalars(select(Prize).where(Prize.campaign_id == campaign.id))
    }
    found = session.scalars(
        select(Reward)
        .where(Reward.draw_campaign_id == campaign.id, Reward.id > after)
        .order_by(Reward.id)
        .limit(limit)
    ).all()
    items = [
        DrawRecordOut(
            id=r.id,
            inputs=r.draw_inputs or {},
            slot=r.slot or 0,
            drawn_key=r.drawn_key,
            outcome=r.outcome or "nothing",
            given_key=given.get(r.prize_id) if r.prize_id is not None else None,
            downgrade=r.downgrade,
        )
        for r in found
    ]
    return DrawRecordsOut(
        seed=campaign.seed_revealed,
        slots=spec.draw.odds.slots,
        items=items,
        next_after=next_after(list(found), limit),
    ).model_dump(mode="json")
