"""The member 360 view as the brand's service desk reads it: one call, every part of a member,
phone masked unless the role may see it, never another brand's member."""

from __future__ import annotations

from typing import Any

import pytest

import console
import members
from core import services as core_services
from core.runtime import Runtime
from members.catalogue import create_item, redeem
from members.engagement import check_in
from members.identity import enrol_member
from members.rfm import compute_rfm
from members.schemas_identity import Member360Out
from members.tags import create_tag, tag_member
from members.tiers import create_tier
from tests.factories import Brand, make_brand

PHONE = "13912345678"


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


@pytest.fixture
def member_id(runtime: Runtime, brand: Brand) -> int:
    """A member who has scanned, redeemed a coupon, checked in, been tagged and scored."""
    t = brand.tenant_id
    with runtime.db.unit_of_work() as session:
        create_tier(session, runtime, tenant_id=t, rank=0, name="普通")
        create_tier(session, runtime, tenant_id=t, rank=1, name="银卡", min_growth=10)
        member = enrol_member(session, runtime, tenant_id=t, phone=PHONE).member
        for serial in (1, 2, 3):
            members.reward_scan(
                session,
                runtime,
                member=members.SignedIn(t, member.id, 0, None),
                tenant_id=t,
                batch_id=brand.batch_id,
                serial=serial,
                verdict="genuine",
                timezone="Asia/Shanghai",
            )
        members.adjust(
            session,
            tenant_id=t,
            member_id=member.id,
            points=500,
            business_key="welcome",
            reason="welcome gift",
            actor="test",
        )
        coupon = create_item(
            session,
            tenant_id=t,
            kind="coupon",
            name="¥5 off",
            points_cost=100,
            face_value_fen=500,
            coupon_valid_days=30,
        )
        redeem(
            session,
            runtime,
            tenant_id=t,
            member_id=member.id,
            item_id=coupon.id,
            idempotency_key="o1",
        )
        check_in(session, runtime, tenant_id=t, member_id=member.id)
        vip = create_tag(session, tenant_id=t, name="VIP")
        tag_member(session, tenant_id=t, member_id=member.id, tag_id=vip.id)
        compute_rfm(session, tenant_id=t)
        return member.id


def console_get(token: str, path: str) -> Any:
    with console.create_app().test_client() as http:
        return http.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"})


def test_the_360_view_shows_every_part_of_a_member(
    runtime: Runtime, brand: Brand, member_id: int
) -> None:
    response = console_get(brand.admin_token, f"/members/{member_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    view = Member360Out.model_validate(response.get_json())
    assert view.phone == "139****5678"  # masked even for an admin: the full number is /phone
    assert (view.points.active, view.points.pending) == (500 - 100 + 1, 30)  # + check-in
    assert [s.serial for s in view.recent_scans] == [3, 2, 1]
    assert {lot.status for lot in view.lots} >= {"pending", "active"}
    assert [(o.item_name, o.points, o.status) for o in view.recent_orders] == [
        ("¥5 off", 100, "completed")
    ]
    assert [c.status for c in view.coupons] == ["unused"]
    assert [t.name for t in view.tags] == ["VIP"]
    assert view.rfm is not None and view.rfm.frequency == 3 and view.rfm.monetary == 30
    assert view.check_in is not None and view.check_in.streak == 1
    assert view.tier is not None and view.tier.name in ("普通", "银卡")
    kinds = [e.kind for e in view.recent_entries]
    assert "spend" in kinds and "adjust" in kinds and kinds.count("earn") >= 3


def test_the_360_view_is_the_brands_own_and_needs_the_members_permission(
    runtime: Runtime, brand: Brand, member_id: int
) -> None:
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=1)
        desk = core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name="desk", role="customer_service"
        ).token
        line = core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name="line", role="factory_operator"
        ).token
    assert console_get(rival.admin_token, f"/members/{member_id}").status_code == 404
    assert console_get(line, f"/members/{member_id}").status_code == 403
    seen = console_get(desk, f"/members/{member_id}")
    assert seen.status_code == 200 and seen.get_json()["phone"] == "139****5678"
    assert console_get(desk, f"/members/{member_id}/phone").status_code == 403
