"""Engagement: a check-in a local day with its streak and bonus, refused the second time even
from concurrent requests; birthday points once a year (29 February on 28 February in other
years); referral rewards two levels up, pending, never a third."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

import members
import members.settings
from core.runtime import Runtime
from members.engagement import (
    AlreadyCheckedInError,
    birthday_matches,
    check_in,
    check_ins_of,
    grant_all_birthday_points,
    grant_birthday_points,
    referral_summary,
    reward_referral,
)
from members.models import CheckIn, Member, PointsEntry
from members.tiers import create_tier
from tests.conftest import PG_URL
from tests.factories import make_brand

# 2026-11-22 12:00 in Shanghai (UTC+8)
T0 = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class Brand:
    def __init__(self, runtime: Runtime, tenant_id: int) -> None:
        self.runtime = runtime
        self.tenant_id = tenant_id

    def member(self, **values: Any) -> int:
        with self.runtime.db.unit_of_work() as session:
            member = members.create_member(session, tenant_id=self.tenant_id)
            for name, value in values.items():
                setattr(member, name, value)
            session.flush()
            return member.id

    def check_in(self, member_id: int, at: dt.datetime) -> Any:
        with self.runtime.db.unit_of_work() as session:
            return check_in(
                session, self.runtime, tenant_id=self.tenant_id, member_id=member_id, now=at
            )

    def entries(self, member_id: int, prefix: str) -> list[tuple[str, int]]:
        with self.runtime.db.read_only() as session:
            return [
                (key, points)
                for key, points in session.execute(
                    select(PointsEntry.business_key, PointsEntry.points)
                    .where(
                        PointsEntry.member_id == member_id,
                        PointsEntry.business_key.like(f"{prefix}%"),
                    )
                    .order_by(PointsEntry.id)
                )
            ]

    def points(self, member_id: int) -> members.Points:
        with self.runtime.db.read_only() as session:
            return members.balance_of(session, member_id)

    def set_programme(self, **changes: Any) -> None:
        with self.runtime.db.unit_of_work() as session:
            members.update_programme(
                session, self.runtime, tenant_id=self.tenant_id, changes=changes
            )


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        tenant_id = make_brand(session, runtime, quantity=10).tenant_id
    return Brand(runtime, tenant_id)


# --- check-in ---------------------------------------------------------------------------------


def test_a_streak_grows_day_by_day_pays_its_bonus_and_breaks_on_a_missed_day(
    runtime: Runtime, brand: Brand
) -> None:
    brand.set_programme(checkin_points=2, checkin_streak_bonus={3: 10})
    m = brand.member()
    done = [brand.check_in(m, T0 + n * DAY) for n in range(4)]
    assert [(d.streak, d.points, d.bonus) for d in done] == [
        (1, 2, 0),
        (2, 2, 0),
        (3, 12, 10),
        (4, 2, 0),
    ]
    assert done[0].day == dt.date(2026, 11, 22)
    # 2026-11-25 was checked in; the 26th is missed; the 27th starts again at 1.
    again = brand.check_in(m, T0 + 5 * DAY)
    assert (again.day, again.streak, again.points) == (dt.date(2026, 11, 27), 1, 2)
    assert brand.points(m) == members.Points(2 + 2 + 12 + 2 + 2, 0)
    with runtime.db.read_only() as session:
        month = check_ins_of(
            session, tenant_id=brand.tenant_id, member_id=m, month="2026-11", now=T0 + 5 * DAY
        )
        assert month.days == [dt.date(2026, 11, d) for d in (22, 23, 24, 25, 27)]
        assert month.streak == 1
        tomorrow = check_ins_of(session, tenant_id=brand.tenant_id, member_id=m, now=T0 + 6 * DAY)
        assert tomorrow.streak == 1  # not yet checked in today: yesterday's streak stands
        later = check_ins_of(session, tenant_id=brand.tenant_id, member_id=m, now=T0 + 8 * DAY)
        assert later.streak == 0 and later.days == [
            dt.date(2026, 11, d) for d in (22, 23, 24, 25, 27)
        ]


def test_the_day_is_the_brand_local_day(runtime: Runtime, brand: Brand) -> None:
    m = brand.member()
    late = dt.datetime(2026, 11, 22, 15, 30, tzinfo=dt.UTC)  # 23:30 in Shanghai
    after_midnight = dt.datetime(2026, 11, 22, 16, 30, tzinfo=dt.UTC)  # 00:30 on the 23rd
    assert brand.check_in(m, late).day == dt.date(2026, 11, 22)
    second = brand.check_in(m, after_midnight)
    assert (second.day, second.streak) == (dt.date(2026, 11, 23), 2)


def test_a_second_check_in_the_same_day_is_refused_and_writes_nothing(
    runtime: Runtime, brand: Brand
) -> None:
    m = brand.member()
    brand.check_in(m, T0)
    with pytest.raises(AlreadyCheckedInError) as caught:
        brand.check_in(m, T0 + dt.timedelta(hours=5))
    assert caught.value.status == 409 and caught.value.code == "already_checked_in"
    assert brand.entries(m, "checkin:") == [(f"checkin:{m}:2026-11-22", 1)]
    assert brand.points(m) == members.Points(1, 0)


@pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_check_ins_the_same_day_credit_once(runtime: Runtime, brand: Brand) -> None:
    brand.set_programme(checkin_points=5)
    m = brand.member()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            brand.check_in(m, T0)
            result = "ok"
        except AlreadyCheckedInError:
            result = "refused"
        except BaseException as exc:  # pragma: no cover - reported below
            result = repr(exc)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert brand.entries(m, "checkin:") == [(f"checkin:{m}:2026-11-22", 5)]
    assert brand.points(m) == members.Points(5, 0)
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(CheckIn)) == 1


# --- birthday ---------------------------------------------------------------------------------


def test_the_29th_of_february_is_celebrated_on_the_28th_in_other_years() -> None:
    leapling = dt.date(2000, 2, 29)
    assert birthday_matches(leapling, dt.date(2027, 2, 28))
    assert not birthday_matches(leapling, dt.date(2027, 3, 1))
    assert not birthday_matches(leapling, dt.date(2028, 2, 28))
    assert birthday_matches(leapling, dt.date(2028, 2, 29))
    assert birthday_matches(dt.date(1990, 2, 28), dt.date(2028, 2, 28))


def test_birthday_points_once_a_year_with_the_tier_bonus(runtime: Runtime, brand: Brand) -> None:
    brand.set_programme(birthday_points=100)
    with runtime.db.unit_of_work() as session:
        create_tier(session, runtime, tenant_id=brand.tenant_id, rank=0, name="普通")
        silver = create_tier(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            rank=1,
            name="银卡",
            min_growth=100,
            benefits={"birthday_points": 50},
        ).id
    plain = brand.member(birthday=dt.date(1990, 11, 22))
    silvered = brand.member(birthday=dt.date(1985, 11, 22), tier_id=silver, tier_since=T0)
    other_day = brand.member(birthday=dt.date(1990, 11, 23))
    nobody = brand.member()
    erased = brand.member(birthday=dt.date(1990, 11, 22), status="erased")
    today = dt.date(2026, 11, 22)
    assert grant_all_birthday_points(runtime, today=today) == 2
    assert grant_all_birthday_points(runtime, today=today) == 0
    with runtime.db.unit_of_work() as session:
        batch = grant_birthday_points(session, runtime, tenant_id=brand.tenant_id, today=today)
        assert batch.changed == 0 and batch.next_after is None
    assert brand.entries(plain, "birthday:") == [(f"birthday:{plain}:2026", 100)]
    assert brand.entries(silvered, "birthday:") == [(f"birthday:{silvered}:2026", 150)]
    for m in (other_day, nobody, erased):
        assert brand.entries(m, "birthday:") == []
    # Next year again, once.
    assert grant_all_birthday_points(runtime, today=dt.date(2027, 11, 22)) == 2
    assert grant_all_birthday_points(runtime, today=dt.date(2027, 11, 22)) == 0
    assert [p for _, p in brand.entries(plain, "birthday:")] == [100, 100]


def test_a_leapling_gets_birthday_points_on_the_28th_in_a_common_year(
    runtime: Runtime, brand: Brand
) -> None:
    leapling = brand.member(birthday=dt.date(2000, 2, 29))
    assert grant_all_birthday_points(runtime, today=dt.date(2027, 2, 27)) == 0
    assert grant_all_birthday_points(runtime, today=dt.date(2027, 2, 28)) == 1
    assert grant_all_birthday_points(runtime, today=dt.date(2027, 3, 1)) == 0
    assert grant_all_birthday_points(runtime, today=dt.date(2028, 2, 28)) == 0
    assert grant_all_birthday_points(runtime, today=dt.date(2028, 2, 29)) == 1
    assert [k for k, _ in brand.entries(leapling, "birthday:")] == [
        f"birthday:{leapling}:2027",
        f"birthday:{leapling}:2028",
    ]


def test_birthdays_are_granted_in_batches(runtime: Runtime, brand: Brand) -> None:
    ids = [brand.member(birthday=dt.date(1990 + n, 11, 22)) for n in range(5)]
    today = dt.date(2026, 11, 22)
    granted, after = 0, 0
    with runtime.db.unit_of_work() as session:
        while True:
            batch = grant_birthday_points(session, runtime, today=today, limit=2, after=after)
            granted += batch.changed
            if batch.next_after is None:
                break
            after = batch.next_after
    assert granted == 5
    assert all(brand.points(m) == members.Points(100, 0) for m in ids)


# --- referral ---------------------------------------------------------------------------------


def test_a_referral_rewards_two_levels_pending_and_never_a_third(
    runtime: Runtime, brand: Brand
) -> None:
    brand.set_programme(referral_points=(50, 20), pending_hours=24)
    great = brand.member(referral_code="GREAT1")
    grand = brand.member(referrer_id=great, referral_code="GRAND1")
    parent = brand.member(referrer_id=grand, referral_code="PARENT")
    child = brand.member(referrer_id=parent)
    for _ in range(2):  # a retried sign-up changes nothing
        with runtime.db.unit_of_work() as session:
            reward_referral(session, runtime, tenant_id=brand.tenant_id, member_id=child)
    assert brand.entries(parent, "referral:") == [(f"referral:{child}:1", 50)]
    assert brand.entries(grand, "referral:") == [(f"referral:{child}:2", 20)]
    assert brand.entries(great, "referral:") == []
    assert brand.points(parent) == members.Points(0, 50)  # pending: fraud checks run first
    assert brand.points(grand) == members.Points(0, 20)
    with runtime.db.unit_of_work() as session:
        assert members.activate_due(session, now=dt.datetime.now(dt.UTC) + 2 * DAY) == 2
        summary = referral_summary(session, tenant_id=brand.tenant_id, member_id=parent)
    assert brand.points(parent) == members.Points(50, 0)
    assert (summary.code, summary.invited, summary.points_earned) == ("PARENT", 1, 50)
    with runtime.db.read_only() as session:
        reasons = session.scalars(
            select(PointsEntry.reason).where(PointsEntry.business_key.like("referral:%"))
        ).all()
    assert set(reasons) == {"referral"}


def test_an_erased_referrer_is_skipped_and_the_level_above_still_credited(
    runtime: Runtime, brand: Brand
) -> None:
    grand = brand.member()
    parent = brand.member(referrer_id=grand, status="erased")
    child = brand.member(referrer_id=parent)
    with runtime.db.unit_of_work() as session:
        done = reward_referral(session, runtime, tenant_id=brand.tenant_id, member_id=child)
    assert len(done) == 1
    assert brand.entries(parent, "referral:") == []
    assert brand.entries(grand, "referral:") == [(f"referral:{child}:2", 20)]


def test_a_member_without_a_referrer_rewards_nobody(runtime: Runtime, brand: Brand) -> None:
    alone = brand.member()
    with runtime.db.unit_of_work() as session:
        assert reward_referral(session, runtime, tenant_id=brand.tenant_id, member_id=alone) == []
        assert session.scalar(select(func.count()).select_from(PointsEntry)) == 0
        assert session.get(Member, alone) is not None
