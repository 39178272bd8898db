"""Loyalty routes: my tier and progress, check-in, referral (consumer); the programme settings,
the tier ladder and a member's tier history (management).

Thin: parse, authorise, call a service, serialise. Management reads need ``members``, writes
``members_write`` and are audited.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import request
from sqlalchemy import func, select

import codegen
from core.auth import audit
from core.db import utcnow
from core.models import Tenant
from core.openapi import PAGINATION, next_after, operation, page_args, parse_body, secured
from core.services import tenant_timezone
from core.web import app_runtime, db_session
from members import schemas_loyalty as schemas
from members.engagement import (
    check_in,
    check_ins_of,
    referral_summary,
)
from members.models import Member
from members.services import get_member_or_raise
from members.settings import get_programme, update_programme
from members.tiers import (
    create_tier,
    delete_tier,
    get_tier_or_raise,
    ladder_of,
    list_tiers,
    progress_of,
    review_at,
    tier_benefits,
    tier_changes_of,
    update_tier,
    window_start,
)
from members.views._common import consumer, current_member, manage, manager

# --- consumer --------------------------------------------------------------------------------


@consumer.get("/me/tier")
@operation(
    "My tier, what I did in the window, what the next tier needs",
    tag="members",
    response=schemas.MyTier,
)
@secured
def my_tier() -> Any:
    who = current_member()
    session, runtime = db_session(), app_runtime()
    member = get_member_or_raise(session, tenant_id=who.tenant_id, member_id=who.member_id)
    programme = get_programme(runtime, session, who.tenant_id)
    ladder = ladder_of(runtime, session, who.tenant_id)
    now = utcnow()
    progress = progress_of(
        session,
        tenant_id=who.tenant_id,
        member_id=member.id,
        since=window_start(programme, now),
    )
    current = ladder.by_id.get(member.tier_id) if member.tier_id is not None else None
    upper = ladder.above(current.rank if current is not None else -1)
    timezone = tenant_timezone(session, who.tenant_id)
    body = schemas.MyTier(
        tier=schemas.TierRef(id=current.id, name=current.name, rank=current.rank)
        if current
        else None,
        next=schemas.NextTier(
            id=upper.id,
            name=upper.name,
            rank=upper.rank,
            qualify=upper.qualify,
            need=schemas.Need(**upper.missing(progress)),
        )
        if upper
        else None,
        progress=schemas.ProgressOut(
            growth=progress.growth, spend=progress.spend, scans=progress.scans
        ),
        benefits=tier_benefits(runtime, session, tenant_id=who.tenant_id, tier_id=member.tier_id),
        window_days=programme.tier_review_days,
        review_at=review_at(programme, member.tier_since, now, timezone)
        if current is not None
        else None,
    ).model_dump(mode="json")
    if body["next"] is not None:  # only the thresholds the next tier has
        body["next"]["need"] = {k: v for k, v in body["next"]["need"].items() if v is not None}
    return body


@consumer.post("/me/check-ins")
@operation(
    "Check in for today (once a day)",
    tag="members",
    response=schemas.CheckInOut,
    status=201,
    errors=(409,),
)
@secured
def post_check_in() -> Any:
    who = current_member()
    done = check_in(db_session(), app_runtime(), tenant_id=who.tenant_id, member_id=who.member_id)
    body = schemas.CheckInOut(
        day=done.day, streak=done.streak, points=done.points, bonus=done.bonus
    )
    return body.model_dump(mode="json"), 201


@consumer.get("/me/check-ins")
@operation(
    "The days I checked in this month (or ?month=YYYY-MM) and my current streak",
    tag="members",
    response=schemas.CheckInMonthOut,
    query={"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
)
@secured
def get_check_ins() -> Any:
    who = current_member()
    found = check_ins_of(
        db_session(),
        tenant_id=who.tenant_id,
        member_id=who.member_id,
        month=request.args.get("month"),
    )
    return schemas.CheckInMonthOut(days=found.days, streak=found.streak).model_dump(mode="json")


@consumer.get("/me/referral")
@operation(
    "My referral code, invitation link, members invited and points earned",
    tag="members",
    response=schemas.ReferralOut,
)
@secured
def my_referral() -> Any:
    who = current_member()
    session = db_session()
    found = referral_summary(session, tenant_id=who.tenant_id, member_id=who.member_id)
    link = None
    if found.code:
        host = codegen.scan_host_for(session, app_runtime(), who.tenant_id)
        tenant = session.get(Tenant, who.tenant_id)
        # Referral codes are unique within a brand: the link names the brand.
        brand = f"?brand={quote(tenant.slug)}" if tenant is not None else ""
        link = f"https://{host}/m/invite/{found.code}{brand}"
    return schemas.ReferralOut(
        code=found.code, link=link, invited=found.invited, points_earned=found.points_earned
    ).model_dump(mode="json")


# --- management: programme ------------------------------------------------------------------


@manage.get("/members/programme")
@operation(
    "The member programme: scan points, expiry, engagement, tier review",
    tag="members",
    response=schemas.Programme,
)
@secured
def get_member_programme() -> Any:
    principal = manager("members")
    return get_programme(app_runtime(), db_session(), principal.tenant_id).model_dump(mode="json")


@manage.put("/members/programme")
@operation(
    "Change some settings of the member programme (the others keep their values)",
    tag="members",
    body=schemas.ProgrammeChanges,
    response=schemas.Programme,
    errors=(415,),
)
@secured
def put_member_programme() -> Any:
    principal = manager("members_write")
    changes = parse_body(schemas.ProgrammeChanges).model_dump(exclude_unset=True)
    programme = update_programme(
        db_session(), app_runtime(), tenant_id=principal.tenant_id, changes=changes
    )
    audit(
        "members.programme",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail=schemas.ProgrammeChanges.model_validate(changes).model_dump(
            mode="json", exclude_unset=True
        ),
    )
    return programme.model_dump(mode="json")


# --- management: tiers ----------------------------------------------------------------------


@manage.get("/tiers")
@operation(
    "The tier ladder, lowest rank first, with how many members hold each tier",
    tag="members",
    response=schemas.TierList,
)
@secured
def get_tiers() -> Any:
    principal = manager("members")
    session = db_session()
    holders = {
        tier_id: int(n)
        for tier_id, n in session.execute(
            select(Member.tier_id, func.count())
            .where(Member.tenant_id == principal.tenant_id, Member.tier_id.is_not(None))
            .group_by(Member.tier_id)
        )
    }
    tiers = list_tiers(session, tenant_id=principal.tenant_id)
    return schemas.TierList(
        items=[schemas.TierOut.of(t, holders.get(t.id, 0)) for t in tiers]
    ).model_dump(mode="json")


@manage.post("/tiers")
@operation(
    "Add a tier to the ladder",
    tag="members",
    body=schemas.TierIn,
    response=schemas.TierOut,
    status=201,
    errors=(415,),
)
@secured
def post_tier() -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.TierIn)
    tier = create_tier(
        db_session(), app_runtime(), tenant_id=principal.tenant_id, **body.model_dump()
    )
    out = schemas.TierOut.of(tier, 0)
    audit(
        "members.tier.create",
        target_type="tier",
        target_id=tier.id,
        detail=body.model_dump(mode="json"),
    )
    return out.model_dump(mode="json"), 201


@manage.get("/tiers/<id:tier_id>")
@operation("A tier", tag="members", response=schemas.TierOut)
@secured
def get_tier(tier_id: int) -> Any:
    principal = manager("members")
    session = db_session()
    tier = get_tier_or_raise(session, tenant_id=principal.tenant_id, tier_id=tier_id)
    holders = session.scalar(
        select(func.count()).select_from(Member).where(Member.tier_id == tier.id)
    )
    return schemas.TierOut.of(tier, int(holders or 0)).model_dump(mode="json")


@manage.patch("/tiers/<id:tier_id>")
@operation(
    "Change a tier; new thresholds apply from the next upgrade check or review",
    tag="members",
    body=schemas.TierPatch,
    response=schemas.TierOut,
    errors=(415,),
)
@secured
def patch_tier(tier_id: int) -> Any:
    principal = manager("members_write")
    changes = parse_body(schemas.TierPatch).changes()
    tier = update_tier(
        db_session(),
        app_runtime(),
        tenant_id=principal.tenant_id,
        tier_id=tier_id,
        changes=changes,
    )
    audit("members.tier.update", target_type="tier", target_id=tier.id, detail=changes)
    return schemas.TierOut.of(tier).model_dump(mode="json")


@manage.delete("/tiers/<id:tier_id>")
@operation("Delete a tier no member holds", tag="members", status=204, errors=(409,))
@secured
def remove_tier(tier_id: int) -> Any:
    principal = manager("members_write")
    session = db_session()
    tier = get_tier_or_raise(session, tenant_id=principal.tenant_id, tier_id=tier_id)
    name = tier.name
    delete_tier(session, app_runtime(), tenant_id=principal.tenant_id, tier_id=tier_id)
    audit("members.tier.delete", target_type="tier", target_id=tier_id, detail={"name": name})
    return "", 204


@manage.get("/members/<id:member_id>/tier-changes")
@operation(
    "A member's moves between tiers, newest first",
    tag="members",
    response=schemas.TierChangePage,
    query=PAGINATION,
)
@secured
def get_tier_changes(member_id: int) -> Any:
    principal = manager("members")
    session = db_session()
    get_member_or_raise(session, tenant_id=principal.tenant_id, member_id=member_id)
    limit, after = page_args()
    changes = list(
        tier_changes_of(
            session, tenant_id=principal.tenant_id, member_id=member_id, limit=limit, after=after
        )
    )
    ladder = ladder_of(app_runtime(), session, principal.tenant_id)
    return schemas.TierChangePage(
        items=[schemas.TierChangeOut.of(c, ladder) for c in changes],
        next_after=next_after(changes, limit),
    ).model_dump(mode="json")
