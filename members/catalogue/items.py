"""The brand's catalogue: items members redeem points for (goods, coupons, cash deductions),
their stock and sale windows, and what one member may redeem at what cost."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import ConflictError, ValidationFailedError, register_messages
from members.errors import (
    CatalogueItemNotFoundError,
    MemberNotFoundError,
    StockUnlimitedError,
)
from members.models import (
    ITEM_KINDS,
    CatalogueItem,
    Member,
    RedemptionCount,
    Tier,
)

# --- limits -----------------------------------------------------------------------------------

MAX_POINTS_COST = 1_000_000
MAX_INT = 2**31 - 1
MAX_RANK = 32_767
DEFAULT_COUPON_DAYS = 30


# --- catalogue items --------------------------------------------------------------------------

_EDITABLE = (
    "name",
    "name_en",
    "description",
    "image_url",
    "points_cost",
    "per_member_limit",
    "min_tier_rank",
    "face_value_fen",
    "min_order_fen",
    "coupon_valid_days",
    "on_sale_from",
    "on_sale_until",
    "active",
)


def is_whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_item(values: dict[str, Any]) -> dict[str, Any]:
    """The item's fields validated as a whole (422 naming every bad field); coupon kinds get
    ``coupon_valid_days`` = 30 unless given."""
    v = dict(values)
    errors: dict[str, str] = {}
    kind = v.get("kind")
    if kind not in ITEM_KINDS:
        errors["kind"] = "one of " + ", ".join(ITEM_KINDS)
    name = v.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        errors["name"] = "1-100 characters"
    if v.get("name_en") is not None and (
        not isinstance(v["name_en"], str) or len(v["name_en"]) > 100
    ):
        errors["name_en"] = "at most 100 characters"
    if not isinstance(v.get("description", ""), str) or len(v.get("description", "")) > 2000:
        errors["description"] = "at most 2000 characters"
    url = v.get("image_url")
    if url is not None and (
        not isinstance(url, str) or len(url) > 500 or not re.match(r"https?://\S+$", url)
    ):
        errors["image_url"] = "an http(s) URL of at most 500 characters"
    if not is_whole(v.get("points_cost"), 1, MAX_POINTS_COST):
        errors["points_cost"] = f"a whole number from 1 to {MAX_POINTS_COST}"
    if v.get("stock") is not None and not is_whole(v["stock"], 0, MAX_INT):
        errors["stock"] = "a whole number ≥ 0, or null for unlimited"
    if v.get("per_member_limit") is not None and not is_whole(v["per_member_limit"], 1, MAX_INT):
        errors["per_member_limit"] = "a whole number ≥ 1, or null for no limit"
    if not is_whole(v.setdefault("min_tier_rank", 0), 0, MAX_RANK):
        errors["min_tier_rank"] = f"a tier rank from 0 to {MAX_RANK}"
    if kind == "goods":
        for field in ("face_value_fen", "min_order_fen", "coupon_valid_days"):
            if v.get(field) is not None:
                errors[field] = "only coupons and cash deductions have it"
    elif kind in ("coupon", "cash_deduction"):
        if not is_whole(v.get("face_value_fen"), 1, MAX_INT):
            errors["face_value_fen"] = "the face value in fen (≥ 1) is required"
        minimum = v.get("min_order_fen")
        if minimum is not None:
            if kind == "cash_deduction":
                errors["min_order_fen"] = "a cash deduction has no minimum order"
            elif not is_whole(minimum, 1, MAX_INT):
                errors["min_order_fen"] = "a whole number of fen ≥ 1, or null"
            elif is_whole(v.get("face_value_fen"), 1, MAX_INT) and minimum < v["face_value_fen"]:
                errors["min_order_fen"] = "at least the face value"
        if v.get("coupon_valid_days") is None:
            v["coupon_valid_days"] = DEFAULT_COUPON_DAYS
        if not is_whole(v["coupon_valid_days"], 1, 3650):
            errors["coupon_valid_days"] = "1-3650 days"
    start, until = v.get("on_sale_from"), v.get("on_sale_until")
    for field, when in (("on_sale_from", start), ("on_sale_until", until)):
        if when is not None and (not isinstance(when, dt.datetime) or when.tzinfo is None):
            errors[field] = "a time with its UTC offset, e.g. 2026-12-01T00:00:00+08:00"
    if (
        "on_sale_from" not in errors
        and "on_sale_until" not in errors
        and start is not None
        and until is not None
        and start >= until
    ):
        errors["on_sale_until"] = "after on_sale_from"
    if not isinstance(v.setdefault("active", True), bool):
        errors["active"] = "true or false"
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)
    return v


def create_item(session: Session, *, tenant_id: int, **fields: Any) -> CatalogueItem:
    """A new catalogue item (see :func:`check_item` for what is valid)."""
    unknown = set(fields) - {*_EDITABLE, "kind", "stock"}
    if unknown:
        raise ValidationFailedError(
            f"unknown fields: {', '.join(sorted(unknown))}",
            errors={f: "unknown field" for f in sorted(unknown)},
        )
    values = check_item(fields)
    item = CatalogueItem(tenant_id=tenant_id, created_at=utcnow(), **values)
    session.add(item)
    session.flush()
    return item


def get_item(session: Session, *, tenant_id: int, item_id: int) -> CatalogueItem | None:
    item = session.get(CatalogueItem, item_id)
    return item if item is not None and item.tenant_id == tenant_id else None


def get_item_or_raise(session: Session, *, tenant_id: int, item_id: int) -> CatalogueItem:
    item = get_item(session, tenant_id=tenant_id, item_id=item_id)
    if item is None:
        raise CatalogueItemNotFoundError(
            f"no catalogue item {item_id}", errors={"item_id": "no such item"}
        )
    return item


def update_item(
    session: Session, *, tenant_id: int, item_id: int, changes: dict[str, Any]
) -> CatalogueItem:
    """Change an item's editable fields (not its kind, not its stock: see :func:`restock`);
    the result is validated as a whole."""
    refused = set(changes) - set(_EDITABLE)
    if refused:
        raise ValidationFailedError(
            f"cannot change: {', '.join(sorted(refused))}",
            errors={
                f: "change stock with POST .../stock" if f == "stock" else "cannot be changed"
                for f in sorted(refused)
            },
        )
    item = get_item_or_raise(session, tenant_id=tenant_id, item_id=item_id)
    current = {f: getattr(item, f) for f in (*_EDITABLE, "kind", "stock")}
    values = check_item({**current, **changes})
    for field in _EDITABLE:
        setattr(item, field, values[field])
    session.flush()
    return item


def deactivate_item(session: Session, *, tenant_id: int, item_id: int) -> CatalogueItem:
    """Take an item off the catalogue (its orders and coupons stay)."""
    return update_item(session, tenant_id=tenant_id, item_id=item_id, changes={"active": False})


# restock's messages in Chinese, for core.errors' catalogue (a console page asks in its language)
register_messages(
    ("non_zero", r"a non-zero whole number", "请输入非零整数。"),
    (
        "stock_unlimited",
        r"(this item's stock|the stock) is unlimited",
        "此商品库存不限，无需补货。",
    ),
    ("stock_short", r"only (?P<n>-?\d+) in stock", "库存只有 {n}。"),
)


def restock(session: Session, *, tenant_id: int, item_id: int, add: int) -> CatalogueItem:
    """Add (or, negative, remove) stock in one atomic statement; never below zero (409)."""
    if not is_whole(add, -MAX_INT, MAX_INT) or add == 0:
        raise ValidationFailedError.field("add", "a non-zero whole number")
    item = get_item_or_raise(session, tenant_id=tenant_id, item_id=item_id)
    row = session.execute(
        update(CatalogueItem)
        .where(
            CatalogueItem.id == item_id,
            CatalogueItem.stock.is_not(None),
            CatalogueItem.stock + add >= 0,
            CatalogueItem.stock + add <= MAX_INT,
        )
        .values(stock=CatalogueItem.stock + add)
        .returning(CatalogueItem.stock)
        .execution_options(synchronize_session=False)
    ).first()
    session.refresh(item)
    if row is None:
        if item.stock is None:
            raise StockUnlimitedError(
                "this item's stock is unlimited", errors={"add": "the stock is unlimited"}
            )
        raise ConflictError(
            f"only {item.stock} in stock", errors={"add": f"only {item.stock} in stock"}
        )
    return item


def list_items(
    session: Session,
    *,
    tenant_id: int,
    active: bool | None = None,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> Sequence[CatalogueItem]:
    stmt = select(CatalogueItem).where(
        CatalogueItem.tenant_id == tenant_id, CatalogueItem.id > after_id
    )
    if active is not None:
        stmt = stmt.where(CatalogueItem.active.is_(active))
    if kind is not None:
        stmt = stmt.where(CatalogueItem.kind == kind)
    return session.scalars(stmt.order_by(CatalogueItem.id).limit(limit)).all()


# --- what a member sees -----------------------------------------------------------------------


def discount_of(benefits: dict[str, Any] | None) -> Decimal:
    """The tier's ``discount_rate`` as a multiplier in (0, 1] (0.9: pay 90 %); anything else
    (absent, 0, > 1, not a number) is no discount."""
    raw = (benefits or {}).get("discount_rate")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return Decimal(1)
    try:
        rate = Decimal(str(raw))
    except InvalidOperation:
        return Decimal(1)
    return rate if rate.is_finite() and 0 < rate <= 1 else Decimal(1)


def redemption_points(points_cost: int, quantity: int, rate: Decimal = Decimal(1)) -> int:
    """Points for ``quantity`` units: ``points_cost × quantity × rate`` rounded UP to a whole
    point (a discount never makes an item cheaper than its rate says), at least 1."""
    return max(1, math.ceil(Decimal(points_cost) * quantity * rate))


@dataclass(frozen=True)
class Standing:
    """A member as redemption sees them: tier rank (0 without a tier) and discount."""

    rank: int
    rate: Decimal


def standing_of(session: Session, *, tenant_id: int, member_id: int) -> Standing:
    row = session.execute(
        select(Member.status, Tier.rank, Tier.benefits)
        .outerjoin(Tier, Tier.id == Member.tier_id)
        .where(Member.id == member_id, Member.tenant_id == tenant_id)
    ).first()
    if row is None or row.status != "active":
        raise MemberNotFoundError(f"no member {member_id}", errors={"member_id": "no such member"})
    return Standing(int(row.rank or 0), discount_of(row.benefits))


def on_sale(item: CatalogueItem, now: dt.datetime) -> bool:
    return (
        item.active
        and (item.on_sale_from is None or item.on_sale_from <= now)
        and (item.on_sale_until is None or now < item.on_sale_until)
    )


@dataclass(frozen=True)
class Offer:
    """A catalogue item as shown to a consumer: can it be redeemed now (and by this member)?"""

    item: CatalogueItem
    available: bool
    reason: str | None  # not_on_sale | sold_out | tier_too_low | limit_reached
    member_points_cost: int | None  # per unit with this member's tier discount
    redeemed: int | None  # by this member so far


def catalogue_for(
    session: Session,
    *,
    tenant_id: int,
    member_id: int | None = None,
    now: dt.datetime | None = None,
    limit: int = 500,
) -> list[Offer]:
    """The brand's active items; with a member, whether their tier and limit allow each."""
    now = now or utcnow()
    items = session.scalars(
        select(CatalogueItem)
        .where(CatalogueItem.tenant_id == tenant_id, CatalogueItem.active.is_(True))
        .order_by(CatalogueItem.id)
        .limit(limit)
    ).all()
    standing: Standing | None = None
    counts: dict[int, int] = {}
    if member_id is not None:
        standing = standing_of(session, tenant_id=tenant_id, member_id=member_id)
        counts = {
            item_id: redeemed
            for item_id, redeemed in session.execute(
                select(RedemptionCount.item_id, RedemptionCount.redeemed).where(
                    RedemptionCount.member_id == member_id
                )
            )
        }
    offers = []
    for item in items:
        reason = None
        if not on_sale(item, now):
            reason = "not_on_sale"
        elif item.stock is not None and item.stock <= 0:
            reason = "sold_out"
        elif standing is not None and standing.rank < item.min_tier_rank:
            reason = "tier_too_low"
        elif (
            member_id is not None
            and item.per_member_limit is not None
            and counts.get(item.id, 0) >= item.per_member_limit
        ):
            reason = "limit_reached"
        offers.append(
            Offer(
                item=item,
                available=reason is None,
                reason=reason,
                member_points_cost=(
                    redemption_points(item.points_cost, 1, standing.rate) if standing else None
                ),
                redeemed=counts.get(item.id, 0) if member_id is not None else None,
            )
        )
    return offers


def items_by_id(session: Session, item_ids: Sequence[int]) -> dict[int, CatalogueItem]:
    if not item_ids:
        return {}
    return {
        item.id: item
        for item in session.scalars(
            select(CatalogueItem).where(CatalogueItem.id.in_(set(item_ids)))
        )
    }
