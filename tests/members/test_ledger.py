"""The points ledger: exactly once per business key, soonest expiry first, pending points not
spendable, clawbacks that may go negative, idempotent expiry — and a cache that never disagrees
with the ledger, under real concurrency on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest
from sqlalchemy import func, select

import members
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members.models import PointsEntry
from tests.conftest import PG_URL
from tests.factories import make_brand

T0 = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
YEAR = members.Expiry.parse("365d")


@pytest.fixture
def member(runtime: Runtime) -> tuple[int, int]:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10)
        return brand.tenant_id, members.create_member(session, tenant_id=brand.tenant_id).id


def points(runtime: Runtime, member_id: int) -> tuple[int, int]:
    with runtime.db.read_only() as session:
        found = members.balance_of(session, member_id)
        return found.active, found.pending


def test_expiry_policies_in_the_brand_timezone() -> None:
    late = dt.datetime(2026, 12, 31, 17, 0, tzinfo=dt.UTC)  # 2027-01-01 01:00 in Shanghai
    month = members.Expiry.parse("end_of_month")
    assert month.at(late, "Asia/Shanghai") == dt.datetime(2027, 1, 31, 16, 0, tzinfo=dt.UTC)
    assert month.at(late, "UTC") == dt.datetime(2027, 1, 1, 0, 0, tzinfo=dt.UTC)
    year = members.Expiry.parse("end_of_year")
    assert year.at(late, "Asia/Shanghai") == dt.datetime(2027, 12, 31, 16, 0, tzinfo=dt.UTC)
    assert members.Expiry.parse("30d").at(T0, "UTC") == T0 + dt.timedelta(days=30)
    assert members.Expiry.parse("never").at(T0, "UTC") is None
    for bad in ("0d", "-5d", "monthly", "365"):
        with pytest.raises(ValidationFailedError):
            members.Expiry.parse(bad)


def test_a_retried_credit_applies_once(runtime: Runtime, member: tuple[int, int]) -> None:
    tenant_id, member_id = member
    for _ in range(3):
        with runtime.db.unit_of_work() as session:
            members.earn(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                points=100,
                business_key="order:8812",
                expiry=YEAR,
                now=T0,
            )
    assert points(runtime, member_id) == (100, 0)
    with pytest.raises(members.LedgerKeyConflictError), runtime.db.unit_of_work() as session:
        members.earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=999,
            business_key="order:8812",
            expiry=YEAR,
            now=T0,
        )


def test_spends_take_the_soonest_expiring_points_first(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        for key, amount, expiry in (("a", 50, "365d"), ("b", 30, "30d"), ("c", 20, "never")):
            members.earn(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                points=amount,
                business_key=key,
                expiry=members.Expiry.parse(expiry),
                now=T0,
            )
        members.spend(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=40,
            business_key="redeem:1",
            now=T0,
        )
    assert points(runtime, member_id) == (60, 0)
    # The 30-day lot went first (30), then the 365-day lot (10); the lot that never expires is
    # untouched. Expiring 31 days later finds nothing left in the 30-day lot.
    with runtime.db.unit_of_work() as session:
        assert members.expire_due(session, now=T0 + dt.timedelta(days=31)) == 0
        assert members.expire_due(session, now=T0 + dt.timedelta(days=366)) == 1
        assert members.expire_due(session, now=T0 + dt.timedelta(days=366)) == 0
    assert points(runtime, member_id) == (20, 0)
    with runtime.db.unit_of_work() as session:
        assert members.check_balances(session) == []


def test_a_spend_beyond_the_balance_changes_nothing(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        members.earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=10,
            business_key="a",
            expiry=YEAR,
            now=T0,
        )
    with pytest.raises(members.InsufficientPointsError), runtime.db.unit_of_work() as session:
        members.spend(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=11,
            business_key="redeem:2",
            now=T0,
        )
    assert points(runtime, member_id) == (10, 0)
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(PointsEntry)) == 1


def test_scan_points_are_pending_then_active_once_per_code(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        other = members.create_member(session, tenant_id=tenant_id).id
        first = members.credit_scan_points(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            batch_id=1,
            serial=7,
            points=10,
            expiry=YEAR,
            pending_for=dt.timedelta(hours=24),
            now=T0,
        )
        second = members.credit_scan_points(
            session,
            tenant_id=tenant_id,
            member_id=other,
            batch_id=1,
            serial=7,
            points=10,
            expiry=YEAR,
            now=T0,
        )
    assert first.applied and not second.applied and second.entry_id == first.entry_id
    assert points(runtime, member_id) == (0, 10) and points(runtime, other) == (0, 0)
    with pytest.raises(members.InsufficientPointsError), runtime.db.unit_of_work() as session:
        members.spend(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=1,
            business_key="too-soon",
            now=T0 + dt.timedelta(hours=1),
        )
    with runtime.db.unit_of_work() as session:
        assert members.activate_due(session, now=T0 + dt.timedelta(hours=23)) == 0
        assert members.activate_due(session, now=T0 + dt.timedelta(hours=24)) == 1
        assert members.activate_due(session, now=T0 + dt.timedelta(hours=25)) == 0
    assert points(runtime, member_id) == (10, 0)


def test_a_clawback_of_spent_points_goes_negative_visibly(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        members.credit_scan_points(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            batch_id=1,
            serial=1,
            points=50,
            expiry=YEAR,
            pending_for=dt.timedelta(0),
            now=T0,
        )
        members.spend(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=45,
            business_key="redeem:3",
            now=T0,
        )
    with runtime.db.unit_of_work() as session:
        members.reverse(
            session,
            tenant_id=tenant_id,
            original_key=members.scan_key(1, 1),
            reason="cloned code",
            now=T0,
        )
        members.reverse(
            session,
            tenant_id=tenant_id,
            original_key=members.scan_key(1, 1),
            reason="cloned code",
            now=T0,
        )  # a retry: nothing more
    assert points(runtime, member_id) == (-45, 0)
    with runtime.db.unit_of_work() as session:
        assert members.check_balances(session) == []
        kinds = [e.kind for e in members.entries_of(session, member_id=member_id)]
    assert kinds == ["reverse", "spend", "earn"]


def test_a_clawback_within_the_pending_window_takes_the_pending_points(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        members.credit_scan_points(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            batch_id=1,
            serial=2,
            points=50,
            expiry=YEAR,
            pending_for=dt.timedelta(days=1),
            now=T0,
        )
        members.reverse(
            session,
            tenant_id=tenant_id,
            original_key=members.scan_key(1, 2),
            reason="fraud check failed",
            now=T0,
        )
        assert members.activate_due(session, now=T0 + dt.timedelta(days=2)) == 1
    assert points(runtime, member_id) == (0, 0)


@pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_many_concurrent_earns_and_spends_never_disagree_with_the_ledger(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, member_id = member
    errors: list[BaseException] = []
    spent = [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(40):
                key = f"w{n}:{i}"
                with runtime.db.unit_of_work() as session:
                    if rng.random() < 0.5:
                        members.earn(
                            session,
                            tenant_id=tenant_id,
                            member_id=member_id,
                            points=rng.randint(1, 20),
                            business_key=key,
                            expiry=YEAR,
                        )
                    else:
                        try:
                            with session.begin_nested():
                                members.spend(
                                    session,
                                    tenant_id=tenant_id,
                                    member_id=member_id,
                                    points=rng.randint(1, 15),
                                    business_key=key,
                                )
                            with lock:
                                spent[0] += 1
                        except members.InsufficientPointsError:
                            pass
                # The same key again, from another thread's view: applies nothing.
                with runtime.db.unit_of_work() as session:
                    members.earn(
                        session,
                        tenant_id=tenant_id,
                        member_id=member_id,
                        points=1,
                        business_key=f"dup:{i % 5}",
                        expiry=YEAR,
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert spent[0] > 0
    with runtime.db.unit_of_work() as session:
        assert members.check_balances(session) == []
        assert members.balance_of(session, member_id).active >= 0
        dups = session.scalar(select(func.count()).where(PointsEntry.business_key.like("dup:%")))
    assert dups == 5


def test_expiring_everything_in_parallel_shards_is_complete_and_idempotent(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    tenant_id, _ = member
    with runtime.db.unit_of_work() as session:
        ids = [members.create_member(session, tenant_id=tenant_id).id for _ in range(7)]
        for n, member_id in enumerate(ids):
            for i in range(3):
                members.earn(
                    session,
                    tenant_id=tenant_id,
                    member_id=member_id,
                    points=5 + i,
                    business_key=f"m{n}:{i}",
                    expiry=members.Expiry.parse("30d"),
                    now=T0,
                )
            members.earn(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                points=1,
                business_key=f"m{n}:keep",
                expiry=members.Expiry.parse("never"),
                now=T0,
            )
    later = T0 + dt.timedelta(days=31)
    assert members.expire_all(runtime, now=later, workers=2, limit=4) == 21
    assert members.expire_all(runtime, now=later, workers=2, limit=4) == 0
    assert [points(runtime, m) for m in ids] == [(1, 0)] * 7
    with runtime.db.unit_of_work() as session:
        assert members.check_balances(session) == []


def test_the_scheduled_tasks_activate_and_expire_and_can_run_twice(
    runtime: Runtime, member: tuple[int, int]
) -> None:
    from members.tasks import activate_pending_points, expire_points

    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        members.credit_scan_points(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            batch_id=1,
            serial=3,
            points=8,
            expiry=members.Expiry.parse("1d"),
            pending_for=dt.timedelta(seconds=0.001),
        )
        members.earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=5,
            business_key="old",
            expiry=members.Expiry.parse("1d"),
            now=T0 - dt.timedelta(days=400),
        )
    assert activate_pending_points.run() == 1 and activate_pending_points.run() == 0
    assert expire_points.run() == 1 and expire_points.run() == 0
    assert points(runtime, member_id) == (8, 0)


def test_the_cli_runs_the_scheduled_work(runtime: Runtime, member: tuple[int, int]) -> None:
    from click.testing import CliRunner

    from yima.cli import main

    tenant_id, member_id = member
    with runtime.db.unit_of_work() as session:
        members.earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=5,
            business_key="old",
            expiry=members.Expiry.parse("1d"),
            now=T0 - dt.timedelta(days=400),
        )
    runner = CliRunner()
    expired = runner.invoke(main, ["points", "expire"], catch_exceptions=False)
    assert expired.exit_code == 0 and "1 lot(s) expired" in expired.output
    activated = runner.invoke(main, ["points", "activate"], catch_exceptions=False)
    assert activated.exit_code == 0 and "0 lot(s) activated" in activated.output
    assert points(runtime, member_id) == (0, 0)
