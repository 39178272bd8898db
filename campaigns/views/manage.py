"""The campaigns management API (console, ``/api/v1``): campaigns and their life, the rules page
text and commitments, prize pools, budget burn, stats, the draws and their verification, the
brand's liability, the review queue and prize fulfilment.

Thin: parse, authorise, call a service, serialise. Reads need ``campaigns``, writes
``campaigns_write`` and are audited; a winner's shipping details need ``pii`` and are audited.
Another brand's campaign, reward or prize is a 404, as if it did not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from campaigns import reports, rules, schemas
from campaigns.errors import RewardNotFoundError
from campaigns.fairness import VERSION
from campaigns.fulfilment import mark_shipped, shipping_of
from campaigns.lifecycle import (
    create_campaign,
    end_campaign,
    get_campaign_or_raise,
    list_campaigns,
    pause_campaign,
    resume_campaign,
    schedule_campaign,
    spec_of,
    update_campaign,
)
from campaigns.models import CAMPAIGN_STATUSES, FULFILMENT_STATUSES, Campaign
from campaigns.review import decide, held_rewards
from campaigns.verify import canonical_table, export_draws, verify_campaign
from core.auth import Principal, audit, caller_with
from core.errors import ValidationFailedError
from core.openapi import (
    MAX_ID,
    PAGINATION,
    next_after,
    operation,
    page_args,
    parse_body,
    query_int,
    secured,
)
from core.web import app_runtime, db_session

manage = Blueprint("campaigns_api", __name__)

TAG = "campaigns"
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NEWEST_FIRST = {
    **PAGINATION,
    "after": {**PAGINATION["after"], "description": "id of the last item seen (newest first)"},
}


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationFailedError.field(name, "one of " + ", ".join(allowed))
    return value


def _campaign(principal: Principal, campaign_id: int) -> Campaign:
    return get_campaign_or_raise(
        db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id
    )


def _out(campaign: Campaign) -> dict[str, Any]:
    return schemas.CampaignOut.of(campaign).model_dump(mode="json")


# --- campaigns ----------------------------------------------------------------------------------


@manage.get("/campaigns")
@operation(
    "The brand's campaigns, newest first",
    tag=TAG,
    response=schemas.CampaignPage,
    query={**NEWEST_FIRST, "status": {"type": "string", "enum": list(CAMPAIGN_STATUSES)}},
)
@secured
def get_campaigns() -> Any:
    principal = caller_with("campaigns")
    status = _choice("status", CAMPAIGN_STATUSES)
    limit, after = page_args()
    found = list(
        list_campaigns(
            db_session(),
            tenant_id=principal.tenant_id,
            status=status,
            after=after or None,
            limit=limit,
        )
    )
    return schemas.CampaignPage(
        items=[schemas.CampaignSummary.of(c) for c in found], next_after=next_after(found, limit)
    ).model_dump(mode="json")


@manage.post("/campaigns")
@operation(
    "Create a draft campaign (422 naming each wrong field; campaign_overlap when another one "
    "of the same priority overlaps its window)",
    tag=TAG,
    body=rules.CampaignSpec,
    response=schemas.CampaignOut,
    status=201,
    errors=(415,),
)
@secured
def post_campaign() -> Any:
    principal = caller_with("campaigns_write")
    raw = parse_body(schemas.CampaignBody).root
    campaign = create_campaign(
        db_session(), tenant_id=principal.tenant_id, raw=raw, actor=principal.actor
    )
    audit(
        "campaigns.create",
        target_type="campaign",
        target_id=campaign.id,
        detail={"name": campaign.name},
    )
    return _out(campaign), 201


@manage.get("/campaigns/<id:campaign_id>")
@operation(
    "A campaign, its configuration and its commitments", tag=TAG, response=schemas.CampaignOut
)
@secured
def get_campaign(campaign_id: int) -> Any:
    return _out(_campaign(caller_with("campaigns"), campaign_id))


@manage.put("/campaigns/<id:campaign_id>")
@operation(
    "Replace a campaign's configuration; once scheduled, only its name, description, earn "
    "rules, targeting and fraud policy may change (409 campaign_locked)",
    tag=TAG,
    body=rules.CampaignSpec,
    response=schemas.CampaignOut,
    errors=(409, 415),
)
@secured
def put_campaign(campaign_id: int) -> Any:
    principal = caller_with("campaigns_write")
    raw = parse_body(schemas.CampaignBody).root
    campaign = update_campaign(
        db_session(),
        app_runtime(),
        tenant_id=principal.tenant_id,
        campaign_id=campaign_id,
        raw=raw,
    )
    audit(
        "campaigns.update",
        target_type="campaign",
        target_id=campaign.id,
        detail={"name": campaign.name, "status": campaign.status},
    )
    return _out(campaign)


_ACTIONS: dict[str, Callable[..., Campaign]] = {
    "schedule": schedule_campaign,
    "pause": pause_campaign,
    "resume": resume_campaign,
    "end": end_campaign,
}


def _act(action: str, campaign_id: int) -> Any:
    principal = caller_with("campaigns_write")
    campaign = _ACTIONS[action](
        db_session(), app_runtime(), tenant_id=principal.tenant_id, campaign_id=campaign_id
    )
    audit(
        f"campaigns.{action}",
        target_type="campaign",
        target_id=campaign.id,
        detail={"status": campaign.status},
    )
    return _out(campaign)


@manage.post("/campaigns/<id:campaign_id>/schedule")
@operation(
    "Publish a draft: its draw's seed is sealed and its commitments published; from now on "
    "its odds, prizes, limits and window are fixed",
    tag=TAG,
    response=schemas.CampaignOut,
    errors=(409,),
)
@secured
def post_schedule(campaign_id: int) -> Any:
    return _act("schedule", campaign_id)


@manage.post("/campaigns/<id:campaign_id>/pause")
@operation(
    "Pause a scheduled or running campaign", tag=TAG, response=schemas.CampaignOut, errors=(409,)
)
@secured
def post_pause(campaign_id: int) -> Any:
    return _act("pause", campaign_id)


@manage.post("/campaigns/<id:campaign_id>/resume")
@operation("Resume a paused campaign", tag=TAG, response=schemas.CampaignOut, errors=(409,))
@secured
def post_resume(campaign_id: int) -> Any:
    return _act("resume", campaign_id)


@manage.post("/campaigns/<id:campaign_id>/end")
@operation(
    "End a campaign now and reveal its draw's seed (anyone can then verify every draw)",
    tag=TAG,
    response=schemas.CampaignOut,
    errors=(409,),
)
@secured
def post_end(campaign_id: int) -> Any:
    return _act("end", campaign_id)


@manage.get("/campaigns/<id:campaign_id>/rules")
@operation(
    "The campaign's rules in plain words, its prizes with their exact odds, and the draw's "
    "published commitments",
    tag=TAG,
    response=schemas.RulesOut,
    query={"lang": {"type": "string", "enum": ["zh", "en"], "default": "zh"}},
)
@secured
def get_rules(campaign_id: int) -> Any:
    campaign = _campaign(caller_with("campaigns"), campaign_id)
    lang: rules.Lang = "en" if _choice("lang", ("zh", "en")) == "en" else "zh"
    spec = spec_of(campaign)
    draw = spec.draw
    return schemas.RulesOut(
        campaign_id=campaign.id,
        lang=lang,
        lines=rules.describe(spec, lang),
        prizes=[schemas.PrizeText(**p) for p in rules.describe_prizes(draw, lang)] if draw else [],
        commitments=schemas.CommitmentsOut(
            algorithm=VERSION,
            seed_hash=campaign.seed_hash,
            table_hash=campaign.table_hash,
            table=canonical_table(rules.odds_of(draw)) if draw else None,
            published_at=campaign.published_at,
            seed=campaign.seed_revealed,
            revealed_at=campaign.revealed_at,
        ),
    ).model_dump(mode="json")


# --- reports ------------------------------------------------------------------------------------


@manage.get("/campaigns/<id:campaign_id>/prizes")
@operation(
    "The prize pools: stock, issued, left, unit value and how often each was given",
    tag=TAG,
    response=schemas.PrizePoolList,
)
@secured
def get_prize_pools(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    pools = reports.prize_pools(
        db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id
    )
    return schemas.PrizePoolList(
        items=[schemas.PrizePoolOut.model_validate(p, from_attributes=True) for p in pools]
    ).model_dump(mode="json")


@manage.get("/campaigns/<id:campaign_id>/budget")
@operation(
    "The draw's budget and what was spent of it, by day in the campaign's timezone",
    tag=TAG,
    response=schemas.BudgetOut,
)
@secured
def get_budget(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    burn = reports.budget_burn(db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id)
    return schemas.BudgetOut.model_validate(burn, from_attributes=True).model_dump(mode="json")


@manage.get("/campaigns/<id:campaign_id>/stats")
@operation(
    "What the campaign has done: rewards, points, draws by outcome, winners, held and denied",
    tag=TAG,
    response=schemas.StatsOut,
)
@secured
def get_stats(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    stats = reports.campaign_stats(
        db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id
    )
    return schemas.StatsOut.model_validate(stats, from_attributes=True).model_dump(mode="json")


@manage.get("/liability")
@operation(
    "What the brand owes its members: open points (valued at points_per_yuan) and prizes won "
    "but not yet delivered",
    tag=TAG,
    response=schemas.LiabilityOut,
    query={"points_per_yuan": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100}},
)
@secured
def get_liability() -> Any:
    principal = caller_with("campaigns")
    per_yuan = query_int("points_per_yuan", default=100, low=1, high=10_000)
    owed = reports.liability(db_session(), tenant_id=principal.tenant_id, points_per_yuan=per_yuan)
    return schemas.LiabilityOut.model_validate(owed, from_attributes=True).model_dump(mode="json")


# --- draws and verification ---------------------------------------------------------------------


@manage.get("/campaigns/<id:campaign_id>/draws")
@operation(
    "The campaign's draws, newest first: inputs, slot, what the seed drew and what was given",
    tag=TAG,
    response=schemas.DrawPage,
    query={**NEWEST_FIRST, "outcome": {"type": "string", "enum": ["won", "fallback", "nothing"]}},
)
@secured
def get_draws(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    limit, after = page_args()
    found = reports.draws_of(
        db_session(),
        tenant_id=principal.tenant_id,
        campaign_id=campaign_id,
        outcome=_choice("outcome", ("won", "fallback", "nothing")),
        after=after,
        limit=limit,
    )
    return schemas.DrawPage(
        items=[schemas.DrawOut.of(r, p) for r, p in found],
        next_after=next_after([reward for reward, *_rest in found], limit),
    ).model_dump(mode="json")


@manage.get("/campaigns/<id:campaign_id>/verify")
@operation(
    "Recompute every draw from the revealed seed and check the commitments, stock and budget "
    "(409 seed_not_revealed before the campaign ends)",
    tag=TAG,
    response=schemas.VerificationOut,
    errors=(409,),
)
@secured
def get_verification(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    found = verify_campaign(db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id)
    return schemas.VerificationOut.model_validate(found.to_json()).model_dump(mode="json")


@manage.get("/campaigns/<id:campaign_id>/draws.json")
@operation(
    "Every draw with the seed, table and commitments, for an independent check "
    "(`yima draws verify --file`); 409 before the campaign ends",
    tag=TAG,
    binary="application/json",
    errors=(409,),
)
@secured
def get_draws_export(campaign_id: int) -> Any:
    principal = caller_with("campaigns")
    document = export_draws(db_session(), tenant_id=principal.tenant_id, campaign_id=campaign_id)
    return Response(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")),
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-draws.json"'
        },
    )


# --- reviews ------------------------------------------------------------------------------------


@manage.get("/reviews")
@operation(
    "Rewards the fraud rules held, oldest first, with the rules' reasons and counts",
    tag=TAG,
    response=schemas.ReviewPage,
    query=PAGINATION,
)
@secured
def get_reviews() -> Any:
    principal = caller_with("campaigns")
    limit, after = page_args()
    session = db_session()
    held = list(
        held_rewards(session, tenant_id=principal.tenant_id, after=after or None, limit=limit)
    )
    prizes = reports.prizes_by_id(session, [r.prize_id for r in held if r.prize_id is not None])
    return schemas.ReviewPage(
        items=[
            schemas.ReviewOut.of(r, prizes.get(r.prize_id) if r.prize_id else None) for r in held
        ],
        next_after=next_after(held, limit),
    ).model_dump(mode="json")


@manage.post("/reviews/<id:reward_id>")
@operation(
    "Decide a held reward: release (credit points, deliver the prize), deny, or claw back a "
    "granted one (409 review_state when it is not in the state the decision needs)",
    tag=TAG,
    body=schemas.DecisionIn,
    response=schemas.DecidedOut,
    errors=(409, 415),
)
@secured
def post_review(reward_id: int) -> Any:
    principal = caller_with("campaigns_write")
    body = parse_body(schemas.DecisionIn)
    session = db_session()
    reward = decide(
        session,
        app_runtime(),
        tenant_id=principal.tenant_id,
        reward_id=reward_id,
        decision=body.decision,
        actor=principal.actor,
        note=body.note,
    )
    audit(
        "campaigns.review",
        target_type="reward",
        target_id=reward_id,
        detail={"decision": body.decision, "note": body.note},
    )
    return schemas.DecidedOut.model_validate(reward, from_attributes=True).model_dump(mode="json")


# --- fulfilment ---------------------------------------------------------------------------------


@manage.get("/fulfilments")
@operation(
    "Prizes to deliver, oldest first, by status (claimed: goods waiting to ship) or campaign",
    tag=TAG,
    response=schemas.FulfilmentPage,
    query={
        **PAGINATION,
        "status": {"type": "string", "enum": list(FULFILMENT_STATUSES)},
        "campaign_id": ID,
    },
)
@secured
def get_fulfilments() -> Any:
    principal = caller_with("campaigns")
    limit, after = page_args()
    found = reports.fulfilments_of(
        db_session(),
        tenant_id=principal.tenant_id,
        status=_choice("status", FULFILMENT_STATUSES),
        campaign_id=query_int("campaign_id", low=1, high=MAX_ID),
        after=after,
        limit=limit,
    )
    return schemas.FulfilmentPage(
        items=[schemas.FulfilmentOut.of(f, p) for f, p in found],
        next_after=next_after([reward for reward, *_rest in found], limit),
    ).model_dump(mode="json")


@manage.get("/fulfilments/<id:reward_id>/shipping")
@operation(
    "A goods prize's shipping details as the winner gave them (pii permission; audited)",
    tag=TAG,
    response=schemas.ShippingOut,
)
@secured
def get_shipping(reward_id: int) -> Any:
    principal = caller_with("pii")
    session = db_session()
    row = reports.fulfilment_of(session, tenant_id=principal.tenant_id, reward_id=reward_id)
    if row is None:
        raise RewardNotFoundError(f"no prize {reward_id}")
    details = shipping_of(session, app_runtime(), row)
    if details is not None:
        audit("campaigns.shipping.view", target_type="reward", target_id=reward_id)
    return schemas.ShippingOut(
        reward_id=reward_id,
        status=row.status,
        shipping=schemas.ShippingDetails(**details) if details else None,
    ).model_dump(mode="json")


@manage.post("/fulfilments/<id:reward_id>/ship")
@operation(
    "Record that a claimed goods prize was shipped, with its tracking number (409 unless "
    "claimed; a repeat with the same number is accepted)",
    tag=TAG,
    body=schemas.ShipIn,
    response=schemas.FulfilmentOut,
    errors=(409, 415),
)
@secured
def post_ship(reward_id: int) -> Any:
    principal = caller_with("campaigns_write")
    body = parse_body(schemas.ShipIn)
    session = db_session()
    row = mark_shipped(
        session, tenant_id=principal.tenant_id, reward_id=reward_id, tracking_no=body.tracking_no
    )
    audit(
        "campaigns.ship",
        target_type="reward",
        target_id=reward_id,
        detail={"tracking_no": body.tracking_no},
    )
    prize = reports.prizes_by_id(session, [row.prize_id])[row.prize_id]
    return schemas.FulfilmentOut.of(row, prize).model_dump(mode="json")
