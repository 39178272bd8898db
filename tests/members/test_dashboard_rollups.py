"""The members page's rollups equal a direct count of the members, RFM, balance and lot tables
after members join, move between tiers, are rescored and are erased — before the rollup task
has caught up (the uncounted tail is added when read) and after; erasures racing refreshes and
computations on PostgreSQL lose nothing; and the page reads no member table but that tail."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, event, select

import console
import members
from core.db import utcnow
from core.runtime import Runtime
from members import rfm
from members.models import Member, PointsHeld, RfmSummary, SegmentCount, TierCount
from members.rollups import count_points_held
from members.tiers import add_growth, check_upgrade, create_tier, review_all
from tests.conftest import PG_URL
from tests.factories import make_brand

NOW = utcnow()
YEAR = members.Expiry.parse("365d")
_serial = itertools.count(1)


@dataclass
class Club:
    runtime: Runtime
    tenant_id: int
    other_tenant_id: int
    tiers: dict[str, int]
    admin_token: str

    def join(self, *, days_ago: float = 200, tenant_id: int | None = None) -> int:
        with self.runtime.db.unit_of_work() as session:
            member = members.create_member(session, tenant_id=tenant_id or self.tenant_id)
            member.created_at = NOW - dt.timedelta(days=days_ago)
            session.flush()
            return member.id

    def scan(self, member_id: int, *, days_ago: float, points: int) -> None:
        with self.runtime.db.unit_of_work() as session:
            tenant_id = session.get(Member, member_id).tenant_id  # type: ignore[union-attr]
            members.earn(
                session, tenant_id=tenant_id, member_id=member_id, points=points,
                business_key=members.scan_key(1, next(_serial)), expiry=YEAR,
                now=NOW - dt.timedelta(days=days_ago),
            )  # fmt: skip

    def grow(self, member_id: int, points: int) -> None:
        with self.runtime.db.unit_of_work() as session:
            add_growth(
                session, tenant_id=self.tenant_id, member_id=member_id, points=points,
                business_key=f"g:{next(_serial)}", reason="scan", now=NOW,
            )  # fmt: skip
            check_upgrade(
                session, self.runtime, tenant_id=self.tenant_id, member_id=member_id, now=NOW
            )

    def erase(self, member_id: int) -> None:
        with self.runtime.db.unit_of_work() as session:
            done = members.erase_member(
                session, tenant_id=self.tenant_id, member_id=member_id, actor="test"
            )
            assert not done.already

    def tier_of(self, member_id: int) -> int | None:
        with self.runtime.db.read_only() as session:
            return session.scalar(select(Member.tier_id).where(Member.id == member_id))


@pytest.fixture
def club(runtime: Runtime) -> Club:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10)
        other = make_brand(session, runtime, slug="rival", quantity=10)
        tiers = {
            name: create_tier(
                session, runtime, tenant_id=brand.tenant_id, rank=rank, name=name,
                min_growth=growth,
            ).id
            for rank, name, growth in ((0, "普通", None), (1, "银卡", 100), (2, "金卡", 500))
        }  # fmt: skip
        return Club(runtime, brand.tenant_id, other.tenant_id, tiers, brand.admin_token)


def figures(runtime: Runtime, tenant_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the page shows, a direct count of the tables)."""
    with runtime.db.read_only() as session:
        shown = rfm.segment_summary(session, tenant_id=tenant_id)
        shown.pop("points")
        return shown, rfm.recount_summary(session, tenant_id=tenant_id)


def stored_tiers(runtime: Runtime, tenant_id: int) -> dict[int | None, int]:
    """The rollup's rows alone, without the uncounted tail."""
    with runtime.db.read_only() as session:
        rows = session.scalars(select(TierCount).where(TierCount.tenant_id == tenant_id))
        return {(r.tier_key or None): r.members for r in rows if r.members}


def recounted_tiers(runtime: Runtime, tenant_id: int) -> dict[int | None, int]:
    _shown, direct = figures(runtime, tenant_id)
    return {t["tier_id"]: t["members"] for t in direct["tiers"]}


def check(club: Club, *, refreshed: bool = True) -> dict[str, Any]:
    """The page's figures equal the recount, before the rollup task runs and after it."""
    for tenant_id in (club.tenant_id, club.other_tenant_id):
        shown, direct = figures(club.runtime, tenant_id)
        assert shown == direct
    if refreshed:
        members.refresh_member_rollups(club.runtime)
        for tenant_id in (club.tenant_id, club.other_tenant_id):
            shown, direct = figures(club.runtime, tenant_id)
            assert shown == direct
            assert stored_tiers(club.runtime, tenant_id) == recounted_tiers(club.runtime, tenant_id)
    return figures(club.runtime, club.tenant_id)[0]


def test_figures_equal_a_recount_as_members_join_move_are_rescored_and_erased(
    club: Club,
) -> None:
    ids = [club.join(days_ago=300 - 20 * i) for i in range(8)]
    rival = club.join(tenant_id=club.other_tenant_id)
    for i, member_id in enumerate(ids[:6]):
        for n in range(i + 1):
            club.scan(member_id, days_ago=5 + 30 * i + n, points=10 * (i + 1))
    club.scan(rival, days_ago=3, points=5)
    first = check(club, refreshed=False)  # nothing counted yet: the tail is everything
    assert first["members"] == 8 and first["not_computed"] == 8
    assert first["tiers"] == [
        {"tier_id": None, "name": None, "name_en": None, "rank": None, "members": 8}
    ]
    check(club)

    # Members move up the ladder (history rows) and the review seats the rest in the entry tier.
    club.grow(ids[0], 600)  # straight to 金卡
    club.grow(ids[1], 150)  # 银卡
    check(club, refreshed=False)
    review_all(club.runtime, tenant_id=club.tenant_id, now=NOW)
    club.grow(ids[1], 400)  # and on to 金卡
    moved = check(club)
    by_name = {t["name"]: t["members"] for t in moved["tiers"]}
    assert by_name == {"普通": 6, "金卡": 2}
    assert [t["name"] for t in moved["tiers"]] == ["普通", "金卡"]  # by rank

    # Scored: the computation writes the summary with the scores.
    rfm.compute_rfm(club.runtime, now=NOW)
    scored = check(club)
    assert (scored["members"], scored["scored"], scored["not_scored"]) == (8, 6, 2)
    assert scored["not_computed"] == 0 and scored["computed_at"] is not None
    assert sum(s["members"] for s in scored["segments"]) == 8
    assert scored["means"]["r"] is not None

    # A counted member is erased: out of its tier, its segment, the means, at once.
    club.erase(ids[0])
    erased = check(club, refreshed=False)
    assert erased["members"] == 7 and sum(s["members"] for s in erased["segments"]) == 7
    assert {t["name"]: t["members"] for t in erased["tiers"]} == {"普通": 6, "金卡": 1}
    check(club)

    # A member joins, moves and is erased before the rollup task ever sees it; another joins.
    late = club.join(days_ago=1)
    club.grow(late, 200)
    assert club.tier_of(late) == club.tiers["银卡"]
    club.erase(late)
    newcomer = club.join(days_ago=0.5)
    club.grow(newcomer, 120)
    after = check(club)
    assert after["members"] == 8 and after["not_computed"] == 1

    # Rescored 100 days later: the idle fall asleep, the newcomer is computed.
    rfm.compute_rfm(club.runtime, now=NOW + dt.timedelta(days=100))
    later = check(club)
    assert later["not_computed"] == 0 and later["sleeping"] > scored["sleeping"]
    club.erase(ids[5])
    final = check(club)
    assert final["members"] == 7


def test_the_computation_in_a_callers_transaction_and_a_never_computed_brand(
    club: Club,
) -> None:
    a, b = club.join(), club.join()
    club.scan(a, days_ago=2, points=10)
    shown, direct = figures(club.runtime, club.tenant_id)
    assert shown == direct and shown["computed_at"] is None and shown["means"]["r"] is None
    with club.runtime.db.unit_of_work() as session:
        rfm.compute_rfm(session, tenant_id=club.tenant_id, now=NOW)
        session.get(Member, b).status = "erased"  # type: ignore[union-attr]
        session.flush()
        rfm.compute_rfm(session, tenant_id=club.tenant_id, now=NOW)
    with club.runtime.db.read_only() as session:
        summary = session.get(RfmSummary, club.tenant_id)
        assert summary is not None and (summary.rows, summary.not_scored) == (1, 0)
        segments = dict(
            session.execute(
                select(SegmentCount.segment, SegmentCount.members).where(
                    SegmentCount.tenant_id == club.tenant_id
                )
            ).all()
        )
    assert segments["important_value"] == 1 and sum(segments.values()) == 1


def test_a_brand_scored_before_the_summaries_existed_gets_its_figures_at_the_next_refresh(
    club: Club,
) -> None:
    ids = [club.join(days_ago=100 + i) for i in range(4)]
    for i, member_id in enumerate(ids[:3]):
        club.scan(member_id, days_ago=3 + 40 * i, points=10 * (i + 1))
    rfm.compute_rfm(club.runtime, now=NOW)
    scored, _direct = figures(club.runtime, club.tenant_id)
    # As after upgrading to migration 0012: the RFM rows are there, their summary is not.
    with club.runtime.db.unit_of_work() as session:
        session.execute(delete(SegmentCount))
        session.execute(delete(RfmSummary))
    bare, direct = figures(club.runtime, club.tenant_id)
    assert bare != direct and bare["computed_at"] is None
    members.refresh_member_rollups(club.runtime)
    shown, direct = figures(club.runtime, club.tenant_id)
    assert shown == direct == scored
    assert (shown["scored"], shown["not_scored"]) == (3, 1)


def test_points_held_equal_the_balances_and_lots(club: Club) -> None:
    ids = [club.join() for _ in range(4)]
    with club.runtime.db.unit_of_work() as session:
        for i, member_id in enumerate(ids):
            for days in (10, 29, 31, 400):
                members.earn(
                    session, tenant_id=club.tenant_id, member_id=member_id,
                    points=100 * (i + 1), business_key=f"e:{member_id}:{days}",
                    expiry=members.Expiry.parse(f"{days}d"), now=NOW,
                )  # fmt: skip
        members.spend(
            session, tenant_id=club.tenant_id, member_id=ids[0], points=150,
            business_key="s", now=NOW,
        )  # fmt: skip
        # A clawback bigger than what is left: a deficit, not netted against the others.
        members.adjust(
            session, tenant_id=club.tenant_id, member_id=ids[1], points=-5000,
            business_key="a", reason="fraud", actor="t", now=NOW,
        )  # fmt: skip
    members.refresh_member_rollups(club.runtime)
    with club.runtime.db.read_only() as session:
        held = rfm.segment_summary(session, tenant_id=club.tenant_id)["points"]
        direct = members.open_points(session, tenant_id=club.tenant_id)
        soon = members.expiring_points(session, tenant_id=club.tenant_id, within_days=30)
        nothing = rfm.segment_summary(session, tenant_id=club.other_tenant_id)["points"]
    assert (held["active"], held["pending"]) == (direct.active, direct.pending)
    assert held["expiring"] == soon and soon["points"] > 0 and soon["members"] == 3
    assert held["counted_at"] is not None
    assert nothing["active"] == 0 and nothing["counted_at"] is None
    # Spent to nothing: the next count writes zeros, not the old figure.
    with club.runtime.db.unit_of_work() as session:
        for member_id in (ids[0], ids[2], ids[3]):
            left = members.balance_of(session, member_id).active
            members.spend(
                session, tenant_id=club.tenant_id, member_id=member_id, points=left,
                business_key=f"all:{member_id}", now=NOW,
            )  # fmt: skip
        count_points_held(session)
        row = session.get(PointsHeld, club.tenant_id)
        assert row is not None and (row.active, row.expiring_points) == (0, 0)


def test_the_members_page_reads_rollups_not_members(club: Club) -> None:
    ids = [club.join() for _ in range(3)]
    club.scan(ids[0], days_ago=1, points=10)
    club.grow(ids[0], 150)
    rfm.compute_rfm(club.runtime, now=NOW)
    members.refresh_member_rollups(club.runtime)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.lower().split()))

    engine = club.runtime.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with console.create_app().test_client() as client:
            answer = client.get(
                "/api/v1/dashboards/members",
                headers={"Authorization": f"Bearer {club.admin_token}"},
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["members"] == 3 and {t["name"]: t["members"] for t in body["tiers"]} == {
        None: 2,
        "银卡": 1,
    }
    assert body["points_liability"]["active"] == 10 and body["points_counted_at"]
    big = ("members_rfm ", "members_balances", "members_points_lots", "members_points_entries")
    assert not [s for s in seen for table in big if f"from {table}" in s or f"join {table}" in s]
    # The members table only for the tail the task has not counted (by index: tenant, id).
    assert all("m.id >" in s for s in seen if "from members_members" in s)


@pytest.mark.skipif(PG_URL is None, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_erasures_racing_refreshes_and_computations_lose_nothing(club: Club) -> None:
    ids = [club.join(days_ago=random.Random(i).randint(1, 300)) for i in range(40)]
    for i, member_id in enumerate(ids[:30]):
        club.scan(member_id, days_ago=1 + i * 7, points=5 + i)
    members.refresh_member_rollups(club.runtime)
    rfm.compute_rfm(club.runtime, now=NOW)
    stop = threading.Event()
    failed: list[BaseException] = []

    def keep(work: Any) -> Iterator[None]:
        try:
            while not stop.is_set():
                work()
                yield
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    def refresher() -> None:
        for _ in keep(lambda: members.refresh_member_rollups(club.runtime)):
            pass

    def scorer() -> None:
        for _ in keep(lambda: rfm.compute_rfm(club.runtime, tenant_id=club.tenant_id, now=NOW)):
            pass

    threads = [threading.Thread(target=refresher), threading.Thread(target=scorer)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(7)
        kept = 0
        for member_id in rng.sample(ids, 15):
            club.erase(member_id)
            newcomer = club.join(days_ago=0)
            club.grow(newcomer, rng.choice((50, 150, 600)))
            if rng.random() < 0.5:
                club.erase(newcomer)
            else:
                kept += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failed, failed
    shown = check(club)
    assert shown["members"] == 25 + kept
