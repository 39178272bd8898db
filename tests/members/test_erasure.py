"""Erasure: after it, nothing in any table names the person — and the anonymous ledger, orders
and statistics are still there."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

import console
import members
from core.db import Base
from core.models import AuditEntry
from core.ratelimit import MemoryRateLimiter
from core.runtime import Runtime
from members.erasure import erase_member
from members.identity import update_profile
from members.models import Balance, CatalogueItem, Member, Order, PointsEntry
from members.otp import (
    RecordingSmsSender,
    SignedInMember,
    send_code,
    sign_in,
    use_rate_limiter,
    use_sms_sender,
)
from members.sessions import member_of_token, open_session
from members.tags import create_tag, tag_member
from tests.factories import Brand, make_brand

PHONE = "13987654321"
NICKNAME = "独一无二的小鹿Zed"
ADDRESS = "浙江省杭州市西湖区文三路 478 号 9 幢"
BIRTHDAY = dt.date(1987, 6, 5)
REGION = "CN-ZJ/杭州市"


class Clock:
    def __init__(self) -> None:
        self.now = 86_400.0 * 100

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    return sender


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    clock = Clock()
    use_rate_limiter(runtime, MemoryRateLimiter(clock=clock))
    return clock


def signed_in(
    runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock, phone: str = PHONE
) -> SignedInMember:
    clock.now += 121
    with runtime.db.unit_of_work() as session:
        send_code(session, runtime, tenant_id=brand.tenant_id, phone=phone)
    with runtime.db.unit_of_work() as session:
        return sign_in(
            session, runtime, tenant_id=brand.tenant_id, phone=phone, code=sms.last_code(phone)
        )


def texts_of(value: Any) -> list[str]:
    """The value as text, every way it might be stored (bytes raw and decoded)."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return [raw.hex(), raw.decode("latin-1")]
    if isinstance(value, dict | list):
        return [json.dumps(value, ensure_ascii=False, default=str)]
    return [str(value)]


def findings(runtime: Runtime, needles: dict[str, str | bytes]) -> list[str]:
    """Every (table, column, needle) where a needle appears, scanning all rows of all tables."""
    found = []
    with runtime.db.read_only() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, bytes | bytearray | memoryview):
                        for name, needle in needles.items():
                            if isinstance(needle, bytes) and needle in bytes(value):
                                found.append(f"{table.name}.{column}: {name}")
                    for text in texts_of(value):
                        for name, needle in needles.items():
                            probe = needle.hex() if isinstance(needle, bytes) else needle
                            if probe in text:
                                found.append(f"{table.name}.{column}: {name}")
    return found


def test_nothing_personal_remains_after_erasure(
    runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock
) -> None:
    assert console.create_app() is not None  # every domain's tables are in Base.metadata
    done = signed_in(runtime, brand, sms, clock)
    member_id = done.member.id
    signed_in(runtime, brand, sms, clock)  # a second session, more codes
    clock.now += 121
    with runtime.db.unit_of_work() as session:  # a code still waiting to be used
        send_code(session, runtime, tenant_id=brand.tenant_id, phone=PHONE)
    with runtime.db.unit_of_work() as session:
        update_profile(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            changes={
                "nickname": NICKNAME,
                "birthday": BIRTHDAY,
                "gender": "female",
                "region": REGION,
            },
        )
        members.earn(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            points=500,
            business_key="test:scan:1",
            expiry=members.Expiry.parse("365d"),
        )
        item = CatalogueItem(
            tenant_id=brand.tenant_id, kind="goods", name="Tea cup", points_cost=200, stock=10
        )
        session.add(item)
        session.flush()
        members.spend(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            points=200,
            business_key="redeem:test-1",
        )
        session.add(
            Order(
                tenant_id=brand.tenant_id,
                member_id=member_id,
                item_id=item.id,
                quantity=1,
                points=200,
                status="placed",
                business_key="test-1",
                shipping={"name": "鹿小姐", "phone": "+8613987654321", "address": ADDRESS},
            )
        )
        token = open_session(session, tenant_id=brand.tenant_id, member_id=member_id)
        vip = create_tag(session, tenant_id=brand.tenant_id, name="VIP")
        tag_member(session, tenant_id=brand.tenant_id, member_id=member_id, tag_id=vip.id)
    # The brand's staff look at the member: audit entries appear.
    api = console.create_app().test_client()
    headers = {"Authorization": f"Bearer {brand.admin_token}"}
    assert api.get(f"/api/v1/members/{member_id}/phone", headers=headers).status_code == 200
    export = api.get(f"/api/v1/members/export.csv?unmasked=true&phone={PHONE}", headers=headers)
    assert PHONE in export.get_data(as_text=True)
    assert api.get(f"/api/v1/members?phone={PHONE}", headers=headers).get_json()["items"]
    adjusted = api.post(
        f"/api/v1/members/{member_id}/adjustments",
        headers=headers,
        json={"points": 10, "reason": "goodwill", "idempotency_key": "t-1"},
    )
    assert adjusted.status_code == 201
    with runtime.db.read_only() as session:
        member = session.get(Member, member_id)
        assert member is not None and member.phone_hash and member.phone_sealed
        phone_hash, sealed = member.phone_hash, bytes(member.phone_sealed)
    needles: dict[str, str | bytes] = {
        "phone": PHONE,
        "phone +86": "+86" + PHONE,
        "phone, last 8 digits": PHONE[-8:],
        "phone, spaced last 8": "8765 4321",
        "nickname": NICKNAME,
        "address": ADDRESS,
        "address, a part": "文三路 478",
        "birthday": BIRTHDAY.isoformat(),
        "region": REGION,
        "lookup hash": phone_hash,
        "sealed phone": sealed,
    }
    before = findings(runtime, needles)
    # The scan sees them all before (the phone in clear only in the order's address).
    for expected in ("phone +86", "nickname", "address", "birthday", "lookup hash", "sealed phone"):
        assert any(f.endswith(f": {expected}") for f in before), expected

    with runtime.db.unit_of_work() as session:
        erased = erase_member(
            session, tenant_id=brand.tenant_id, member_id=member_id, actor="test:dpo"
        )
    assert not erased.already and erased.sessions_revoked == 3 and erased.addresses_removed == 1
    assert erased.codes_deleted == 3

    assert findings(runtime, needles) == []
    # The anonymous record stays: the member row, its ledger and balance, its order.
    with runtime.db.read_only() as session:
        member = session.get(Member, member_id)
        assert member is not None and member.status == "erased" and member.erased_at is not None
        assert member.referral_code is None and member.source == "scan"
        assert (
            session.scalar(
                select(func.count())
                .select_from(PointsEntry)
                .where(PointsEntry.member_id == member_id)
            )
            == 3
        )
        balance = session.get(Balance, member_id)
        assert balance is not None and (balance.active, balance.pending) == (310, 0)
        order = session.scalars(select(Order)).one()
        assert order.shipping is None and order.points == 200
        assert members.check_balances(session) == []
        assert member_of_token(session, token) is None
        assert member_of_token(session, done.token) is None
        assert members.tags_of(session, member_id) == []  # staff's labels on the person
        audits = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "members.erase")
        ).all()
        assert [(a.actor, a.target_id) for a in audits] == [("test:dpo", str(member_id))]


def test_erasure_is_idempotent_and_the_phone_comes_back_as_a_new_member(
    runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock
) -> None:
    first = signed_in(runtime, brand, sms, clock)
    for attempt in range(2):
        with runtime.db.unit_of_work() as session:
            done = erase_member(
                session, tenant_id=brand.tenant_id, member_id=first.member.id, actor="test"
            )
        assert done.already is (attempt == 1)
    with runtime.db.read_only() as session:
        n = session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "members.erase")
        )
        assert n == 1
    again = signed_in(runtime, brand, sms, clock)
    assert again.created and again.member.id != first.member.id
    assert again.member.phone_masked == "139****4321"


def test_another_brand_cannot_erase_a_member(
    runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock
) -> None:
    member = signed_in(runtime, brand, sms, clock).member
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=10)
    with pytest.raises(members.MemberNotFoundError), runtime.db.unit_of_work() as session:
        erase_member(session, tenant_id=rival.tenant_id, member_id=member.id, actor="test")
    with runtime.db.read_only() as session:
        kept = session.get(Member, member.id)
        assert kept is not None and kept.status == "active" and kept.phone_hash is not None


def test_erasure_leaves_other_members_alone(
    runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock
) -> None:
    gone = signed_in(runtime, brand, sms, clock)
    stays = signed_in(runtime, brand, sms, clock, phone="13911112222")
    with runtime.db.unit_of_work() as session:
        erase_member(session, tenant_id=brand.tenant_id, member_id=gone.member.id, actor="t")
    with runtime.db.read_only() as session:
        assert member_of_token(session, stays.token) is not None
        other = session.get(Member, stays.member.id)
        assert other is not None and other.phone_masked == "139****2222"
