"""Redemption over HTTP: the catalogue and a member's orders and coupons (scan app), the
catalogue, orders and coupon use at a till (console).

Thin: parse, authorise, call ``members.catalogue``, serialise. Shipping details are personal
data: the console shows the recipient's phone masked unless the key's role has ``pii`` (and
then the view is audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import request

from core import services as core_services
from core.auth import PERMISSIONS, audit
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
from members import schemas_catalogue as schemas
from members.catalogue import (
    Offer,
    catalogue_for,
    change_order_status,
    coupon_status,
    coupons_of_orders,
    create_item,
    get_coupon_or_raise,
    get_item_or_raise,
    get_order_or_raise,
    items_by_id,
    list_coupons,
    list_items,
    list_orders,
    redeem,
    restock,
    shipping_of,
    update_item,
    use_coupon,
)
from members.identity import PhoneVault, phone_vault
from members.models import ORDER_STATUSES, CatalogueItem, Coupon, Order
from members.services import get_member_or_raise
from members.views._common import (
    consumer,
    current_member,
    manage,
    manager,
    signed_in_member,
)

ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NEWEST_FIRST = {
    **PAGINATION,
    "after": {**PAGINATION["after"], "description": "id of the last item seen (newest first)"},
}


# --- serialising -------------------------------------------------------------------------------


def _item_out(item: CatalogueItem) -> schemas.ItemOut:
    return schemas.ItemOut.model_validate(item, from_attributes=True)


_ITEM_FIELDS = (
    "id",
    "kind",
    "name",
    "name_en",
    "description",
    "image_url",
    "points_cost",
    "stock",
    "per_member_limit",
    "min_tier_rank",
    "face_value_fen",
    "min_order_fen",
    "coupon_valid_days",
    "on_sale_from",
    "on_sale_until",
)


def _offer_out(offer: Offer) -> schemas.OfferOut:
    item = offer.item
    return schemas.OfferOut(
        **{f: getattr(item, f) for f in _ITEM_FIELDS},
        available=offer.available,
        unavailable_reason=offer.reason,
        member_points_cost=offer.member_points_cost,
        redeemed=offer.redeemed,
    )


def _coupon_out(coupon: Coupon, names: dict[int, str]) -> schemas.CouponOut:
    return schemas.CouponOut(
        code=coupon.code,
        item_id=coupon.item_id,
        item_name=names.get(coupon.item_id) if coupon.item_id else None,
        order_id=coupon.order_id,
        face_value_fen=coupon.face_value_fen,
        min_order_fen=coupon.min_order_fen,
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
        status=coupon_status(coupon),  # type: ignore[arg-type]
        used_at=coupon.used_at,
        used_ref=coupon.used_ref,
    )


def _orders_out(
    orders: Sequence[Order], *, vault: PhoneVault | None = None
) -> list[dict[str, Any]]:
    session = db_session()
    items = items_by_id(session, [o.item_id for o in orders])
    names = {item_id: item.name for item_id, item in items.items()}
    coupons = coupons_of_orders(session, [o.id for o in orders])
    out = []
    for order in orders:
        item = items.get(order.item_id)
        shipping = shipping_of(order, vault=vault)
        out.append(
            schemas.OrderOut(
                id=order.id,
                member_id=order.member_id,
                item_id=order.item_id,
                item_name=item.name if item else "",
                kind=item.kind if item else "",
                quantity=order.quantity,
                points=order.points,
                status=order.status,  # type: ignore[arg-type]
                shipping=schemas.ShippingOut(**shipping) if shipping else None,
                tracking=order.tracking,
                coupons=[_coupon_out(c, names) for c in coupons.get(order.id, [])],
                created_at=order.created_at,
                updated_at=order.updated_at,
            ).model_dump(mode="json")
        )
    return out


def _status_arg(name: str, allowed: Sequence[str]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationFailedError.field(name, "one of " + ", ".join(allowed))
    return value


# --- consumer: the catalogue, my orders, my coupons --------------------------------------------


@consumer.get("/catalogue")
@operation(
    "The brand's catalogue; with a member token, whether your tier and limit allow each item",
    tag="members",
    response=schemas.CatalogueOut,
    query={"brand": {"type": "string", "description": "the brand's slug"}},
)
def get_catalogue() -> Any:
    slug = request.args.get("brand", "")
    if not slug:
        raise ValidationFailedError.field("brand", "the brand's slug is required")
    session = db_session()
    tenant = core_services.get_tenant_by_slug_or_raise(session, slug[:40])
    who = signed_in_member()
    member_id = who.member_id if who is not None and who.tenant_id == tenant.id else None
    offers = catalogue_for(session, tenant_id=tenant.id, member_id=member_id)
    return schemas.CatalogueOut(items=[_offer_out(o) for o in offers]).model_dump(mode="json")


@consumer.post("/me/orders")
@operation(
    "Redeem points for an item (a retry with the same idempotency_key returns the same order)",
    tag="members",
    body=schemas.OrderIn,
    response=schemas.OrderCreated,
    status=201,
    errors=(409, 415),
)
@secured
def post_my_order() -> Any:
    who = current_member()
    body = parse_body(schemas.OrderIn)
    order = redeem(
        db_session(),
        app_runtime(),
        tenant_id=who.tenant_id,
        member_id=who.member_id,
        item_id=body.item_id,
        quantity=body.quantity,
        idempotency_key=body.idempotency_key,
        shipping=body.shipping.model_dump() if body.shipping else None,
    )
    return {"order": _orders_out([order])[0]}, 201


@consumer.get("/me/orders")
@operation("My orders, newest first", tag="members", response=schemas.OrderPage, query=NEWEST_FIRST)
@secured
def get_my_orders() -> Any:
    who = current_member()
    limit, after = page_args()
    orders = list_orders(
        db_session(), tenant_id=who.tenant_id, member_id=who.member_id, before_id=after, limit=limit
    )
    return {"items": _orders_out(orders), "next_after": next_after(list(orders), limit)}


@consumer.get("/me/coupons")
@operation(
    "My coupons, newest first",
    tag="members",
    response=schemas.CouponPage,
    query={**NEWEST_FIRST, "status": {"enum": ["unused", "used", "expired", "void"]}},
)
@secured
def get_my_coupons() -> Any:
    who = current_member()
    limit, after = page_args()
    session = db_session()
    coupons = list_coupons(
        session,
        tenant_id=who.tenant_id,
        member_id=who.member_id,
        status=_status_arg("status", ("unused", "used", "expired", "void")),
        before_id=after,
        limit=limit,
    )
    names = {
        i: item.name
        for i, item in items_by_id(session, [c.item_id for c in coupons if c.item_id]).items()
    }
    return schemas.CouponPage(
        items=[_coupon_out(c, names) for c in coupons], next_after=next_after(list(coupons), limit)
    ).model_dump(mode="json")


# --- console: catalogue items ------------------------------------------------------------------


@manage.get("/catalogue/items")
@operation(
    "List catalogue items",
    tag="members",
    response=schemas.ItemPage,
    query={
        **PAGINATION,
        "kind": {"enum": ["goods", "coupon", "cash_deduction"]},
        "active": {"type": "boolean"},
    },
)
@secured
def get_items() -> Any:
    principal = manager("members")
    limit, after = page_args()
    active_arg = _status_arg("active", ("true", "false"))
    items = list(
        list_items(
            db_session(),
            tenant_id=principal.tenant_id,
            kind=_status_arg("kind", ("goods", "coupon", "cash_deduction")),
            active=None if active_arg is None else active_arg == "true",
            after_id=after,
            limit=limit,
        )
    )
    return schemas.ItemPage(
        items=[_item_out(i) for i in items], next_after=next_after(list(items), limit)
    ).model_dump(mode="json")


@manage.post("/catalogue/items")
@operation(
    "Add a catalogue item: goods, a coupon or a cash deduction",
    tag="members",
    body=schemas.ItemIn,
    response=schemas.ItemOut,
    status=201,
    errors=(415,),
)
@secured
def post_item() -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.ItemIn)
    item = create_item(db_session(), tenant_id=principal.tenant_id, **body.model_dump())
    audit(
        "members.item_create",
        target_type="catalogue_item",
        target_id=item.id,
        detail={"kind": item.kind, "name": item.name},
    )
    return _item_out(item).model_dump(mode="json"), 201


@manage.get("/catalogue/items/<id:item_id>")
@operation("Get a catalogue item", tag="members", response=schemas.ItemOut)
@secured
def get_item_view(item_id: int) -> Any:
    principal = manager("members")
    item = get_item_or_raise(db_session(), tenant_id=principal.tenant_id, item_id=item_id)
    return _item_out(item).model_dump(mode="json")


@manage.patch("/catalogue/items/<id:item_id>")
@operation(
    "Change a catalogue item (active: false takes it off the catalogue)",
    tag="members",
    body=schemas.ItemPatch,
    response=schemas.ItemOut,
    errors=(415,),
)
@secured
def patch_item(item_id: int) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.ItemPatch)
    changes = body.model_dump(exclude_unset=True)
    item = update_item(
        db_session(), tenant_id=principal.tenant_id, item_id=item_id, changes=changes
    )
    audit(
        "members.item_update",
        target_type="catalogue_item",
        target_id=item.id,
        detail={k: str(v) for k, v in changes.items()},
    )
    return _item_out(item).model_dump(mode="json")


@manage.post("/catalogue/items/<id:item_id>/stock")
@operation(
    "Add stock (or remove it, never below zero), atomically",
    tag="members",
    body=schemas.StockIn,
    response=schemas.ItemOut,
    errors=(409, 415),
)
@secured
def post_stock(item_id: int) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.StockIn)
    item = restock(db_session(), tenant_id=principal.tenant_id, item_id=item_id, add=body.add)
    audit(
        "members.item_restock",
        target_type="catalogue_item",
        target_id=item.id,
        detail={"add": body.add, "stock": item.stock},
    )
    return _item_out(item).model_dump(mode="json")


# --- console: orders ---------------------------------------------------------------------------


def _vault_for_pii(tenant_id: int, role: str, orders: Sequence[Order]) -> PhoneVault | None:
    """The tenant's vault when the caller may see phones in full (that view is audited)."""
    if "pii" not in PERMISSIONS.get(role, frozenset()) or not any(o.shipping for o in orders):
        return None
    shown = [o.id for o in orders if o.shipping]
    audit(
        "members.orders_pii_view",
        target_type="order",
        target_id=shown[0],
        detail={"order_ids": shown},
    )
    return phone_vault(db_session(), app_runtime(), tenant_id)


def _order_page(orders: Sequence[Order], limit: int, tenant_id: int, role: str) -> Any:
    vault = _vault_for_pii(tenant_id, role, orders)
    return {
        "items": _orders_out(orders, vault=vault),
        "next_after": next_after(list(orders), limit),
    }


@manage.get("/orders")
@operation(
    "List redemption orders, newest first",
    tag="members",
    response=schemas.OrderPage,
    query={
        **NEWEST_FIRST,
        "status": {"enum": list(ORDER_STATUSES)},
        "member_id": ID,
        "item_id": ID,
    },
)
@secured
def get_orders() -> Any:
    principal = manager("members")
    limit, after = page_args()
    orders = list_orders(
        db_session(),
        tenant_id=principal.tenant_id,
        status=_status_arg("status", ORDER_STATUSES),
        member_id=query_int("member_id", low=1, high=MAX_ID),
        item_id=query_int("item_id", low=1, high=MAX_ID),
        before_id=after,
        limit=limit,
    )
    return _order_page(orders, limit, principal.tenant_id, principal.role)


@manage.get("/orders/<id:order_id>")
@operation("Get a redemption order", tag="members", response=schemas.OrderOut)
@secured
def get_order_view(order_id: int) -> Any:
    principal = manager("members")
    order = get_order_or_raise(db_session(), tenant_id=principal.tenant_id, order_id=order_id)
    vault = _vault_for_pii(principal.tenant_id, principal.role, [order])
    return _orders_out([order], vault=vault)[0]


@manage.patch("/orders/<id:order_id>")
@operation(
    "Ship (with tracking), deliver, complete or cancel an order; cancelling refunds the points",
    tag="members",
    body=schemas.OrderPatch,
    response=schemas.OrderOut,
    errors=(409, 415),
)
@secured
def patch_order(order_id: int) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.OrderPatch)
    session = db_session()
    before = get_order_or_raise(session, tenant_id=principal.tenant_id, order_id=order_id).status
    order = change_order_status(
        session,
        tenant_id=principal.tenant_id,
        order_id=order_id,
        status=body.status,
        tracking=body.tracking,
        actor=principal.actor,
    )
    audit(
        "members.order_status",
        target_type="order",
        target_id=order.id,
        detail={"from": before, "to": order.status, "tracking": order.tracking},
    )
    return _orders_out([order])[0]


@manage.get("/members/<id:member_id>/orders")
@operation(
    "A member's orders, newest first", tag="members", response=schemas.OrderPage, query=NEWEST_FIRST
)
@secured
def get_member_orders(member_id: int) -> Any:
    principal = manager("members")
    session = db_session()
    get_member_or_raise(session, tenant_id=principal.tenant_id, member_id=member_id)
    limit, after = page_args()
    orders = list_orders(
        session, tenant_id=principal.tenant_id, member_id=member_id, before_id=after, limit=limit
    )
    return _order_page(orders, limit, principal.tenant_id, principal.role)


# --- console: coupons at a till ----------------------------------------------------------------


@manage.get("/coupons/<code>")
@operation(
    "Look a coupon up (a till checks it before use)", tag="members", response=schemas.CouponOut
)
@secured
def get_coupon_view(code: str) -> Any:
    principal = manager("members")
    session = db_session()
    coupon = get_coupon_or_raise(session, tenant_id=principal.tenant_id, code=code)
    names = {i: item.name for i, item in items_by_id(session, [coupon.item_id or 0]).items()}
    return _coupon_out(coupon, names).model_dump(mode="json")


@manage.post("/coupons/<code>/use")
@operation(
    "Use a coupon at a till, once (of concurrent uses exactly one succeeds)",
    tag="members",
    body=schemas.CouponUseIn,
    response=schemas.CouponOut,
    errors=(409, 415),
)
@secured
def post_coupon_use(code: str) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.CouponUseIn)
    session = db_session()
    coupon = use_coupon(
        session,
        tenant_id=principal.tenant_id,
        code=code,
        order_ref=body.order_ref,
        order_fen=body.order_fen,
    )
    audit(
        "members.coupon_use",
        target_type="coupon",
        target_id=coupon.id,
        detail={"order_ref": body.order_ref, "order_fen": body.order_fen},
    )
    names = {i: item.name for i, item in items_by_id(session, [coupon.item_id or 0]).items()}
    return _coupon_out(coupon, names).model_dump(mode="json")
