"""Members per day equal a direct count of members and the ledger, in the brand's days, after
re-runs and concurrent refreshes."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import members
from core.runtime import Runtime
from members.models import Member, MemberDay, PointsEntry
from tests.conftest import PG_URL
from tests.factories import Brand, make_brand

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
YEAR = members.Expiry.parse("365d")
KINDS = {
    "earn": "points_earned",
    "spend": "points_spent",
    "expire": "points_expired",
    "adjust": "points_adjusted",
    "reverse": "points_reversed",
}


@pytest.fixture
def brands(runtime: Runtime) -> list[Brand]:
    with runtime.db.unit_of_work() as session:
        return [
            make_brand(session, runtime, slug="acme", quantity=10),
            make_brand(session, runtime, slug="bravo", quantity=10),
        ]


def _activity(runtime: Runtime, brands: list[Brand], seed: int, n: int = 40) -> None:
    rng = random.Random(seed)
    for i in range(n):
        brand = rng.choice(brands)
        at = NOW - dt.timedelta(minutes=rng.randint(0, 4 * 1440))
        with runtime.db.unit_of_work() as session:
            member = members.create_member(session, tenant_id=brand.tenant_id)
            member.created_at = at
            members.earn(
                session, tenant_id=brand.tenant_id, member_id=member.id, points=rng.randint(5, 50),
                business_key=f"t:{seed}:{i}", expiry=YEAR, now=at,
            )  # fmt: skip
            if rng.random() < 0.5:
                members.spend(
                    session, tenant_id=brand.tenant_id, member_id=member.id, points=3,
                    business_key=f"s:{seed}:{i}", now=at + dt.timedelta(minutes=5),
                )  # fmt: skip
            if rng.random() < 0.3:
                members.adjust(
                    session, tenant_id=brand.tenant_id, member_id=member.id, points=-1,
                    business_key=f"a:{seed}:{i}", reason="goodwill", actor="t", now=at,
                )  # fmt: skip


def _direct(runtime: Runtime, tenant_id: int) -> dict[dt.date, Counter[str]]:
    zone = ZoneInfo("Asia/Shanghai")
    out: dict[dt.date, Counter[str]] = {}
    with runtime.db.read_only() as session:
        for m in session.scalars(select(Member).where(Member.tenant_id == tenant_id)):
            out.setdefault(m.created_at.astimezone(zone).date(), Counter())["new_members"] += 1
        for e in session.scalars(select(PointsEntry).where(PointsEntry.tenant_id == tenant_id)):
            day = out.setdefault(e.created_at.astimezone(zone).date(), Counter())
            debit = e.kind in ("spend", "expire")
            day[KINDS[e.kind]] += -e.points if debit else e.points
    return {d: +c for d, c in out.items()}  # drop zero counts, as a rollup row would read


def _rolled(runtime: Runtime, tenant_id: int) -> dict[dt.date, Counter[str]]:
    with runtime.db.read_only() as session:
        rows = session.scalars(select(MemberDay).where(MemberDay.tenant_id == tenant_id)).all()
        return {
            r.day: +Counter({f: getattr(r, f) for f in (*KINDS.values(), "new_members")})
            for r in rows
        }


def test_member_days_equal_the_ledger_after_reruns(runtime: Runtime, brands: list[Brand]) -> None:
    _activity(runtime, brands, seed=1)
    done = members.refresh_member_rollups(runtime, batch_size=16)
    assert done.members == 40 and done.entries > 40
    _activity(runtime, brands, seed=2, n=10)
    members.refresh_member_rollups(runtime)
    again = members.refresh_member_rollups(runtime)
    assert (again.members, again.entries) == (0, 0)
    for brand in brands:
        assert _rolled(runtime, brand.tenant_id) == _direct(runtime, brand.tenant_id)
    with runtime.db.read_only() as session:
        first, last = (NOW - dt.timedelta(days=5)).date(), NOW.date()
        figures = members.member_days(
            session, tenant_id=brands[0].tenant_id, first_day=first, last_day=last
        )
    assert len(figures["days"]) == 6
    direct = _direct(runtime, brands[0].tenant_id)
    assert figures["totals"]["new_members"] == sum(c["new_members"] for c in direct.values())
    assert figures["totals"]["points_spent"] == sum(c["points_spent"] for c in direct.values())


def test_points_expiring_within_30_days(runtime: Runtime, brands: list[Brand]) -> None:
    brand = brands[0]
    with runtime.db.unit_of_work() as session:
        member = members.create_member(session, tenant_id=brand.tenant_id)
        for i, days in enumerate((10, 29, 31, 400)):
            members.earn(
                session, tenant_id=brand.tenant_id, member_id=member.id, points=100,
                business_key=f"e{i}", expiry=members.Expiry.parse(f"{days}d"), now=NOW,
            )  # fmt: skip
        members.spend(
            session, tenant_id=brand.tenant_id, member_id=member.id, points=30,
            business_key="s", now=NOW,
        )  # fmt: skip
    with runtime.db.read_only() as session:
        soon = members.expiring_points(session, tenant_id=brand.tenant_id, now=NOW)
        other = members.expiring_points(session, tenant_id=brands[1].tenant_id, now=NOW)
    # The spend took 30 from the soonest lot: 70 + 100 expire within 30 days (30- and 31-day
    # lots end on the brand's day boundaries; the 31-day one is outside).
    assert soon == {"points": 170, "members": 1, "within_days": 30}
    assert other["points"] == 0


@pytest.mark.skipif(not PG_URL, reason="real concurrency needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_refreshes_count_once(runtime: Runtime, brands: list[Brand]) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            _activity(runtime, brands, seed=9, n=60)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def refresher() -> None:
        try:
            while not stop.is_set():
                members.refresh_member_rollups(runtime, batch_size=7)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresher) for _ in range(2)]
    for t in threads:
        t.start()
    writer()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    members.refresh_member_rollups(runtime)
    for brand in brands:
        assert _rolled(runtime, brand.tenant_id) == _direct(runtime, brand.tenant_id)
