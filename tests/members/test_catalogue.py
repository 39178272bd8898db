"""Redemption as a service: items validated as a whole, all-or-nothing redemptions, tier rules
and discounts, idempotent retries, cancellations that give everything back (points with their
own expiry), coupons used once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, update

import members
from core.errors import ConflictError, ValidationFailedError
from core.runtime import Runtime
from members import catalogue as cat
from members.identity import phone_vault
from members.models import Coupon, Order, PointsEntry, RedemptionCount, Tier
from tests.factories import make_brand

T0 = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
YEAR = members.Expiry.parse("365d")
SHIP = {"name": "王小明", "phone": "138 1234 5678", "address": "浙江省杭州市西湖区文三路 90 号"}


@pytest.fixture
def brand(runtime: Runtime) -> int:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10).tenant_id


def new_member(runtime: Runtime, tenant_id: int, points: int = 0, **earn: Any) -> int:
    with runtime.db.unit_of_work() as session:
        member_id = members.create_member(session, tenant_id=tenant_id).id
        if points:
            members.earn(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"gift:{member_id}",
                expiry=earn.pop("expiry", YEAR),
                now=earn.pop("now", T0),
            )
    return member_id


def new_item(runtime: Runtime, tenant_id: int, **fields: Any) -> int:
    values: dict[str, Any] = {"kind": "goods", "name": "保温杯", "points_cost": 100, "stock": 10}
    values.update(fields)
    with runtime.db.unit_of_work() as session:
        return cat.create_item(session, tenant_id=tenant_id, **values).id


def redeem(runtime: Runtime, tenant_id: int, member_id: int, item_id: int, **kw: Any) -> Order:
    kw.setdefault("idempotency_key", "k1")
    kw.setdefault("now", T0)
    with runtime.db.unit_of_work() as session:
        return cat.redeem(
            session, runtime, tenant_id=tenant_id, member_id=member_id, item_id=item_id, **kw
        )


def balance(runtime: Runtime, member_id: int) -> int:
    with runtime.db.read_only() as session:
        return members.balance_of(session, member_id).active


def stock_and_count(runtime: Runtime, item_id: int, member_id: int) -> tuple[int | None, int]:
    with runtime.db.read_only() as session:
        item = cat.get_item(session, tenant_id=_tenant_of(session, item_id), item_id=item_id)
        assert item is not None
        count = session.get(RedemptionCount, (member_id, item_id))
        return item.stock, count.redeemed if count else 0


def _tenant_of(session: Any, item_id: int) -> int:
    from members.models import CatalogueItem

    item = session.get(CatalogueItem, item_id)
    return int(item.tenant_id)


def test_an_item_is_validated_as_a_whole(runtime: Runtime, brand: int) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"kind": "coupon", "name": "满100减20", "points_cost": 50}, "face_value_fen"),
        (
            {"kind": "goods", "name": "杯", "points_cost": 50, "face_value_fen": 100},
            "face_value_fen",
        ),
        ({"kind": "goods", "name": "杯", "points_cost": 0}, "points_cost"),
        ({"kind": "goods", "name": "杯", "points_cost": 5, "stock": -1}, "stock"),
        (
            {"kind": "goods", "name": "杯", "points_cost": 5, "per_member_limit": 0},
            "per_member_limit",
        ),
        ({"kind": "goods", "name": "杯", "points_cost": 5, "min_tier_rank": -1}, "min_tier_rank"),
        (
            {
                "kind": "coupon",
                "name": "券",
                "points_cost": 5,
                "face_value_fen": 500,
                "coupon_valid_days": 3651,
            },
            "coupon_valid_days",
        ),
        (
            {
                "kind": "coupon",
                "name": "券",
                "points_cost": 5,
                "face_value_fen": 500,
                "min_order_fen": 100,
            },
            "min_order_fen",
        ),
        (
            {
                "kind": "goods",
                "name": "杯",
                "points_cost": 5,
                "on_sale_from": T0,
                "on_sale_until": T0,
            },
            "on_sale_until",
        ),
        ({"kind": "voucher", "name": "杯", "points_cost": 5}, "kind"),
    ]
    for values, field in bad:
        with pytest.raises(ValidationFailedError) as caught, runtime.db.unit_of_work() as session:
            cat.create_item(session, tenant_id=brand, **values)
        assert field in caught.value.errors, (values, caught.value.errors)
    coupon_id = new_item(
        runtime,
        brand,
        kind="coupon",
        name="满100减20",
        face_value_fen=2000,
        min_order_fen=10000,
        stock=None,
    )
    with runtime.db.unit_of_work() as session:
        coupon = cat.get_item_or_raise(session, tenant_id=brand, item_id=coupon_id)
        assert coupon.coupon_valid_days == cat.DEFAULT_COUPON_DAYS
        with pytest.raises(ValidationFailedError) as caught:
            cat.update_item(session, tenant_id=brand, item_id=coupon_id, changes={"stock": 5})
        assert "stock" in caught.value.errors
        with pytest.raises(ValidationFailedError):
            cat.update_item(
                session, tenant_id=brand, item_id=coupon_id, changes={"face_value_fen": None}
            )


def test_restocking_is_atomic_and_never_below_zero(runtime: Runtime, brand: int) -> None:
    item_id = new_item(runtime, brand, stock=3)
    unlimited = new_item(runtime, brand, stock=None)
    with runtime.db.unit_of_work() as session:
        assert cat.restock(session, tenant_id=brand, item_id=item_id, add=7).stock == 10
        assert cat.restock(session, tenant_id=brand, item_id=item_id, add=-4).stock == 6
        with pytest.raises(ConflictError):
            cat.restock(session, tenant_id=brand, item_id=item_id, add=-7)
        with pytest.raises(cat.StockUnlimitedError):
            cat.restock(session, tenant_id=brand, item_id=unlimited, add=5)
        assert cat.get_item_or_raise(session, tenant_id=brand, item_id=item_id).stock == 6


def test_a_coupon_redemption_issues_one_code_per_unit_valid_in_brand_days(
    runtime: Runtime, brand: int
) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(
        runtime,
        brand,
        kind="coupon",
        name="满100减20",
        points_cost=150,
        face_value_fen=2000,
        min_order_fen=10000,
        coupon_valid_days=7,
        stock=5,
    )
    order = redeem(runtime, brand, member_id, item_id, quantity=2)
    assert (order.status, order.points, order.quantity) == ("completed", 300, 2)
    assert balance(runtime, member_id) == 700
    assert stock_and_count(runtime, item_id, member_id) == (3, 2)
    with runtime.db.read_only() as session:
        coupons = session.scalars(select(Coupon).where(Coupon.order_id == order.id)).all()
        spent = session.scalar(
            select(PointsEntry.points).where(
                PointsEntry.business_key == f"redeem:order:{member_id}:k1"
            )
        )
    assert spent == -300
    assert len(coupons) == 2 and len({c.code for c in coupons}) == 2
    for c in coupons:
        assert len(c.code) == 16 and set(c.code) <= set(cat.COUPON_ALPHABET)
        assert (c.face_value_fen, c.min_order_fen, c.valid_from) == (2000, 10000, T0)
        # issued 2026-11-22 in Shanghai: valid through 2026-11-28, until midnight local time
        assert c.valid_until == dt.datetime(2026, 11, 28, 16, 0, tzinfo=dt.UTC)


def test_a_member_short_of_points_changes_nothing(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 150)
    item_id = new_item(
        runtime,
        brand,
        kind="cash_deduction",
        name="5元",
        points_cost=100,
        face_value_fen=500,
        stock=4,
        per_member_limit=3,
    )
    with pytest.raises(members.InsufficientPointsError):
        redeem(runtime, brand, member_id, item_id, quantity=2)
    assert balance(runtime, member_id) == 150
    assert stock_and_count(runtime, item_id, member_id) == (4, 0)
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
        assert session.scalar(select(func.count()).select_from(Coupon)) == 0
    # One unit is affordable: the refused attempt left nothing in the way.
    assert redeem(runtime, brand, member_id, item_id, idempotency_key="k2").points == 100
    assert stock_and_count(runtime, item_id, member_id) == (3, 1)


def test_tiers_gate_items_and_discount_them_rounding_up(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(
        runtime,
        brand,
        kind="coupon",
        name="VIP 券",
        points_cost=99,
        face_value_fen=1000,
        min_tier_rank=2,
        stock=None,
    )
    with pytest.raises(cat.TierTooLowError):
        redeem(runtime, brand, member_id, item_id)  # no tier: rank 0
    with runtime.db.unit_of_work() as session:
        gold = Tier(tenant_id=brand, rank=2, name="金卡", benefits={"discount_rate": 0.85})
        session.add(gold)
        session.flush()
        session.execute(
            update(members.models.Member)
            .where(members.models.Member.id == member_id)
            .values(tier_id=gold.id)
        )
        offer = next(
            o
            for o in cat.catalogue_for(session, tenant_id=brand, member_id=member_id, now=T0)
            if o.item.id == item_id
        )
        assert (offer.available, offer.member_points_cost) == (True, 85)
    order = redeem(runtime, brand, member_id, item_id, quantity=3)
    assert order.points == 253  # 99 × 3 × 0.85 = 252.45, rounded up
    assert balance(runtime, member_id) == 747


def test_sale_windows_and_deactivation_stop_redemptions(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    later = new_item(runtime, brand, on_sale_from=T0 + dt.timedelta(days=1))
    ended = new_item(runtime, brand, on_sale_until=T0)
    gone = new_item(runtime, brand)
    with runtime.db.unit_of_work() as session:
        cat.deactivate_item(session, tenant_id=brand, item_id=gone)
    for item_id in (later, ended, gone):
        with pytest.raises(cat.NotOnSaleError):
            redeem(runtime, brand, member_id, item_id, shipping=SHIP)
    with runtime.db.read_only() as session:
        offers = {o.item.id: o for o in cat.catalogue_for(session, tenant_id=brand, now=T0)}
    assert gone not in offers
    assert offers[later].reason == offers[ended].reason == "not_on_sale"
    assert balance(runtime, member_id) == 1000


def test_a_retry_returns_the_same_order_and_a_reused_key_is_refused(
    runtime: Runtime, brand: int
) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(runtime, brand)
    first = redeem(runtime, brand, member_id, item_id, shipping=SHIP)
    again = redeem(runtime, brand, member_id, item_id, shipping=dict(SHIP, phone="13812345678"))
    assert again.id == first.id
    assert balance(runtime, member_id) == 900
    assert stock_and_count(runtime, item_id, member_id) == (9, 1)
    for changed in (
        {"quantity": 2, "shipping": SHIP},
        {"shipping": dict(SHIP, address="上海市黄浦区南京东路 1 号")},
    ):
        with pytest.raises(cat.IdempotencyKeyReusedError):
            redeem(runtime, brand, member_id, item_id, **changed)
    with runtime.db.read_only() as session:
        spends = session.scalar(
            select(func.count()).where(PointsEntry.member_id == member_id, PointsEntry.points < 0)
        )
    assert spends == 1


def test_goods_need_valid_shipping_kept_sealed(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(runtime, brand)
    for shipping, field in (
        (None, "shipping"),
        (dict(SHIP, phone="12345"), "shipping.phone"),
        (dict(SHIP, address=""), "shipping.address"),
    ):
        with pytest.raises(ValidationFailedError) as caught:
            redeem(runtime, brand, member_id, item_id, shipping=shipping)
        assert field in caught.value.errors
    order = redeem(runtime, brand, member_id, item_id, shipping=SHIP)
    assert "13812345678" not in str(order.shipping)
    assert cat.shipping_of(order) == {
        "name": "王小明",
        "phone": "138****5678",
        "address": SHIP["address"],
    }
    with runtime.db.unit_of_work() as session:
        vault = phone_vault(session, runtime, brand)
        assert cat.shipping_of(order, vault=vault)["phone"] == "+8613812345678"  # type: ignore[index]


def test_orders_move_forward_only(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(runtime, brand)
    order_id = redeem(runtime, brand, member_id, item_id, shipping=SHIP).id

    def move(status: str, **kw: Any) -> Order:
        with runtime.db.unit_of_work() as session:
            return cat.change_order_status(
                session, tenant_id=brand, order_id=order_id, status=status, **kw
            )

    with pytest.raises(cat.OrderTransitionError):
        move("delivered")
    with pytest.raises(ValidationFailedError):
        move("shipped")  # without tracking
    assert move("shipped", tracking="SF1234567890").tracking == "SF1234567890"
    assert move("shipped", tracking="SF1234567890").status == "shipped"  # a retry
    with pytest.raises(cat.OrderTransitionError):
        move("cancelled")
    assert move("delivered").status == "delivered"
    assert move("completed").status == "completed"
    with pytest.raises(cat.OrderTransitionError):
        move("placed")
    coupon_item = new_item(runtime, brand, kind="coupon", name="券", face_value_fen=100)
    done = redeem(runtime, brand, member_id, coupon_item, idempotency_key="k2")
    with pytest.raises(cat.OrderTransitionError), runtime.db.unit_of_work() as session:
        cat.change_order_status(session, tenant_id=brand, order_id=done.id, status="cancelled")


def test_cancelling_refunds_points_with_their_own_expiry_and_restocks(
    runtime: Runtime, brand: int
) -> None:
    member_id = new_member(runtime, brand)
    with runtime.db.unit_of_work() as session:
        for key, points, days in (("soon", 60, 10), ("late", 100, 300)):
            members.earn(
                session,
                tenant_id=brand,
                member_id=member_id,
                points=points,
                business_key=key,
                expiry=members.Expiry.parse(f"{days}d"),
                now=T0,
            )
    item_id = new_item(runtime, brand, points_cost=50, per_member_limit=2)
    order = redeem(runtime, brand, member_id, item_id, quantity=2, shipping=SHIP)
    assert balance(runtime, member_id) == 60  # 60 from "soon", 40 from "late"
    assert stock_and_count(runtime, item_id, member_id) == (8, 2)
    # Cancelled 20 days later: the 60 points of "soon" have expired meanwhile and come back
    # expired; the 40 of "late" come back expiring when "late" does.
    with runtime.db.unit_of_work() as session:
        members.expire_due(session, now=T0 + dt.timedelta(days=20))
    assert balance(runtime, member_id) == 60
    with runtime.db.unit_of_work() as session:
        cancelled = cat.change_order_status(
            session,
            tenant_id=brand,
            order_id=order.id,
            status="cancelled",
            actor="tests",
            now=T0 + dt.timedelta(days=20),
        )
        assert cancelled.status == "cancelled"
    assert balance(runtime, member_id) == 100
    assert stock_and_count(runtime, item_id, member_id) == (10, 0)
    with runtime.db.unit_of_work() as session:
        assert members.check_balances(session) == []
        lots = session.execute(
            select(
                members.models.PointsLot.points,
                members.models.PointsLot.remaining,
                members.models.PointsLot.expires_at,
            )
            .join(PointsEntry, PointsEntry.id == members.models.PointsLot.id)
            .where(PointsEntry.business_key.like(f"refund:{order.id}:%"))
            .order_by(members.models.PointsLot.expires_at)
        ).all()
        assert [tuple(lot) for lot in lots] == [
            (60, 0, T0 + dt.timedelta(days=10)),
            (40, 40, T0 + dt.timedelta(days=300)),
        ]
        with pytest.raises(cat.OrderTransitionError):
            cat.change_order_status(
                session, tenant_id=brand, order_id=order.id, status="shipped", tracking="SF1"
            )
    # The count came back: the member may redeem the limit again.
    assert (
        redeem(
            runtime,
            brand,
            member_id,
            item_id,
            idempotency_key="k2",
            quantity=2,
            shipping=SHIP,
            now=T0 + dt.timedelta(days=20),
        ).points
        == 100
    )
    assert balance(runtime, member_id) == 0


def test_a_coupon_is_used_once_within_its_window(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    item_id = new_item(
        runtime,
        brand,
        kind="coupon",
        name="满100减20",
        face_value_fen=2000,
        min_order_fen=10000,
        coupon_valid_days=1,
        stock=None,
    )
    order = redeem(runtime, brand, member_id, item_id, quantity=2)
    with runtime.db.read_only() as session:
        first, second = session.scalars(select(Coupon.code).where(Coupon.order_id == order.id))

    def use(code: str, **kw: Any) -> Coupon:
        kw.setdefault("now", T0 + dt.timedelta(hours=1))
        kw.setdefault("order_ref", "POS-1")
        with runtime.db.unit_of_work() as session:
            return cat.use_coupon(session, tenant_id=brand, code=code, **kw)

    with pytest.raises(cat.CouponMinimumOrderError):
        use(first, order_fen=9999)
    with pytest.raises(cat.CouponMinimumOrderError):
        use(first)  # a minimum order needs the order's amount
    typed = "-".join(first[i : i + 4] for i in range(0, 16, 4)).lower()
    used = use(typed, order_fen=10000)
    assert (used.used_ref, cat.coupon_status(used)) == ("POS-1", "used")
    with pytest.raises(cat.CouponUsedError):
        use(first, order_fen=20000, order_ref="POS-2")
    with pytest.raises(cat.CouponExpiredError):  # valid through the day of issue only
        use(second, order_fen=20000, now=T0 + dt.timedelta(hours=12))
    with pytest.raises(cat.CouponNotFoundError):
        use("ZZZZZZZZZZZZZZZZ")
    other = make_other_brand(runtime)
    with pytest.raises(cat.CouponNotFoundError), runtime.db.unit_of_work() as session:
        cat.use_coupon(
            session, tenant_id=other, code=second, order_ref="x", order_fen=20000, now=T0
        )
    with runtime.db.read_only() as session:
        statuses = [
            cat.coupon_status(c, T0 + dt.timedelta(days=2))
            for c in cat.list_coupons(session, tenant_id=brand, member_id=member_id)
        ]
        assert sorted(statuses) == ["expired", "used"]
        assert (
            len(
                cat.list_coupons(
                    session, tenant_id=brand, member_id=member_id, status="used", now=T0
                )
            )
            == 1
        )


def make_other_brand(runtime: Runtime) -> int:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, slug="rival", quantity=10).tenant_id


def test_an_item_of_another_brand_is_not_found(runtime: Runtime, brand: int) -> None:
    member_id = new_member(runtime, brand, 1000)
    theirs = new_item(runtime, make_other_brand(runtime))
    with pytest.raises(cat.CatalogueItemNotFoundError):
        redeem(runtime, brand, member_id, theirs, shipping=SHIP)
    with pytest.raises(members.MemberNotFoundError):
        redeem(runtime, brand, 999_999, new_item(runtime, brand), shipping=SHIP)
