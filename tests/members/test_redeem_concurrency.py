"""Redemption under real concurrency on PostgreSQL: stock never oversold, a member's points and
limit never overspent, a coupon used once — with many threads at the same instant."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

import members
from core.errors import YimaError
from core.runtime import Runtime
from members import catalogue as cat
from members.models import CatalogueItem, Coupon, Order
from tests.conftest import PG_URL
from tests.factories import make_brand

pytestmark = [
    pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL"),
    pytest.mark.parametrize("backend", ["postgresql"]),
]
YEAR = members.Expiry.parse("365d")


def setup(
    runtime: Runtime, *, members_points: list[int], **item: Any
) -> tuple[int, list[int], int]:
    with runtime.db.unit_of_work() as session:
        tenant_id = make_brand(session, runtime, quantity=10).tenant_id
        ids = []
        for points in members_points:
            member_id = members.create_member(session, tenant_id=tenant_id).id
            members.earn(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"gift:{member_id}",
                expiry=YEAR,
            )
            ids.append(member_id)
        values = {"kind": "coupon", "name": "满100减20", "face_value_fen": 2000, **item}
        item_id = cat.create_item(session, tenant_id=tenant_id, **values).id
    return tenant_id, ids, item_id


def race(n: int, attempt: Callable[[int], None]) -> Counter[str]:
    """Run ``attempt(i)`` in ``n`` threads released together; count outcomes by error code."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            attempt(i)
            outcome = "ok"
        except YimaError as exc:
            outcome = exc.code
        except BaseException as exc:  # pragma: no cover - reported by the assertion
            outcome = f"unexpected: {exc!r}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def redeem_in_own_transaction(
    runtime: Runtime, tenant_id: int, member_id: int, item_id: int, key: str
) -> None:
    with runtime.db.unit_of_work() as session:
        cat.redeem(
            session,
            runtime,
            tenant_id=tenant_id,
            member_id=member_id,
            item_id=item_id,
            idempotency_key=key,
        )


def test_forty_members_racing_for_ten_in_stock_get_exactly_ten(runtime: Runtime) -> None:
    tenant_id, ids, item_id = setup(runtime, members_points=[500] * 40, points_cost=100, stock=10)
    outcomes = race(
        40, lambda i: redeem_in_own_transaction(runtime, tenant_id, ids[i], item_id, f"k{i}")
    )
    assert outcomes == Counter({"ok": 10, "sold_out": 30})
    with runtime.db.read_only() as session:
        assert session.get(CatalogueItem, item_id).stock == 0  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(Order)) == 10
        assert session.scalar(select(func.count()).select_from(Coupon)) == 10
        spent = sorted(members.balance_of(session, m).active for m in ids)
        assert spent == [400] * 10 + [500] * 30
        assert members.check_balances(session) == []


def test_one_member_racing_past_their_points_redeems_what_they_can_afford(
    runtime: Runtime,
) -> None:
    tenant_id, (member_id,), item_id = setup(
        runtime, members_points=[300], points_cost=100, stock=None, per_member_limit=5
    )
    outcomes = race(
        20, lambda i: redeem_in_own_transaction(runtime, tenant_id, member_id, item_id, f"k{i}")
    )
    assert outcomes == Counter({"ok": 3, "insufficient_points": 17})
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 3
        assert members.balance_of(session, member_id).active == 0
        assert members.check_balances(session) == []
        count = session.get(members.models.RedemptionCount, (member_id, item_id))
        assert count is not None and count.redeemed == 3


def test_one_member_racing_past_the_limit_gets_exactly_the_limit(runtime: Runtime) -> None:
    tenant_id, (member_id,), item_id = setup(
        runtime, members_points=[100_000], points_cost=100, stock=1000, per_member_limit=2
    )
    outcomes = race(
        20, lambda i: redeem_in_own_transaction(runtime, tenant_id, member_id, item_id, f"k{i}")
    )
    assert outcomes == Counter({"ok": 2, "limit_reached": 18})
    with runtime.db.read_only() as session:
        assert session.get(CatalogueItem, item_id).stock == 998  # type: ignore[union-attr]
        assert members.balance_of(session, member_id).active == 100_000 - 200
        assert members.check_balances(session) == []


def test_one_idempotency_key_sent_twenty_times_at_once_makes_one_order(runtime: Runtime) -> None:
    tenant_id, (member_id,), item_id = setup(
        runtime, members_points=[1000], points_cost=100, stock=50
    )
    outcomes = race(
        20, lambda i: redeem_in_own_transaction(runtime, tenant_id, member_id, item_id, "same")
    )
    assert outcomes == Counter({"ok": 20})
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 1
        assert members.balance_of(session, member_id).active == 900
        assert session.get(CatalogueItem, item_id).stock == 49  # type: ignore[union-attr]


def test_twenty_tills_using_one_coupon_at_once_use_it_once(runtime: Runtime) -> None:
    tenant_id, (member_id,), item_id = setup(
        runtime, members_points=[1000], points_cost=100, stock=None
    )
    redeem_in_own_transaction(runtime, tenant_id, member_id, item_id, "k")
    with runtime.db.read_only() as session:
        code = session.scalar(select(Coupon.code))
    assert code is not None

    def use(i: int) -> None:
        with runtime.db.unit_of_work() as session:
            cat.use_coupon(session, tenant_id=tenant_id, code=code, order_ref=f"POS-{i}")

    outcomes = race(20, use)
    assert outcomes == Counter({"ok": 1, "coupon_used": 19})
    with runtime.db.read_only() as session:
        used = session.scalar(select(Coupon).where(Coupon.code == code))
        assert used is not None and used.used_ref is not None
        assert used.used_ref.startswith("POS-")
