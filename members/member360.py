"""The member 360 view: one member as the brand's service desk needs to see them at once.

Profile (phone masked unless the caller may see it), tier and growth, balance with the lots and
when they expire, the latest ledger entries and rewarded scans, orders and coupons, tags, RFM
segment, tier history and check-in streak. Each part is one bounded query (the newest few);
the full lists have their own paged endpoints.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.runtime import Runtime
from members.catalogue import coupon_status, items_by_id
from members.directory import member_profile
from members.ledger import entries_of
from members.models import CheckIn, Coupon, Order, PointsEntry, PointsLot
from members.rfm import rfm_of, segment_label
from members.tags import tags_of
from members.tiers import tier_changes_of

RECENT = 10


def member_360(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    unmasked: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Everything about one member of ``tenant_id`` (404 for anyone else's)."""
    now = now or utcnow()
    view = member_profile(
        session, runtime, tenant_id=tenant_id, member_id=member_id, unmasked=unmasked
    )
    lots = session.scalars(
        select(PointsLot)
        .where(PointsLot.member_id == member_id, PointsLot.remaining > 0)
        .order_by(PointsLot.expires_at.is_(None), PointsLot.expires_at, PointsLot.id)
        .limit(50)
    ).all()
    entries = entries_of(session, member_id=member_id, limit=RECENT)
    scans = session.scalars(
        select(PointsEntry)
        .where(
            PointsEntry.member_id == member_id,
            PointsEntry.kind == "earn",
            PointsEntry.business_key.startswith("scan:"),
        )
        .order_by(PointsEntry.id.desc())
        .limit(RECENT)
    ).all()
    orders = session.scalars(
        select(Order).where(Order.member_id == member_id).order_by(Order.id.desc()).limit(RECENT)
    ).all()
    names = {i: item.name for i, item in items_by_id(session, [o.item_id for o in orders]).items()}
    coupons = session.scalars(
        select(Coupon).where(Coupon.member_id == member_id).order_by(Coupon.id.desc()).limit(RECENT)
    ).all()
    last_check_in = session.scalars(
        select(CheckIn).where(CheckIn.member_id == member_id).order_by(CheckIn.day.desc()).limit(1)
    ).first()
    rfm = rfm_of(session, member_id)
    view.update(
        lots=[
            {
                "id": lot.id,
                "points": lot.points,
                "remaining": lot.remaining,
                "status": lot.status,
                "available_at": lot.available_at,
                "expires_at": lot.expires_at,
            }
            for lot in lots
        ],
        recent_entries=[
            {"id": e.id, "kind": e.kind, "points": e.points, "reason": e.reason, "at": e.created_at}
            for e in entries
        ],
        recent_scans=[
            {
                "batch_id": (e.ref or {}).get("batch_id"),
                "serial": (e.ref or {}).get("serial"),
                "points": e.points,
                "at": e.created_at,
            }
            for e in scans
        ],
        recent_orders=[
            {
                "id": o.id,
                "item_id": o.item_id,
                "item_name": names.get(o.item_id, ""),
                "quantity": o.quantity,
                "points": o.points,
                "status": o.status,
                "at": o.created_at,
            }
            for o in orders
        ],
        coupons=[
            {
                "code": c.code,
                "face_value_fen": c.face_value_fen,
                "valid_until": c.valid_until,
                "status": coupon_status(c, now),
            }
            for c in coupons
        ],
        tags=[{"id": t.id, "name": t.name, "kind": t.kind} for t in tags_of(session, member_id)],
        rfm=None
        if rfm is None
        else {
            "segment": rfm.segment,
            "label": segment_label(rfm.segment),
            "r": rfm.r,
            "f": rfm.f,
            "m": rfm.m,
            "recency_days": rfm.recency_days,
            "frequency": rfm.frequency,
            "monetary": rfm.monetary,
            "sleeping": rfm.sleeping,
            "computed_at": rfm.computed_at,
        },
        tier_changes=[
            {
                "from_tier_id": c.from_tier_id,
                "to_tier_id": c.to_tier_id,
                "reason": c.reason,
                "at": c.created_at,
            }
            for c in tier_changes_of(
                session, tenant_id=tenant_id, member_id=member_id, limit=RECENT
            )
        ],
        check_in=None
        if last_check_in is None
        else {"last_day": last_check_in.day, "streak": last_check_in.streak},
    )
    return view
