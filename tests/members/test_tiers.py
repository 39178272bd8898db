"""Tiers and growth value: a member moves up the ladder the moment it qualifies and gets each
tier's gift once, ever; the daily review moves down by the brand's policy and changes nothing
when run again; growth retried applies once; the scan path's multiplier costs no query."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

import members
import members.settings
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members.models import GrowthEntry, Member, PointsEntry, Tier, TierChange
from members.tiers import (
    TierInUseError,
    add_growth,
    check_upgrade,
    create_tier,
    delete_tier,
    ladder_of,
    progress_of,
    review_all,
    review_tiers,
    scan_multiplier,
    update_tier,
)
from tests.conftest import PG_URL
from tests.factories import make_brand

T0 = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
YEAR = members.Expiry.parse("365d")
WINDOW = 365


LADDER: list[dict[str, Any]] = [
    {"rank": 0, "name": "普通", "name_en": "Member"},
    {
        "rank": 1,
        "name": "银卡",
        "name_en": "Silver",
        "min_growth": 100,
        "upgrade_gift_points": 50,
        "benefits": {"points_multiplier": 1.2, "birthday_points": 20},
    },
    {
        "rank": 2,
        "name": "金卡",
        "name_en": "Gold",
        "min_growth": 500,
        "min_spend": 300,
        "upgrade_gift_points": 200,
        "benefits": {"points_multiplier": 1.5, "discount_rate": 0.95, "free_shipping": True},
    },
    {
        "rank": 3,
        "name": "钻石",
        "name_en": "Diamond",
        "min_growth": 2000,
        "min_spend": 1000,
        "qualify": "all",
        "upgrade_gift_points": 1000,
        "benefits": {"points_multiplier": 2.0, "priority_service": True},
    },
]


class Club:
    """A brand with the 普通 / 银卡 / 金卡 / 钻石 ladder and helpers to move its members."""

    def __init__(self, runtime: Runtime, tenant_id: int, tiers: dict[str, int]) -> None:
        self.runtime = runtime
        self.tenant_id = tenant_id
        self.tiers = tiers
        self.names = {v: k for k, v in tiers.items()}

    def member(self, **values: Any) -> int:
        with self.runtime.db.unit_of_work() as session:
            member = members.create_member(session, tenant_id=self.tenant_id)
            for name, value in values.items():
                setattr(member, name, value)
            session.flush()
            return member.id

    def grow(self, member_id: int, points: int, key: str, at: dt.datetime = T0) -> bool:
        with self.runtime.db.unit_of_work() as session:
            return add_growth(
                session,
                tenant_id=self.tenant_id,
                member_id=member_id,
                points=points,
                business_key=key,
                reason="scan",
                now=at,
            )

    def spend(self, member_id: int, points: int, key: str, at: dt.datetime = T0) -> None:
        with self.runtime.db.unit_of_work() as session:
            members.earn(
                session,
                tenant_id=self.tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"topup:{key}",
                expiry=YEAR,
                now=at,
            )
            members.spend(
                session,
                tenant_id=self.tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"redeem:{key}",
                now=at,
            )

    def check(self, member_id: int, at: dt.datetime = T0) -> Any:
        with self.runtime.db.unit_of_work() as session:
            return check_upgrade(
                session, self.runtime, tenant_id=self.tenant_id, member_id=member_id, now=at
            )

    def tier(self, member_id: int) -> str | None:
        with self.runtime.db.read_only() as session:
            tier_id = session.scalar(select(Member.tier_id).where(Member.id == member_id))
            return self.names.get(tier_id) if tier_id is not None else None

    def gifts(self, member_id: int) -> list[int]:
        with self.runtime.db.read_only() as session:
            return list(
                session.scalars(
                    select(PointsEntry.points)
                    .where(
                        PointsEntry.member_id == member_id,
                        PointsEntry.business_key.like("tier-gift:%"),
                    )
                    .order_by(PointsEntry.id)
                )
            )

    def changes(self, member_id: int) -> list[tuple[str | None, str | None, str]]:
        with self.runtime.db.read_only() as session:
            rows = session.execute(
                select(TierChange.from_tier_id, TierChange.to_tier_id, TierChange.reason)
                .where(TierChange.member_id == member_id)
                .order_by(TierChange.id)
            ).all()
        return [
            (self.names.get(a) if a else None, self.names.get(b) if b else None, r)
            for a, b, r in rows
        ]

    def set_programme(self, **changes: Any) -> None:
        with self.runtime.db.unit_of_work() as session:
            members.update_programme(
                session, self.runtime, tenant_id=self.tenant_id, changes=changes
            )


@pytest.fixture
def club(runtime: Runtime) -> Club:
    with runtime.db.unit_of_work() as session:
        tenant_id = make_brand(session, runtime, quantity=10).tenant_id
        tiers = {
            spec["name"]: create_tier(session, runtime, tenant_id=tenant_id, **spec).id
            for spec in LADDER
        }
    return Club(runtime, tenant_id, tiers)


def test_growth_retried_applies_once_and_is_not_spendable(runtime: Runtime, club: Club) -> None:
    m = club.member()
    assert club.grow(m, 40, "scan-growth:1:7") is True
    assert club.grow(m, 40, "scan-growth:1:7") is False
    assert club.grow(m, 40, "scan-growth:1:7") is False
    assert club.grow(m, 15, "scan-growth:1:8") is True
    with runtime.db.read_only() as session:
        assert session.scalar(select(Member.growth).where(Member.id == m)) == 55
        assert session.scalar(select(func.count()).select_from(GrowthEntry)) == 2
        assert members.balance_of(session, m) == members.Points(0, 0)


def test_the_ladder_upgrades_at_once_with_each_gift_once_ever(runtime: Runtime, club: Club) -> None:
    m = club.member()
    first = club.check(m)
    assert first is not None and club.tier(m) == "普通" and first.gift_points == 0
    club.grow(m, 99, "g1")
    assert club.check(m) is None and club.tier(m) == "普通"
    club.grow(m, 1, "g2")
    moved = club.check(m)
    assert club.tier(m) == "银卡" and moved.gift_points == 50
    assert club.check(m) is None  # nothing new: no second change, no second gift
    # 金卡 needs 500 growth or 300 points spent (any): spending alone is enough.
    club.spend(m, 300, "r1")
    assert club.check(m).gift_points == 200 and club.tier(m) == "金卡"
    # 钻石 needs both 2,000 growth and 1,000 spent: growth alone is not.
    club.grow(m, 5000, "g3")
    assert club.check(m) is None and club.tier(m) == "金卡"
    club.spend(m, 700, "r2")
    assert club.check(m).gift_points == 1000 and club.tier(m) == "钻石"
    assert club.gifts(m) == [50, 200, 1000]
    assert club.changes(m) == [
        (None, "普通", "upgrade"),
        ("普通", "银卡", "upgrade"),
        ("银卡", "金卡", "upgrade"),
        ("金卡", "钻石", "upgrade"),
    ]
    # A year and a day later nothing of the window is left: one step down at the review. Coming
    # back up to 钻石 later gives no second gift.
    later = T0 + dt.timedelta(days=WINDOW + 1)
    assert review_all(runtime, tenant_id=club.tenant_id, now=later) == 1
    assert club.tier(m) == "金卡"
    club.grow(m, 2000, "g4", at=later)
    club.spend(m, 1000, "r3", at=later)
    assert club.check(m, at=later).gift_points == 0
    assert club.tier(m) == "钻石" and club.gifts(m) == [50, 200, 1000]


def test_a_member_jumps_to_the_highest_tier_qualified(runtime: Runtime, club: Club) -> None:
    m = club.member()
    club.grow(m, 600, "g1")
    moved = club.check(m)
    assert club.tier(m) == "金卡" and moved.from_tier_id is None
    assert club.gifts(m) == [200]  # the gift of the tier reached


def test_the_window_counts_growth_spend_and_scans_that_stood(runtime: Runtime, club: Club) -> None:
    m = club.member()
    old = T0 - dt.timedelta(days=WINDOW + 1)
    club.grow(m, 1000, "old", at=old)
    club.grow(m, 30, "new", at=T0)
    club.spend(m, 25, "r1", at=T0)
    with runtime.db.unit_of_work() as session:
        for serial in (1, 2, 3):
            members.credit_scan_points(
                session,
                tenant_id=club.tenant_id,
                member_id=m,
                batch_id=1,
                serial=serial,
                points=10,
                expiry=YEAR,
                now=T0,
            )
        members.reverse(
            session, tenant_id=club.tenant_id, original_key="scan:1:3", reason="fraud", now=T0
        )
    with runtime.db.read_only() as session:
        found = progress_of(
            session,
            tenant_id=club.tenant_id,
            member_id=m,
            since=T0 - dt.timedelta(days=WINDOW),
        )
    assert (found.growth, found.spend, found.scans) == (30, 25, 2)


@pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_upgrade_checks_record_one_change_and_one_gift(
    runtime: Runtime, club: Club
) -> None:
    m = club.member(tier_id=club.tiers["普通"], tier_since=T0 - dt.timedelta(days=3))
    club.grow(m, 150, "g1")
    barrier = threading.Barrier(8)
    moves: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            moves.append(club.check(m))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(move is not None for move in moves) == 1
    assert club.tier(m) == "银卡" and club.gifts(m) == [50]
    assert club.changes(m) == [("普通", "银卡", "upgrade")]
    with runtime.db.read_only() as session:
        assert members.balance_of(session, m) == members.Points(50, 0)


@pytest.mark.parametrize(
    ("policy", "expected"), [("one_step", "金卡"), ("to_qualified", "银卡"), ("never", "钻石")]
)
def test_the_review_moves_down_by_the_policy_and_a_second_run_changes_nothing(
    runtime: Runtime, club: Club, policy: str, expected: str
) -> None:
    club.set_programme(downgrade=policy)
    m = club.member()
    club.grow(m, 2000, "g1")
    club.spend(m, 1000, "r1")
    club.check(m)
    assert club.tier(m) == "钻石"
    # Within the window of its upgrade a member keeps its tier, whatever it does.
    assert review_all(runtime, now=T0 + dt.timedelta(days=200)) == 0
    assert club.tier(m) == "钻石"
    # A year later, the window holds only 150 growth: enough for 银卡 only.
    club.grow(m, 150, "g2", at=T0 + dt.timedelta(days=30))
    review_day = T0 + dt.timedelta(days=WINDOW + 2)
    moved = review_all(runtime, now=review_day)
    assert club.tier(m) == expected
    assert moved == (0 if policy == "never" else 1)
    before = club.changes(m)
    assert review_all(runtime, now=review_day) == 0
    assert review_all(runtime, now=review_day + dt.timedelta(hours=3)) == 0
    assert club.changes(m) == before and club.tier(m) == expected
    if policy != "never":
        assert before[-1] == ("钻石", expected, "downgrade")
    assert club.gifts(m) == [1000]  # moving down gives nothing


def test_the_review_places_members_without_a_tier_in_batches(runtime: Runtime, club: Club) -> None:
    ids = [club.member() for _ in range(5)]
    club.grow(ids[2], 120, "g1")
    with runtime.db.unit_of_work() as session:
        first = review_tiers(session, runtime, now=T0, limit=2)
        assert (first.examined, first.changed, first.next_after) == (2, 2, ids[1])
        rest = review_tiers(session, runtime, now=T0, limit=2, after=ids[1])
        assert (rest.changed, rest.next_after) == (2, ids[3])
        last = review_tiers(session, runtime, now=T0, limit=2, after=ids[3])
        assert last.next_after is None
    assert [club.tier(m) for m in ids] == ["普通", "普通", "银卡", "普通", "普通"]
    assert club.gifts(ids[2]) == [50]
    assert review_all(runtime, now=T0) == 0


def test_the_scan_multiplier_is_the_tier_benefit_and_costs_no_query_when_warm(
    runtime: Runtime, club: Club
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with runtime.db.unit_of_work() as session:
        assert scan_multiplier(runtime, session, tenant_id=club.tenant_id, tier_id=None) == 1.0
        gold = club.tiers["金卡"]
        assert scan_multiplier(runtime, session, tenant_id=club.tenant_id, tier_id=gold) == 1.5
        event.listen(runtime.db.engine, "before_cursor_execute", count)
        try:
            for _ in range(3):
                assert (
                    scan_multiplier(runtime, session, tenant_id=club.tenant_id, tier_id=gold) == 1.5
                )
        finally:
            event.remove(runtime.db.engine, "before_cursor_execute", count)
        assert statements == []
        # An edit is seen at once in this process (elsewhere within 30 s).
        update_tier(
            session,
            runtime,
            tenant_id=club.tenant_id,
            tier_id=gold,
            changes={"benefits": {"points_multiplier": 1.8}},
        )
        assert scan_multiplier(runtime, session, tenant_id=club.tenant_id, tier_id=gold) == 1.8
        tier = session.get(Tier, gold)
        assert tier is not None and tier.benefits["discount_rate"] == 0.95  # the rest kept


def test_edited_thresholds_apply_at_the_next_check(runtime: Runtime, club: Club) -> None:
    m = club.member()
    club.grow(m, 80, "g1")
    club.check(m)
    assert club.tier(m) == "普通"
    with runtime.db.unit_of_work() as session:
        update_tier(
            session,
            runtime,
            tenant_id=club.tenant_id,
            tier_id=club.tiers["银卡"],
            changes={"min_growth": 50},
        )
    assert club.tier(m) == "普通"  # nobody moves because of the edit itself
    club.check(m)
    assert club.tier(m) == "银卡"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"rank": 4, "name": "黑金", "min_growth": 1500}, "min_growth"),  # below 钻石's 2,000
        ({"rank": 4, "name": "黑金"}, "min_growth"),  # no threshold above the entry tier
        ({"rank": 2, "name": "黑金", "min_growth": 900}, "rank"),
        ({"rank": 4, "name": "金卡", "min_growth": 9000}, "name"),
        ({"rank": -1, "name": "黑金"}, "rank"),
        ({"rank": 4, "name": "黑金", "min_growth": 9000, "qualify": "most"}, "qualify"),
        (
            {"rank": 4, "name": "黑金", "min_growth": 9000, "benefits": {"points_multiplier": 50}},
            "benefits.points_multiplier",
        ),
        (
            {"rank": 4, "name": "黑金", "min_growth": 9000, "benefits": {"discount_rate": 0.3}},
            "benefits.discount_rate",
        ),
        ({"rank": 4, "name": "黑金", "min_growth": 9000, "colour": "black"}, "colour"),
    ],
)
def test_a_tier_that_does_not_fit_the_ladder_is_refused(
    runtime: Runtime, club: Club, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailedError) as caught, runtime.db.unit_of_work() as session:
        create_tier(session, runtime, tenant_id=club.tenant_id, **spec)
    assert field in caught.value.errors
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Tier)) == 4


def test_lowering_a_threshold_under_the_tier_below_is_refused(runtime: Runtime, club: Club) -> None:
    with pytest.raises(ValidationFailedError) as caught, runtime.db.unit_of_work() as session:
        update_tier(
            session,
            runtime,
            tenant_id=club.tenant_id,
            tier_id=club.tiers["金卡"],
            changes={"min_growth": 50},
        )
    assert "at least 100" in caught.value.errors["min_growth"]


def test_a_held_tier_cannot_be_deleted_and_history_survives_a_deletion(
    runtime: Runtime, club: Club
) -> None:
    m = club.member()
    club.check(m)
    club.grow(m, 150, "g1")
    club.check(m)
    with pytest.raises(TierInUseError), runtime.db.unit_of_work() as session:
        delete_tier(session, runtime, tenant_id=club.tenant_id, tier_id=club.tiers["银卡"])
    with runtime.db.unit_of_work() as session:
        session.execute(update(Member).where(Member.id == m).values(tier_id=club.tiers["普通"]))
        delete_tier(session, runtime, tenant_id=club.tenant_id, tier_id=club.tiers["银卡"])
    with runtime.db.read_only() as session:
        assert [t.name for t in ladder_of(runtime, session, club.tenant_id).tiers] == [
            "普通",
            "金卡",
            "钻石",
        ]
    assert club.changes(m) == [(None, "普通", "upgrade"), ("普通", None, "upgrade")]
