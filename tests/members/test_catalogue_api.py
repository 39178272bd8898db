"""Redemption over HTTP: a brand sets up its catalogue in the console, members redeem in the
scan app, staff ship and cancel orders, a till uses coupons."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

import console
import members
import scan_service
from core import services as core_services
from core.models import AuditEntry
from core.runtime import Runtime
from members.models import Coupon, PointsEntry
from members.sessions import open_session
from tests.factories import Brand, make_brand

YEAR = members.Expiry.parse("365d")
SHIP = {"name": "王小明", "phone": "13812345678", "address": "浙江省杭州市西湖区文三路 90 号"}
Call = Any


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


def http(app: Any, token: str) -> Call:
    # No ``with``: a kept request context would tangle the scan app's and the console's.
    client = app.test_client()

    def call(method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return call


@pytest.fixture
def admin(runtime: Runtime, brand: Brand) -> Call:
    return http(console.create_app(), brand.admin_token)


def staff(runtime: Runtime, brand: Brand, role: str) -> Call:
    with runtime.db.unit_of_work() as session:
        token = core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name=role, role=role
        ).token
    return http(console.create_app(), token)


def member(runtime: Runtime, brand: Brand, points: int) -> tuple[int, Call]:
    with runtime.db.unit_of_work() as session:
        member_id = members.create_member(session, tenant_id=brand.tenant_id).id
        if points:
            members.earn(
                session,
                tenant_id=brand.tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"gift:{member_id}",
                expiry=YEAR,
            )
        token = open_session(session, tenant_id=brand.tenant_id, member_id=member_id)
    return member_id, http(scan_service.create_app(), token)


def add_item(admin: Call, **fields: Any) -> dict[str, Any]:
    body = {"kind": "goods", "name": "保温杯", "points_cost": 100, "stock": 10, **fields}
    made = admin("POST", "/catalogue/items", json=body)
    assert made.status_code == 201, made.get_json()
    return dict(made.get_json())


def order(me: Call, item_id: int, **body: Any) -> Any:
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return me("POST", "/me/orders", json={"item_id": item_id, **body})


def balance(runtime: Runtime, member_id: int) -> int:
    with runtime.db.read_only() as session:
        return members.balance_of(session, member_id).active


def test_members_redeem_goods_coupons_and_cash(runtime: Runtime, brand: Brand, admin: Call) -> None:
    cup = add_item(admin, name="保温杯", points_cost=300, description="500 ml")
    coupon = add_item(
        admin,
        kind="coupon",
        name="满100减20",
        points_cost=100,
        stock=None,
        face_value_fen=2000,
        min_order_fen=10000,
        coupon_valid_days=30,
    )
    cash = add_item(
        admin,
        kind="cash_deduction",
        name="5 元抵扣",
        points_cost=50,
        face_value_fen=500,
        per_member_limit=1,
    )
    member_id, me_calls = member(runtime, brand, 1000)
    me = me_calls

    listed = http(scan_service.create_app(), "")("GET", "/catalogue?brand=acme")
    assert listed.status_code == 200
    shown = {i["name"]: i for i in listed.get_json()["items"]}
    assert shown["满100减20"]["stock"] is None and shown["满100减20"]["face_value_fen"] == 2000
    assert all(i["available"] for i in shown.values())
    assert shown["保温杯"]["redeemed"] is None  # anonymous

    got = order(me, cup["id"], shipping=SHIP)
    assert got.status_code == 201, got.get_json()
    placed = got.get_json()["order"]
    assert (placed["status"], placed["points"], placed["item_name"]) == ("placed", 300, "保温杯")
    assert placed["shipping"] == {
        "name": "王小明",
        "phone": "138****5678",
        "address": SHIP["address"],
    }

    got = order(me, coupon["id"], quantity=2)
    assert got.status_code == 201
    done = got.get_json()["order"]
    assert done["status"] == "completed" and len(done["coupons"]) == 2
    assert {c["status"] for c in done["coupons"]} == {"unused"}

    got = order(me, cash["id"])
    assert got.status_code == 201
    assert got.get_json()["order"]["coupons"][0]["face_value_fen"] == 500
    assert balance(runtime, member_id) == 1000 - 300 - 200 - 50

    mine = me("GET", "/me/orders").get_json()
    assert [o["item_name"] for o in mine["items"]] == ["5 元抵扣", "满100减20", "保温杯"]
    coupons = me("GET", "/me/coupons").get_json()["items"]
    assert len(coupons) == 3 and {c["status"] for c in coupons} == {"unused"}
    assert me("GET", "/me/coupons?status=used").get_json()["items"] == []

    # Signed in, the catalogue says what this member may still redeem.
    shown = {i["name"]: i for i in me("GET", "/catalogue?brand=acme").get_json()["items"]}
    assert shown["5 元抵扣"]["available"] is False
    assert shown["5 元抵扣"]["unavailable_reason"] == "limit_reached"
    assert shown["满100减20"]["redeemed"] == 2


def test_refusals_are_clear_and_change_nothing(runtime: Runtime, brand: Brand, admin: Call) -> None:
    last = add_item(admin, name="限量杯", stock=1)
    limited = add_item(
        admin,
        kind="coupon",
        name="券",
        points_cost=10,
        face_value_fen=100,
        per_member_limit=2,
        stock=None,
    )
    dear = add_item(admin, name="电饭煲", points_cost=5000)
    vip = add_item(admin, name="VIP 礼盒", min_tier_rank=3)
    member_id, me_calls = member(runtime, brand, 1000)
    me = me_calls

    assert order(me, last["id"], shipping=SHIP).status_code == 201
    refused = order(me, last["id"], shipping=SHIP)
    assert (refused.status_code, refused.get_json()["code"]) == (409, "sold_out")

    assert order(me, limited["id"], quantity=2).status_code == 201
    refused = order(me, limited["id"])
    assert (refused.status_code, refused.get_json()["code"]) == (409, "limit_reached")

    refused = order(me, dear["id"], shipping=SHIP)
    assert (refused.status_code, refused.get_json()["code"]) == (409, "insufficient_points")
    refused = order(me, vip["id"], shipping=SHIP)
    assert (refused.status_code, refused.get_json()["code"]) == (409, "tier_too_low")

    missing = order(me, dear["id"])
    assert missing.status_code == 422 and "shipping" in missing.get_json()["errors"]
    bad_phone = order(me, dear["id"], shipping=dict(SHIP, phone="110"))
    assert bad_phone.status_code == 422 and "shipping.phone" in bad_phone.get_json()["errors"]
    assert order(me, dear["id"], quantity=0, shipping=SHIP).status_code == 422

    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=10)
    theirs = add_item(http(console.create_app(), rival.admin_token), name="他家的杯")
    assert order(me, theirs["id"], shipping=SHIP).status_code == 404

    assert balance(runtime, member_id) == 1000 - 100 - 20
    with runtime.db.read_only() as session:
        assert session.get(members.models.CatalogueItem, dear["id"]).stock == 10  # type: ignore[union-attr]
    anonymous = http(scan_service.create_app(), "")
    assert anonymous("POST", "/me/orders", json={"item_id": 1}).status_code == 401
    assert anonymous("GET", "/catalogue?brand=nobody").status_code == 404


def test_a_retried_order_is_the_same_order_with_one_ledger_entry(
    runtime: Runtime, brand: Brand, admin: Call
) -> None:
    cup = add_item(admin)
    member_id, me_calls = member(runtime, brand, 1000)
    me = me_calls
    first = order(me, cup["id"], idempotency_key="tap-1", shipping=SHIP)
    again = order(me, cup["id"], idempotency_key="tap-1", shipping=SHIP)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    other = order(me, cup["id"], idempotency_key="tap-1", quantity=2, shipping=SHIP)
    assert (other.status_code, other.get_json()["code"]) == (409, "idempotency_key_reused")
    assert balance(runtime, member_id) == 900
    with runtime.db.read_only() as session:
        entries = session.scalar(
            select(func.count()).where(PointsEntry.business_key.like("redeem:%"))
        )
    assert entries == 1
    assert admin("GET", f"/catalogue/items/{cup['id']}").get_json()["stock"] == 9


def test_staff_ship_and_cancel_orders_and_see_phones_by_permission(
    runtime: Runtime, brand: Brand, admin: Call
) -> None:
    cup = add_item(admin, stock=5, per_member_limit=1)
    member_id, me_calls = member(runtime, brand, 1000)
    me = me_calls
    shipped_id = order(me, cup["id"], shipping=SHIP).get_json()["order"]["id"]
    _, other_calls = member(runtime, brand, 1000)
    cancelled_id = order(other_calls, cup["id"], shipping=SHIP).get_json()["order"]["id"]

    service = staff(runtime, brand, "customer_service")  # members, members_write; no pii
    listed = service("GET", "/orders?status=placed").get_json()
    assert {o["id"] for o in listed["items"]} == {shipped_id, cancelled_id}
    assert {o["shipping"]["phone"] for o in listed["items"]} == {"138****5678"}
    full = admin("GET", f"/orders?member_id={member_id}").get_json()["items"]
    assert [o["shipping"]["phone"] for o in full] == ["+8613812345678"]
    with runtime.db.read_only() as session:
        assert (
            session.scalar(
                select(func.count()).where(AuditEntry.action == "members.orders_pii_view")
            )
            == 1
        )

    analyst = staff(runtime, brand, "analyst")
    assert analyst("GET", f"/orders/{shipped_id}").status_code == 200
    forbidden = analyst(
        "PATCH", f"/orders/{shipped_id}", json={"status": "shipped", "tracking": "SF1"}
    )
    assert forbidden.status_code == 403

    no_tracking = service("PATCH", f"/orders/{shipped_id}", json={"status": "shipped"})
    assert no_tracking.status_code == 422
    shipped = service(
        "PATCH", f"/orders/{shipped_id}", json={"status": "shipped", "tracking": "SF1234567890"}
    )
    assert shipped.status_code == 200
    assert (shipped.get_json()["status"], shipped.get_json()["tracking"]) == (
        "shipped",
        "SF1234567890",
    )
    late = service("PATCH", f"/orders/{shipped_id}", json={"status": "cancelled"})
    assert (late.status_code, late.get_json()["code"]) == (409, "illegal_transition")

    back = service("PATCH", f"/orders/{cancelled_id}", json={"status": "cancelled"})
    assert back.status_code == 200 and back.get_json()["status"] == "cancelled"
    assert admin("GET", f"/catalogue/items/{cup['id']}").get_json()["stock"] == 4
    assert [o["status"] for o in other_calls("GET", "/me/orders").get_json()["items"]] == [
        "cancelled"
    ]
    history = service("GET", f"/members/{member_id}/orders").get_json()["items"]
    assert [o["id"] for o in history] == [shipped_id]
    assert history[0]["shipping"]["phone"] == "138****5678"
    with runtime.db.read_only() as session:
        acts = session.scalars(
            select(AuditEntry.action).where(AuditEntry.action == "members.order_status")
        ).all()
        assert len(acts) == 2
        assert members.check_balances(session) == []
    assert service("GET", "/members/999999/orders").status_code == 404


def test_cancelling_gives_the_points_back(runtime: Runtime, brand: Brand, admin: Call) -> None:
    cup = add_item(admin, points_cost=400, stock=1)
    member_id, me_calls = member(runtime, brand, 1000)
    me = me_calls
    placed = order(me, cup["id"], shipping=SHIP).get_json()["order"]
    assert balance(runtime, member_id) == 600
    assert (
        admin("PATCH", f"/orders/{placed['id']}", json={"status": "cancelled"}).status_code == 200
    )
    assert balance(runtime, member_id) == 1000
    assert admin("GET", f"/catalogue/items/{cup['id']}").get_json()["stock"] == 1
    again = admin("PATCH", f"/orders/{placed['id']}", json={"status": "cancelled"})
    assert again.status_code == 200 and balance(runtime, member_id) == 1000  # a retry: no-op
    assert order(me, cup["id"], shipping=SHIP).status_code == 201  # restocked: redeemable


def test_a_till_uses_a_coupon_once(runtime: Runtime, brand: Brand, admin: Call) -> None:
    coupon = add_item(
        admin,
        kind="coupon",
        name="满100减20",
        points_cost=100,
        stock=None,
        face_value_fen=2000,
        min_order_fen=10000,
    )
    _, me_calls = member(runtime, brand, 1000)
    me = me_calls
    codes = [c["code"] for c in order(me, coupon["id"], quantity=2).get_json()["order"]["coupons"]]
    till = staff(runtime, brand, "customer_service")
    looked = till("GET", f"/coupons/{codes[0]}")
    assert looked.status_code == 200 and looked.get_json()["status"] == "unused"
    small = till("POST", f"/coupons/{codes[0]}/use", json={"order_ref": "POS-1", "order_fen": 500})
    assert (small.status_code, small.get_json()["code"]) == (422, "coupon_min_order")
    used = till("POST", f"/coupons/{codes[0]}/use", json={"order_ref": "POS-1", "order_fen": 12000})
    assert used.status_code == 200
    assert (used.get_json()["status"], used.get_json()["used_ref"]) == ("used", "POS-1")
    twice = till(
        "POST", f"/coupons/{codes[0]}/use", json={"order_ref": "POS-2", "order_fen": 12000}
    )
    assert (twice.status_code, twice.get_json()["code"]) == (409, "coupon_used")

    with runtime.db.unit_of_work() as session:  # the second coupon's window has passed
        session.execute(
            update(Coupon).where(Coupon.code == codes[1]).values(valid_until=Coupon.valid_from)
        )
    expired = till(
        "POST", f"/coupons/{codes[1]}/use", json={"order_ref": "POS-3", "order_fen": 12000}
    )
    assert (expired.status_code, expired.get_json()["code"]) == (409, "coupon_expired")
    assert till("POST", "/coupons/NOSUCHCOUPON0000/use", json={"order_ref": "x"}).status_code == 404
    analyst = staff(runtime, brand, "analyst")
    assert analyst("POST", f"/coupons/{codes[1]}/use", json={"order_ref": "x"}).status_code == 403
    statuses = {c["code"]: c["status"] for c in me("GET", "/me/coupons").get_json()["items"]}
    assert statuses == {codes[0]: "used", codes[1]: "expired"}


def test_the_catalogue_is_managed_with_validation_and_audit(
    runtime: Runtime, brand: Brand, admin: Call
) -> None:
    bad = admin(
        "POST",
        "/catalogue/items",
        json={"kind": "goods", "name": "杯", "points_cost": 5, "face_value_fen": 100},
    )
    assert bad.status_code == 422 and "face_value_fen" in bad.get_json()["errors"]
    bad = admin("POST", "/catalogue/items", json={"kind": "coupon", "name": "券", "points_cost": 5})
    assert bad.status_code == 422 and "face_value_fen" in bad.get_json()["errors"]
    bad = admin("POST", "/catalogue/items", json={"kind": "goods", "name": "杯", "points_cost": 0})
    assert bad.status_code == 422 and "points_cost" in bad.get_json()["errors"]
    item = add_item(admin, on_sale_from="2026-12-01T00:00:00+08:00")
    bad = admin(
        "PATCH",
        f"/catalogue/items/{item['id']}",
        json={"on_sale_until": "2026-11-01T00:00:00+08:00"},
    )
    assert bad.status_code == 422 and "on_sale_until" in bad.get_json()["errors"]
    assert admin("PATCH", f"/catalogue/items/{item['id']}", json={"stock": 3}).status_code == 422

    changed = admin(
        "PATCH", f"/catalogue/items/{item['id']}", json={"points_cost": 120, "active": False}
    )
    assert changed.status_code == 200
    assert (changed.get_json()["points_cost"], changed.get_json()["active"]) == (120, False)
    restocked = admin("POST", f"/catalogue/items/{item['id']}/stock", json={"add": 5})
    assert restocked.get_json()["stock"] == 15
    too_many = admin("POST", f"/catalogue/items/{item['id']}/stock", json={"add": -16})
    assert too_many.status_code == 409
    listed = admin("GET", "/catalogue/items?active=false").get_json()
    assert [i["id"] for i in listed["items"]] == [item["id"]]
    assert admin("GET", "/catalogue/items?active=true").get_json()["items"] == []
    assert admin("GET", "/catalogue/items/999999").status_code == 404
    with runtime.db.read_only() as session:
        actions = sorted(
            session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("members.item_%"))
            )
        )
    assert actions == ["members.item_create", "members.item_restock", "members.item_update"]
    analyst = staff(runtime, brand, "analyst")
    assert analyst("GET", "/catalogue/items").status_code == 200
    assert (
        analyst(
            "POST", "/catalogue/items", json={"kind": "goods", "name": "x", "points_cost": 1}
        ).status_code
        == 403
    )
    # Off the catalogue: members do not see it.
    assert http(scan_service.create_app(), "")("GET", "/catalogue?brand=acme").get_json() == {
        "items": []
    }
