"""Coupons members hold: valid in a window, used once by one atomic
``UPDATE ... WHERE used_at IS NULL AND <valid now>`` (a second use is a 409)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import ValidationFailedError
from members.catalogue.items import MAX_INT, is_whole
from members.errors import (
    CouponExpiredError,
    CouponMinimumOrderError,
    CouponNotFoundError,
    CouponUsedError,
    CouponVoidError,
)
from members.models import (
    Coupon,
)

# --- limits -----------------------------------------------------------------------------------

COUPON_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud at a till
COUPON_LENGTH = 16  # 32^16 = 2^80 codes: guessing one is hopeless
VOID_PREFIX = "void:"
REFERENCE = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


# --- coupons ----------------------------------------------------------------------------------


def normalize_code(text: object) -> str:
    """A coupon code as a person types it (any case, spaces or dashes between groups)."""
    if not isinstance(text, str) or len(text) > 64:
        return ""
    return re.sub(r"[\s-]", "", text).upper()


def coupon_status(coupon: Coupon, now: dt.datetime | None = None) -> str:
    """``unused``, ``used``, ``expired`` or ``void`` (its order was cancelled)."""
    now = now or utcnow()
    if coupon.used_at is not None:
        return "void" if (coupon.used_ref or "").startswith(VOID_PREFIX) else "used"
    if now >= coupon.valid_until:
        return "expired"
    return "unused"


def get_coupon_or_raise(session: Session, *, tenant_id: int, code: str) -> Coupon:
    found = session.scalar(
        select(Coupon)
        .where(Coupon.code == normalize_code(code), Coupon.tenant_id == tenant_id)
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise CouponNotFoundError("no such coupon", errors={"code": "no such coupon"})
    return found


def use_coupon(
    session: Session,
    *,
    tenant_id: int,
    code: str,
    order_ref: str,
    order_fen: int | None = None,
    now: dt.datetime | None = None,
) -> Coupon:
    """Use a coupon once, in one atomic UPDATE (of concurrent uses exactly one wins): 404
    unknown, 409 ``coupon_used`` / ``coupon_void`` / ``coupon_expired``, 422
    ``coupon_min_order`` when ``order_fen`` is below (or, for a coupon with a minimum, missing)."""
    now = now or utcnow()
    if (
        not isinstance(order_ref, str)
        or not REFERENCE.fullmatch(order_ref)
        or (order_ref.startswith(VOID_PREFIX))
    ):
        raise ValidationFailedError.field("order_ref", "the till's order number, 1-100 characters")
    if order_fen is not None and not is_whole(order_fen, 0, MAX_INT):
        raise ValidationFailedError.field("order_fen", "the order's amount in fen, ≥ 0")
    wanted = normalize_code(code)
    minimum_met = (
        Coupon.min_order_fen.is_(None)
        if order_fen is None
        else or_(Coupon.min_order_fen.is_(None), Coupon.min_order_fen <= order_fen)
    )
    won = session.execute(
        update(Coupon)
        .where(
            Coupon.code == wanted,
            Coupon.tenant_id == tenant_id,
            Coupon.used_at.is_(None),
            Coupon.valid_from <= now,
            Coupon.valid_until > now,
            minimum_met,
        )
        .values(used_at=now, used_ref=order_ref)
        .returning(Coupon.id)
        .execution_options(synchronize_session=False)
    ).first()
    coupon = get_coupon_or_raise(session, tenant_id=tenant_id, code=wanted)
    if won is not None:
        return coupon
    state = coupon_status(coupon, now)
    if state == "used":
        raise CouponUsedError(
            f"this coupon was used at {coupon.used_at:%Y-%m-%d %H:%M} UTC",
            errors={"code": "already used"},
        )
    if state == "void":
        raise CouponVoidError("this coupon's order was cancelled", errors={"code": "void"})
    if state == "expired" or now < coupon.valid_from:
        raise CouponExpiredError(
            f"this coupon was valid until {coupon.valid_until:%Y-%m-%d %H:%M} UTC",
            errors={"code": "expired"},
        )
    raise CouponMinimumOrderError(
        f"this coupon needs an order of at least {coupon.min_order_fen} fen",
        errors={"order_fen": f"at least {coupon.min_order_fen} fen"},
    )


def list_coupons(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    status: str | None = None,
    before_id: int = 0,
    limit: int = 50,
    now: dt.datetime | None = None,
) -> Sequence[Coupon]:
    """A member's coupons newest first, optionally of one status."""
    now = now or utcnow()
    stmt = select(Coupon).where(Coupon.tenant_id == tenant_id, Coupon.member_id == member_id)
    if before_id:
        stmt = stmt.where(Coupon.id < before_id)
    if status == "unused":
        stmt = stmt.where(Coupon.used_at.is_(None), Coupon.valid_until > now)
    elif status == "expired":
        stmt = stmt.where(Coupon.used_at.is_(None), Coupon.valid_until <= now)
    elif status == "used":
        stmt = stmt.where(Coupon.used_at.is_not(None), ~Coupon.used_ref.startswith(VOID_PREFIX))
    elif status == "void":
        stmt = stmt.where(Coupon.used_at.is_not(None), Coupon.used_ref.startswith(VOID_PREFIX))
    elif status is not None:
        raise ValidationFailedError.field("status", "unused, used, expired or void")
    return session.scalars(stmt.order_by(Coupon.id.desc()).limit(limit)).all()
