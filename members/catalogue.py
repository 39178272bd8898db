"""Redemption: the brand's catalogue, members' orders for points, and the coupons they hold.

Everything once-only is decided by the database inside the caller's transaction:

- an order is unique per (tenant, ``order:<member>:<idempotency key>``): a retry with the same
  body finds the same order; the same key with another body is a 409;
- stock is taken by ``UPDATE ... SET stock = stock - :q WHERE stock >= :q`` (NULL: unlimited);
- a per-member limit by ``UPDATE ... SET redeemed = redeemed + :q WHERE redeemed + :q <= :limit``
  on the member's counter row (created with ``INSERT ... ON CONFLICT DO NOTHING``);
- the points by the ledger's spend under ``redeem:<order key>``;
- a coupon is used by one ``UPDATE ... WHERE used_at IS NULL AND <valid now>``.

Any refusal raises and the caller rolls back, so a refused redemption leaves stock, counters and
points exactly as they were. Locks are always taken in the same order (item, counter, points
lots, balance) by redemption and cancellation alike, so concurrent ones queue, never deadlock.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core import services as core_services
from core.db import dialect_insert, insert_ignore, utcnow
from core.errors import ConflictError, ValidationFailedError
from core.models import Tenant
from core.runtime import Runtime
from members.errors import (
    CatalogueItemNotFoundError,
    CouponExpiredError,
    CouponMinimumOrderError,
    CouponNotFoundError,
    CouponUsedError,
    CouponVoidError,
    IdempotencyKeyReusedError,
    LimitReachedError,
    MemberNotFoundError,
    NotOnSaleError,
    OrderNotFoundError,
    OrderTransitionError,
    ShippingRequiredError,
    SoldOutError,
    StockUnlimitedError,
    TierTooLowError,
)
from members.identity import PhoneVault, mask_phone, normalize_phone
from members.ledger import refund_spend, spend
from members.models import (
    ITEM_KINDS,
    CatalogueItem,
    Coupon,
    Member,
    Order,
    RedemptionCount,
    Tier,
)

# --- limits -----------------------------------------------------------------------------------

MAX_POINTS_COST = 1_000_000
MAX_QUANTITY = 99
MAX_INT = 2**31 - 1
MAX_RANK = 32_767
DEFAULT_COUPON_DAYS = 30
COUPON_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud at a till
COUPON_LENGTH = 16  # 32^16 = 2^80 codes: guessing one is hopeless
VOID_PREFIX = "void:"
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_REF = re.compile(r"[^\x00-\x1f\x7f]{1,100}")
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "placed": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


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


def _whole(value: Any, low: int, high: int) -> bool:
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
    if not _whole(v.get("points_cost"), 1, MAX_POINTS_COST):
        errors["points_cost"] = f"a whole number from 1 to {MAX_POINTS_COST}"
    if v.get("stock") is not None and not _whole(v["stock"], 0, MAX_INT):
        errors["stock"] = "a whole number ≥ 0, or null for unlimited"
    if v.get("per_member_limit") is not None and not _whole(v["per_member_limit"], 1, MAX_INT):
        errors["per_member_limit"] = "a whole number ≥ 1, or null for no limit"
    if not _whole(v.setdefault("min_tier_rank", 0), 0, MAX_RANK):
        errors["min_tier_rank"] = f"a tier rank from 0 to {MAX_RANK}"
    if kind == "goods":
        for field in ("face_value_fen", "min_order_fen", "coupon_valid_days"):
            if v.get(field) is not None:
                errors[field] = "only coupons and cash deductions have it"
    elif kind in ("coupon", "cash_deduction"):
        if not _whole(v.get("face_value_fen"), 1, MAX_INT):
            errors["face_value_fen"] = "the face value in fen (≥ 1) is required"
        minimum = v.get("min_order_fen")
        if minimum is not None:
            if kind == "cash_deduction":
                errors["min_order_fen"] = "a cash deduction has no minimum order"
            elif not _whole(minimum, 1, MAX_INT):
                errors["min_order_fen"] = "a whole number of fen ≥ 1, or null"
            elif _whole(v.get("face_value_fen"), 1, MAX_INT) and minimum < v["face_value_fen"]:
                errors["min_order_fen"] = "at least the face value"
        if v.get("coupon_valid_days") is None:
            v["coupon_valid_days"] = DEFAULT_COUPON_DAYS
        if not _whole(v["coupon_valid_days"], 1, 3650):
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


def restock(session: Session, *, tenant_id: int, item_id: int, add: int) -> CatalogueItem:
    """Add (or, negative, remove) stock in one atomic statement; never below zero (409)."""
    if not _whole(add, -MAX_INT, MAX_INT) or add == 0:
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


def _on_sale(item: CatalogueItem, now: dt.datetime) -> bool:
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
        if not _on_sale(item, now):
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


# --- shipping (personal data) -----------------------------------------------------------------


def vault_of(session: Session, runtime: Runtime, tenant_id: int) -> PhoneVault:
    """The tenant's phone keys (its ``pii`` data key)."""
    key = core_services.data_key(
        session,
        master_key=runtime.settings.master_key_bytes,
        tenant_id=tenant_id,
        purpose="pii",
    )
    return PhoneVault.of(key)


@dataclass(frozen=True)
class Shipping:
    name: str
    phone: str  # normalised: +86...
    address: str


def check_shipping(raw: Any) -> Shipping:
    """``{name, phone, address}`` validated (422 naming ``shipping.<field>``)."""
    if not isinstance(raw, dict):
        raise ShippingRequiredError(
            "goods are shipped: send shipping {name, phone, address}",
            errors={"shipping": "name, phone and address are required for goods"},
        )
    errors: dict[str, str] = {}
    name, address = raw.get("name"), raw.get("address")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 50:
        errors["shipping.name"] = "the recipient's name, 1-50 characters"
    if not isinstance(address, str) or not 5 <= len(address.strip()) <= 300:
        errors["shipping.address"] = "the full address, 5-300 characters"
    phone = ""
    try:
        phone = normalize_phone(raw.get("phone"))
    except ValidationFailedError as exc:
        errors["shipping.phone"] = exc.errors.get("phone", exc.detail)
    unknown = set(raw) - {"name", "phone", "address"}
    for field in sorted(unknown):
        errors[f"shipping.{field}"] = "unknown field"
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)
    assert isinstance(name, str) and isinstance(address, str)
    return Shipping(name.strip(), phone, address.strip())


def _seal_shipping(vault: PhoneVault, shipping: Shipping) -> dict[str, Any]:
    return {
        "name": shipping.name,
        "address": shipping.address,
        "phone_masked": mask_phone(shipping.phone),
        "phone_sealed": base64.b64encode(vault.seal(shipping.phone)).decode(),
    }


def shipping_of(order: Order, *, vault: PhoneVault | None = None) -> dict[str, str] | None:
    """The order's shipping details: phone masked, or in full when given the tenant's vault."""
    data = order.shipping
    if not data:
        return None
    phone = data.get("phone_masked", "")
    if vault is not None and data.get("phone_sealed"):
        phone = vault.open(base64.b64decode(data["phone_sealed"]))
    return {"name": data.get("name", ""), "phone": phone, "address": data.get("address", "")}


# --- redeeming --------------------------------------------------------------------------------


def order_key(member_id: int, idempotency_key: str) -> str:
    return f"order:{member_id}:{idempotency_key}"


def _same_request(
    order: Order,
    *,
    item_id: int,
    quantity: int,
    shipping: Shipping | None,
    vault: PhoneVault | None,
) -> bool:
    if (order.item_id, order.quantity) != (item_id, quantity):
        return False
    if shipping is None or vault is None:
        return True
    held = shipping_of(order, vault=vault)
    return held == {"name": shipping.name, "phone": shipping.phone, "address": shipping.address}


def _replay(
    session: Session,
    *,
    tenant_id: int,
    key: str,
    item_id: int,
    quantity: int,
    shipping: Shipping | None,
    vault: PhoneVault | None,
) -> Order | None:
    """The order an idempotency key already names, if the request is the same; else a 409."""
    order = session.scalar(
        select(Order)
        .where(Order.tenant_id == tenant_id, Order.business_key == key)
        .execution_options(populate_existing=True)
    )
    if order is None:
        return None
    if not _same_request(order, item_id=item_id, quantity=quantity, shipping=shipping, vault=vault):
        raise IdempotencyKeyReusedError(
            "this idempotency key was used for a different order",
            errors={"idempotency_key": "already used for a different order: make a new one"},
        )
    return order


def _local_midnight_after(now: dt.datetime, days: int, timezone: str) -> dt.datetime:
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date() + dt.timedelta(days=days)
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)


def _new_code() -> str:
    return "".join(secrets.choice(COUPON_ALPHABET) for _ in range(COUPON_LENGTH))


def _issue_coupons(
    session: Session, *, item: CatalogueItem, order: Order, count: int, now: dt.datetime
) -> None:
    """``count`` coupons for the order, valid from now to the end of the ``coupon_valid_days``-th
    day in the brand's timezone (the day of issue is day 1)."""
    tenant = session.get(Tenant, item.tenant_id)
    timezone = tenant.timezone if tenant is not None else "Asia/Shanghai"
    until = _local_midnight_after(now, item.coupon_valid_days or DEFAULT_COUPON_DAYS, timezone)
    issued = 0
    attempts = 0
    while issued < count:
        attempts += 1
        if attempts > count + 10:  # 2^-80 per collision: only a broken random source gets here
            raise RuntimeError("could not draw unique coupon codes")
        if insert_ignore(
            session,
            Coupon.__table__,
            {
                "tenant_id": item.tenant_id,
                "member_id": order.member_id,
                "order_id": order.id,
                "item_id": item.id,
                "code": _new_code(),
                "face_value_fen": item.face_value_fen,
                "min_order_fen": item.min_order_fen,
                "valid_from": now,
                "valid_until": until,
                "created_at": now,
            },
        ):
            issued += 1


def redeem(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    item_id: int,
    quantity: int = 1,
    idempotency_key: str,
    shipping: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Order:
    """Redeem ``quantity`` of an item for points, all or nothing, in the caller's transaction.

    A retry with the same idempotency key and body returns the same order (nothing applied
    twice); the key with another body is a 409 ``idempotency_key_reused``. Otherwise, in this
    order: the item is active and on sale (409 ``not_on_sale``), the member's tier rank reaches
    ``min_tier_rank`` (409 ``tier_too_low``), stock is taken (409 ``sold_out``), the per-member
    count is raised within the limit (409 ``limit_reached``), the points are spent (409
    ``insufficient_points``): ``points_cost × quantity × discount_rate`` of the member's tier
    (``benefits.discount_rate`` in (0, 1]), rounded UP to a whole point. Coupons and cash
    deductions issue one coupon per unit and complete at once; goods need ``shipping``
    (422) and wait as ``placed``. Any refusal raises: the caller's rollback undoes it all.
    """
    now = now or utcnow()
    if not isinstance(idempotency_key, str) or not _KEY.fullmatch(idempotency_key):
        raise ValidationFailedError.field(
            "idempotency_key", "1-64 letters, digits or . _ : - (a UUID will do)"
        )
    if not _whole(quantity, 1, MAX_QUANTITY):
        raise ValidationFailedError.field("quantity", f"a whole number from 1 to {MAX_QUANTITY}")
    item = get_item_or_raise(session, tenant_id=tenant_id, item_id=item_id)
    goods = item.kind == "goods"
    parcel = check_shipping(shipping) if goods else None
    vault = vault_of(session, runtime, tenant_id) if goods else None
    key = order_key(member_id, idempotency_key)
    seen = _replay(
        session,
        tenant_id=tenant_id,
        key=key,
        item_id=item_id,
        quantity=quantity,
        shipping=parcel,
        vault=vault,
    )
    if seen is not None:
        return seen

    standing = standing_of(session, tenant_id=tenant_id, member_id=member_id)
    if not _on_sale(item, now):
        raise NotOnSaleError(f"{item.name!r} is not on sale now", errors={"item_id": "not on sale"})
    if standing.rank < item.min_tier_rank:
        raise TierTooLowError(
            f"{item.name!r} needs a tier of rank {item.min_tier_rank} or above",
            errors={"item_id": f"for tier rank {item.min_tier_rank} and above"},
        )
    points = redemption_points(item.points_cost, quantity, standing.rate)

    # The order row first: a concurrent request with the same key waits here for the other
    # transaction and then finds its order (PostgreSQL's ON CONFLICT waits on the row).
    new_id = session.execute(
        dialect_insert(session)(Order)
        .values(
            tenant_id=tenant_id,
            member_id=member_id,
            item_id=item.id,
            quantity=quantity,
            points=points,
            status="placed" if goods else "completed",
            business_key=key,
            shipping=_seal_shipping(vault, parcel) if vault and parcel else None,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
        .returning(Order.id)
    ).scalar()
    if new_id is None:
        again = _replay(
            session,
            tenant_id=tenant_id,
            key=key,
            item_id=item_id,
            quantity=quantity,
            shipping=parcel,
            vault=vault,
        )
        assert again is not None
        return again

    taken = session.execute(
        update(CatalogueItem)
        .where(
            CatalogueItem.id == item.id,
            or_(CatalogueItem.stock.is_(None), CatalogueItem.stock >= quantity),
        )
        .values(stock=CatalogueItem.stock - quantity)
        .returning(CatalogueItem.id)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        raise SoldOutError(f"{item.name!r} is sold out", errors={"item_id": "sold out"})
    session.expire(item, ["stock"])

    insert_ignore(
        session,
        RedemptionCount.__table__,
        {"member_id": member_id, "item_id": item.id, "redeemed": 0},
    )
    counted = update(RedemptionCount).where(
        RedemptionCount.member_id == member_id, RedemptionCount.item_id == item.id
    )
    if item.per_member_limit is not None:
        counted = counted.where(RedemptionCount.redeemed + quantity <= item.per_member_limit)
    if (
        session.execute(
            counted.values(redeemed=RedemptionCount.redeemed + quantity)
            .returning(RedemptionCount.redeemed)
            .execution_options(synchronize_session=False)
        ).first()
        is None
    ):
        raise LimitReachedError(
            f"at most {item.per_member_limit} of {item.name!r} per member",
            errors={"quantity": f"the limit is {item.per_member_limit} per member"},
        )

    spend(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        points=points,
        business_key=f"redeem:{key}"[:200],
        reason=f"redeemed {item.name} × {quantity}"[:500],
        actor=f"member:{member_id}",
        ref={"order_id": new_id, "item_id": item.id},
        now=now,
    )
    order = session.get(Order, new_id)
    assert order is not None
    if not goods:
        _issue_coupons(session, item=item, order=order, count=quantity, now=now)
    session.flush()
    return order


# --- orders -----------------------------------------------------------------------------------


def get_order_or_raise(
    session: Session, *, tenant_id: int, order_id: int, member_id: int | None = None
) -> Order:
    order = session.get(Order, order_id, populate_existing=True)
    if (
        order is None
        or order.tenant_id != tenant_id
        or (member_id is not None and order.member_id != member_id)
    ):
        raise OrderNotFoundError(f"no order {order_id}", errors={"order_id": "no such order"})
    return order


def list_orders(
    session: Session,
    *,
    tenant_id: int,
    member_id: int | None = None,
    item_id: int | None = None,
    status: str | None = None,
    before_id: int = 0,
    limit: int = 50,
) -> Sequence[Order]:
    """Orders newest first; ``before_id`` (the last id seen) pages on."""
    stmt = select(Order).where(Order.tenant_id == tenant_id)
    if before_id:
        stmt = stmt.where(Order.id < before_id)
    if member_id is not None:
        stmt = stmt.where(Order.member_id == member_id)
    if item_id is not None:
        stmt = stmt.where(Order.item_id == item_id)
    if status is not None:
        stmt = stmt.where(Order.status == status)
    return session.scalars(stmt.order_by(Order.id.desc()).limit(limit)).all()


def change_order_status(
    session: Session,
    *,
    tenant_id: int,
    order_id: int,
    status: str,
    tracking: str | None = None,
    actor: str = "system",
    now: dt.datetime | None = None,
) -> Order:
    """Move an order along ``placed → shipped (tracking) → delivered → completed``, or cancel
    a ``placed`` one: its points come back (:func:`refund_spend`, keys ``refund:<order>:<lot>``),
    its stock and the member's count are restored, its unused coupons voided. Anything else is
    a 409 ``illegal_transition``; asking for the status it has changes nothing (a retry)."""
    now = now or utcnow()
    if status not in ORDER_TRANSITIONS:
        raise ValidationFailedError.field("status", "one of " + ", ".join(ORDER_TRANSITIONS))
    if tracking is not None and (
        not isinstance(tracking, str) or not _REF.fullmatch(tracking.strip())
    ):
        raise ValidationFailedError.field("tracking", "1-100 characters")
    tracking = tracking.strip() if tracking else None
    if tracking is not None and status != "shipped":
        raise ValidationFailedError.field("tracking", "only with status 'shipped'")
    order = get_order_or_raise(session, tenant_id=tenant_id, order_id=order_id)
    if order.status == status:
        if status == "shipped" and tracking and tracking != order.tracking:
            order.tracking = tracking  # a corrected tracking number
            order.updated_at = now
            session.flush()
        return order
    if status not in ORDER_TRANSITIONS[order.status]:
        raise OrderTransitionError(
            f"an order that is {order.status} cannot become {status}",
            errors={
                "status": f"from {order.status}: "
                + (", ".join(sorted(ORDER_TRANSITIONS[order.status])) or "no further status")
            },
        )
    if status == "shipped" and not tracking:
        raise ValidationFailedError.field("tracking", "the carrier's tracking number is required")
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if tracking:
        values["tracking"] = tracking
    moved = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status)
        .values(**values)
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    ).first()
    if moved is None:  # changed meanwhile by someone else
        raise OrderTransitionError(
            "the order changed meanwhile; reload it", errors={"status": "changed meanwhile"}
        )
    if status == "cancelled":
        _undo(session, order=order, actor=actor, now=now)
    session.refresh(order)
    return order


def _undo(session: Session, *, order: Order, actor: str, now: dt.datetime) -> None:
    """A cancelled order's stock, count, coupons and points back (same lock order as redeem)."""
    session.execute(
        update(CatalogueItem)
        .where(CatalogueItem.id == order.item_id, CatalogueItem.stock.is_not(None))
        .values(stock=CatalogueItem.stock + order.quantity)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(RedemptionCount)
        .where(
            RedemptionCount.member_id == order.member_id,
            RedemptionCount.item_id == order.item_id,
            RedemptionCount.redeemed >= order.quantity,
        )
        .values(redeemed=RedemptionCount.redeemed - order.quantity)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Coupon)
        .where(Coupon.order_id == order.id, Coupon.used_at.is_(None))
        .values(used_at=now, used_ref=f"{VOID_PREFIX}order:{order.id}")
        .execution_options(synchronize_session=False)
    )
    refund_spend(
        session,
        tenant_id=order.tenant_id,
        member_id=order.member_id,
        spend_key=f"redeem:{order.business_key}"[:200],
        key_prefix=f"refund:{order.id}",
        reason=f"order {order.id} cancelled: points refunded",
        actor=actor,
        ref={"order_id": order.id},
        now=now,
    )
    item = session.get(CatalogueItem, order.item_id)
    if item is not None:
        session.expire(item, ["stock"])


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
        or not _REF.fullmatch(order_ref)
        or (order_ref.startswith(VOID_PREFIX))
    ):
        raise ValidationFailedError.field("order_ref", "the till's order number, 1-100 characters")
    if order_fen is not None and not _whole(order_fen, 0, MAX_INT):
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


def coupons_of_orders(session: Session, order_ids: Sequence[int]) -> dict[int, list[Coupon]]:
    found: dict[int, list[Coupon]] = {order_id: [] for order_id in order_ids}
    if order_ids:
        for coupon in session.scalars(
            select(Coupon).where(Coupon.order_id.in_(list(order_ids))).order_by(Coupon.id)
        ):
            if coupon.order_id is not None:
                found[coupon.order_id].append(coupon)
    return found


def items_by_id(session: Session, item_ids: Sequence[int]) -> dict[int, CatalogueItem]:
    if not item_ids:
        return {}
    return {
        item.id: item
        for item in session.scalars(
            select(CatalogueItem).where(CatalogueItem.id.in_(set(item_ids)))
        )
    }
