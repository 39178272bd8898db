"""Orders: a member's redemption, all or nothing inside the caller's transaction, then its
fulfilment (shipped, delivered, completed) or cancellation (points, stock and limit back).

Everything once-only is decided by the database:

- an order is unique per (tenant, ``order:<member>:<idempotency key>``): a retry with the same
  body finds the same order; the same key with another body is a 409;
- stock is taken by ``UPDATE ... SET stock = stock - :q WHERE stock >= :q`` (NULL: unlimited);
- a per-member limit by ``UPDATE ... SET redeemed = redeemed + :q WHERE redeemed + :q <= :limit``
  on the member's counter row (created with ``INSERT ... ON CONFLICT DO NOTHING``);
- the points by the ledger's spend under ``redeem:<order key>``.

Any refusal raises and the caller rolls back, so a refused redemption leaves stock, counters and
points exactly as they were. Locks are always taken in the same order (item, counter, points
lots, balance) by redemption and cancellation alike, so concurrent ones queue, never deadlock.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.db import dialect_insert, insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from core.services import tenant_timezone
from members.catalogue.coupons import COUPON_ALPHABET, COUPON_LENGTH, REFERENCE, VOID_PREFIX
from members.catalogue.items import (
    DEFAULT_COUPON_DAYS,
    get_item_or_raise,
    is_whole,
    on_sale,
    redemption_points,
    standing_of,
)
from members.errors import (
    IdempotencyKeyReusedError,
    LimitReachedError,
    NotOnSaleError,
    OrderNotFoundError,
    OrderTransitionError,
    ShippingRequiredError,
    SoldOutError,
    TierTooLowError,
)
from members.identity import PhoneVault, mask_phone, normalize_phone, phone_vault
from members.ledger import refund_spend, spend
from members.models import (
    CatalogueItem,
    Coupon,
    Order,
    RedemptionCount,
)

# --- limits -----------------------------------------------------------------------------------

MAX_QUANTITY = 99
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "placed": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


# --- shipping (personal data) -----------------------------------------------------------------


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
    timezone = tenant_timezone(session, item.tenant_id)
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
    if not is_whole(quantity, 1, MAX_QUANTITY):
        raise ValidationFailedError.field("quantity", f"a whole number from 1 to {MAX_QUANTITY}")
    item = get_item_or_raise(session, tenant_id=tenant_id, item_id=item_id)
    goods = item.kind == "goods"
    parcel = check_shipping(shipping) if goods else None
    vault = phone_vault(session, runtime, tenant_id) if goods else None
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
    if not on_sale(item, now):
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
        not isinstance(tracking, str) or not REFERENCE.fullmatch(tracking.strip())
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


def coupons_of_orders(session: Session, order_ids: Sequence[int]) -> dict[int, list[Coupon]]:
    found: dict[int, list[Coupon]] = {order_id: [] for order_id in order_ids}
    if order_ids:
        for coupon in session.scalars(
            select(Coupon).where(Coupon.order_id.in_(list(order_ids))).order_by(Coupon.id)
        ):
            if coupon.order_id is not None:
                found[coupon.order_id].append(coupon)
    return found


def grant_coupon(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    item_id: int,
    business_key: str,
    now: dt.datetime | None = None,
) -> str:
    """Give the member one coupon of a coupon (or cash-deduction) item for free — a prize —
    once per ``business_key``: a retry returns the coupon already given. Its code."""
    now = now or utcnow()
    item = get_item_or_raise(session, tenant_id=tenant_id, item_id=item_id)
    if item.kind == "goods":
        raise ValidationFailedError.field("item_id", "a coupon or cash-deduction item")
    key = f"grant:{business_key}"[:200]
    new_id = session.execute(
        dialect_insert(session)(Order)
        .values(
            tenant_id=tenant_id,
            member_id=member_id,
            item_id=item.id,
            quantity=1,
            points=0,
            status="completed",
            business_key=key,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
        .returning(Order.id)
    ).scalar()
    if new_id is None:
        order_id = session.scalar(
            select(Order.id).where(Order.tenant_id == tenant_id, Order.business_key == key)
        )
        assert order_id is not None
    else:
        order = session.get(Order, new_id)
        assert order is not None
        _issue_coupons(session, item=item, order=order, count=1, now=now)
        session.flush()
        order_id = new_id
    code = session.scalar(select(Coupon.code).where(Coupon.order_id == order_id).limit(1))
    assert code is not None
    return code
