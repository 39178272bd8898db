"""Tags, RFM segments and sleeping members, on a hand-built brand whose scan histories are known:
each member lands in the segment a brand manager would expect, reruns change nothing, automatic
tags follow their rules as members change, erased members never appear."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import members
from core.db import utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members import rfm, tags
from members.errors import MemberErasedError, TagNameTakenError, TagNotManualError
from members.models import Member, MemberTag, RfmScore, Tier
from members.segments import Calendar
from tests.conftest import PG_URL
from tests.factories import make_brand

# Noon of today in Shanghai: the API computes segments at the real time, on the same local day.
T0 = Calendar(utcnow(), "Asia/Shanghai").midnight(Calendar(utcnow(), "Asia/Shanghai").today)
T0 += dt.timedelta(hours=12)
YEAR = members.Expiry.parse("never")
ONE_DAY = dt.timedelta(days=1)
_serial = itertools.count(1)


def days_ago(n: float) -> dt.datetime:
    return T0 - dt.timedelta(days=n)


@dataclass
class World:
    tenant_id: int
    other_tenant_id: int
    ids: dict[str, int]


def scan(session: object, tenant_id: int, member_id: int, when: dt.datetime, points: int) -> str:
    key = members.scan_key(1, next(_serial))
    members.earn(
        session,  # type: ignore[arg-type]
        tenant_id=tenant_id,
        member_id=member_id,
        points=points,
        business_key=key,
        expiry=YEAR,
        now=when,
        once_per_key=True,
    )
    return key


def member(session: object, tenant_id: int, *, joined: float = 400, **profile: object) -> int:
    m = members.create_member(session, tenant_id=tenant_id)  # type: ignore[arg-type]
    m.created_at = days_ago(joined)
    m.phone_masked = f"138****{m.id:04d}"
    for name, value in profile.items():
        setattr(m, name, value)
    session.flush()  # type: ignore[attr-defined]
    return m.id


@pytest.fixture
def world(runtime: Runtime) -> World:
    """Scored members (R / F / M scores worked out by hand in the comments):

    ====  ==============================  =======  ===  ===  ===  ==================
    who   rewarded scans in the window    recency  R    F    M    segment
    ====  ==============================  =======  ===  ===  ===  ==================
    A     10 x 100 pts, 1-10 days ago     1        5    5    5    important_value
    B     1 x 2000 pts, 200 days ago      200      1    1    5    important_retain
    C     1 x 5 pts 2 days ago (+1 reversed) 2     5    1    1    general_develop
    D     1 x 5 pts 150 days ago (+1 at 500) 150   2    1    1    general_retain, sleeping
    E     6 x 10 pts, 100-105 days ago    100      3    5    4    important_keep
    I     2 x 20 pts, 60-61 days ago      60       4    4    3    general_value, churn risk
    ====  ==============================  =======  ===  ===  ===  ==================

    Means: R 3.33, F 2.83, M 3.17. F (joined 200 days ago) and G (joined yesterday) never
    scanned; H is erased.
    """
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10)
        other = make_brand(session, runtime, slug="rival", quantity=10)
        t = brand.tenant_id
        born_36_years_ago = Calendar(T0, "Asia/Shanghai").years_ago(36)
        silver = Tier(tenant_id=t, rank=1, name="银卡", name_en="Silver")
        session.add(silver)
        session.flush()
        ids = {
            "A": member(session, t, region="CN-ZJ/杭州市", gender="female", growth=800),
            "B": member(session, t, region="CN-ZJ", birthday=born_36_years_ago),
            "C": member(session, t, region="CN-ZJX", birthday=born_36_years_ago + ONE_DAY),
            "D": member(session, t, region="CN-SH", tier_id=silver.id),
            "E": member(session, t, channel="wechat"),
            "I": member(session, t, source="referral"),
            "F": member(session, t, joined=200),
            "G": member(session, t, joined=1),
            "H": member(session, t, region="CN-ZJ/杭州市"),
        }
        for n in range(1, 11):
            scan(session, t, ids["A"], days_ago(n), 100)
        scan(session, t, ids["B"], days_ago(200), 2000)
        scan(session, t, ids["C"], days_ago(2), 5)
        fraud = scan(session, t, ids["C"], days_ago(3), 50)
        members.reverse(session, tenant_id=t, original_key=fraud, reason="fraud", now=days_ago(2))
        scan(session, t, ids["D"], days_ago(150), 5)
        scan(session, t, ids["D"], days_ago(500), 1000)  # outside the 365-day window
        for n in range(100, 106):
            scan(session, t, ids["E"], days_ago(n), 10)
        scan(session, t, ids["I"], days_ago(60), 20)
        scan(session, t, ids["I"], days_ago(61), 20)
        for n in range(1, 6):
            scan(session, t, ids["H"], days_ago(n), 500)
        session.get(Member, ids["H"]).status = "erased"  # type: ignore[union-attr]
        ids["X"] = member(session, other.tenant_id)
        scan(session, other.tenant_id, ids["X"], days_ago(5), 10)
        return World(t, other.tenant_id, ids)


def rows(runtime: Runtime) -> dict[int, RfmScore]:
    with runtime.db.read_only() as session:
        return {r.member_id: r for r in session.scalars(select(RfmScore))}


def test_members_land_in_the_segments_their_scans_earn(runtime: Runtime, world: World) -> None:
    run = rfm.compute_rfm(runtime, now=T0)
    assert run.tenants == 2 and run.members == 9  # 8 live members + the rival's one
    got = rows(runtime)
    ids = world.ids
    by = {name: got[ids[name]] for name in "ABCDEIFG"}
    assert ids["H"] not in got  # erased: never scored
    expect = {
        "A": ("important_value", 5, 5, 5, 1, 10, 1000),
        "B": ("important_retain", 1, 1, 5, 200, 1, 2000),
        "C": ("general_develop", 5, 1, 1, 2, 1, 5),
        "D": ("general_retain", 2, 1, 1, 150, 1, 5),
        "E": ("important_keep", 3, 5, 4, 100, 6, 60),
        "I": ("general_value", 4, 4, 3, 60, 2, 40),
    }
    for name, (segment, r, f, m, recency, frequency, monetary) in expect.items():
        row = by[name]
        assert (row.segment, row.r, row.f, row.m) == (segment, r, f, m), name
        assert (row.recency_days, row.frequency, row.monetary) == (recency, frequency, monetary)
    assert by["A"].last_scan_at == days_ago(1)
    assert [n for n in "ABCDEIFG" if by[n].sleeping] == ["B", "D", "E", "F"]
    # Never scanned: not scored, counted among those to win back; sleeping only if joined long ago.
    for name in "FG":
        assert (by[name].segment, by[name].r, by[name].frequency) == ("general_retain", 0, 0)
        assert by[name].last_scan_at is None
    assert got[ids["X"]].segment == "important_value"  # alone in its brand: every score >= mean

    with runtime.db.read_only() as session:
        summary = rfm.segment_summary(session, tenant_id=world.tenant_id)
    counts = {s["segment"]: s["members"] for s in summary["segments"]}
    assert counts == {
        "important_value": 1,
        "important_keep": 1,
        "important_develop": 0,
        "important_retain": 1,
        "general_value": 1,
        "general_keep": 0,
        "general_develop": 1,
        "general_retain": 3,
    }
    assert summary["segments"][0]["zh"] == "重要价值"
    assert (summary["members"], summary["scored"], summary["not_scored"]) == (8, 6, 2)
    assert (summary["sleeping"], summary["churn_risk"]) == (4, 1)  # churn risk: I (60 of 90 days)
    assert {t["name"]: t["members"] for t in summary["tiers"]} == {None: 7, "银卡": 1}
    assert summary["means"]["r"] == pytest.approx(3.333, abs=0.001)


def test_a_rerun_changes_nothing_and_follows_time_and_erasure(
    runtime: Runtime, world: World
) -> None:
    rfm.compute_rfm(runtime, tenant_id=world.tenant_id, now=T0)
    first = {k: _values(v) for k, v in rows(runtime).items()}
    rfm.compute_rfm(runtime, tenant_id=world.tenant_id, now=T0)
    assert {k: _values(v) for k, v in rows(runtime).items()} == first
    # The other brand was not asked for.
    assert world.ids["X"] not in first

    with runtime.db.unit_of_work() as session:
        session.get(Member, world.ids["A"]).status = "erased"  # type: ignore[union-attr]
        rfm.compute_rfm(session, tenant_id=world.tenant_id, now=T0 + dt.timedelta(days=30))
    later = rows(runtime)
    assert world.ids["A"] not in later
    assert later[world.ids["C"]].recency_days == 32
    assert later[world.ids["I"]].sleeping is True  # 90 days idle now


def _values(row: RfmScore) -> tuple[object, ...]:
    return tuple(getattr(row, c.key) for c in RfmScore.__table__.columns)


def test_members_in_pages_and_filters(runtime: Runtime, world: World) -> None:
    rfm.compute_rfm(runtime, now=T0)
    with runtime.db.read_only() as session:
        retain = rfm.members_in(session, tenant_id=world.tenant_id, segment="general_retain")
        assert [m.id for m in retain] == sorted(world.ids[n] for n in "DFG")
        sleeping = rfm.members_in(session, tenant_id=world.tenant_id, sleeping=True, limit=2)
        assert [m.id for m in sleeping] == [world.ids["B"], world.ids["D"]]
        rest = rfm.members_in(
            session, tenant_id=world.tenant_id, sleeping=True, after=sleeping[-1].id, limit=2
        )
        assert [m.id for m in rest] == [world.ids["E"], world.ids["F"]]
        everyone = rfm.members_in(session, tenant_id=world.tenant_id, limit=200)
        assert world.ids["H"] not in {m.id for m in everyone} and len(everyone) == 8
        with pytest.raises(ValidationFailedError):
            rfm.members_in(session, tenant_id=world.tenant_id, segment="vip")
        a = rfm.rfm_of(session, world.ids["A"])
        assert a is not None and a.segment == "important_value"


def test_export_streams_masked_phones_without_erased_members(
    runtime: Runtime, world: World
) -> None:
    rfm.compute_rfm(runtime, now=T0)
    chunks = list(rfm.export_csv(runtime, tenant_id=world.tenant_id, chunk=3))
    body = b"".join(chunks)
    assert body.startswith("\ufeff".encode()) and len(chunks) > 3  # streamed in pages
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("member_id,phone,tier,segment,segment_zh,r,f,m")
    assert len(lines) == 9
    first = lines[1].split(",")
    assert first[1] == f"138****{world.ids['A']:04d}" and first[4] == "重要价值"
    yesterday_noon = (T0 - ONE_DAY).astimezone(ZoneInfo("Asia/Shanghai"))
    assert first[11] == yesterday_noon.isoformat()  # the brand's time: ...T12:00:00+08:00


# --- tags ---------------------------------------------------------------------------------------


def auto(
    runtime: Runtime, world: World, rule: dict[str, object], now: dt.datetime = T0
) -> set[str]:
    """Create an automatic tag with ``rule``; the names of the members it tags."""
    with runtime.db.unit_of_work() as session:
        tag = tags.create_tag(
            session,
            tenant_id=world.tenant_id,
            name=f"t{next(_serial)}",
            kind="auto",
            rule=rule,
            now=now,
        )
        return tagged(session, world, tag.id)


def tagged(session: object, world: World, tag_id: int) -> set[str]:
    found = set(
        session.scalars(  # type: ignore[attr-defined]
            select(MemberTag.member_id).where(MemberTag.tag_id == tag_id)
        )
    )
    return {name for name, i in world.ids.items() if i in found}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"all": [{"field": "region", "prefix": "CN-ZJ"}]}, {"A", "B"}),
        ({"all": [{"field": "region", "prefix": ["CN-SH", "CN-ZJX"]}]}, {"C", "D"}),
        ({"all": [{"field": "age", "min": 36}]}, {"B"}),  # B turns 36 today, C tomorrow
        ({"all": [{"field": "age", "max": 35}]}, {"C"}),
        (
            {"any": [{"field": "gender", "values": ["female"]}, {"field": "tier_rank", "min": 1}]},
            {"A", "D"},
        ),
        ({"all": [{"field": "source", "values": ["referral"]}]}, {"I"}),
        ({"all": [{"field": "channel", "values": ["wechat"]}]}, {"E"}),
        ({"all": [{"field": "scans", "days": 30, "min": 2}]}, {"A"}),  # C's second was reversed
        ({"all": [{"field": "scans", "days": 365, "min": 1, "max": 2}]}, {"B", "C", "D", "I"}),
        ({"all": [{"field": "points", "min": 1000}]}, {"A", "B", "D"}),
        ({"all": [{"field": "days_since_scan", "min": 90}]}, {"B", "D", "E", "F"}),
        ({"all": [{"field": "days_since_scan", "max": 2}]}, {"A", "C", "G"}),
        ({"all": [{"field": "growth", "min": 500}]}, {"A"}),
        ({"all": [{"field": "joined_within_days", "days": 7}]}, {"G"}),
    ],
)
def test_automatic_tags_match_their_rule(
    runtime: Runtime, world: World, rule: dict[str, Any], expected: set[str]
) -> None:
    assert auto(runtime, world, rule) == expected  # H (erased) matches some, and is never tagged


def test_automatic_tags_follow_members_and_reruns_change_nothing(
    runtime: Runtime, world: World
) -> None:
    rule: dict[str, Any] = {"all": [{"field": "scans", "days": 30, "min": 2}]}
    assert auto(runtime, world, rule) == {"A"}
    with runtime.db.unit_of_work() as session:
        again = tags.evaluate_tags(session, tenant_id=world.tenant_id, now=T0)
        assert (again.tags, again.added, again.removed) == (1, 0, 0)
    later = T0 + dt.timedelta(days=40)  # A's scans age out; G scans twice meanwhile
    with runtime.db.unit_of_work() as session:
        for n in (1, 2):
            scan(session, world.tenant_id, world.ids["G"], later - dt.timedelta(hours=n), 10)
    with runtime.db.unit_of_work() as session:
        done = tags.evaluate_tags(session, now=later)
        assert (done.added, done.removed) == (1, 1)
        (tag,) = tags.list_tags(session, tenant_id=world.tenant_id)
        assert tagged(session, world, tag.id) == {"G"} and tag.members == 1
        assert tag.evaluated_at == later


def test_rules_are_validated_with_the_field_named(runtime: Runtime, world: World) -> None:
    bad = [
        ({"all": [{"field": "scans", "days": 0, "min": 1}]}, "rule.all.0.scans.days"),
        ({"all": [{"field": "income", "min": 1}]}, "rule.all.0"),
        ({"all": [{"field": "growth"}]}, "rule.all.0.growth"),
        ({"all": [{"field": "age", "min": 40, "max": 30}]}, "rule.all.0.age"),
        ({"all": [], "any": []}, "rule.all"),
        (
            {
                "all": [{"field": "gender", "values": ["female"]}],
                "any": [{"field": "gender", "values": ["male"]}],
            },
            "rule",
        ),
        ({"all": [{"field": "region", "prefix": "zj"}]}, "rule.all.0.region.prefix"),
        ("DROP TABLE members_members", "rule"),
    ]
    for rule, field in bad:
        with pytest.raises(ValidationFailedError) as caught, runtime.db.unit_of_work() as session:
            tags.create_tag(session, tenant_id=world.tenant_id, name="x", kind="auto", rule=rule)
        assert field in caught.value.errors, (rule, caught.value.errors)


def test_manual_tags_are_idempotent_and_refuse_auto_tags_and_erased_members(
    runtime: Runtime, world: World
) -> None:
    a, h = world.ids["A"], world.ids["H"]
    with runtime.db.unit_of_work() as session:
        vip = tags.create_tag(session, tenant_id=world.tenant_id, name="VIP 客户")
        rule = {"all": [{"field": "growth", "min": 1}]}
        robot = tags.create_tag(
            session, tenant_id=world.tenant_id, name="young", kind="auto", rule=rule
        )
        assert tags.tag_member(session, tenant_id=world.tenant_id, member_id=a, tag_id=vip.id)
        assert not tags.tag_member(session, tenant_id=world.tenant_id, member_id=a, tag_id=vip.id)
        assert [t.name for t in tags.tags_of(session, a)] == ["VIP 客户", "young"]
        with pytest.raises(TagNotManualError):
            tags.tag_member(session, tenant_id=world.tenant_id, member_id=a, tag_id=robot.id)
        with pytest.raises(MemberErasedError):
            tags.tag_member(session, tenant_id=world.tenant_id, member_id=h, tag_id=vip.id)
        with pytest.raises(members.MemberNotFoundError):
            tags.tag_member(
                session, tenant_id=world.tenant_id, member_id=world.ids["X"], tag_id=vip.id
            )
        assert tags.untag_member(session, tenant_id=world.tenant_id, member_id=a, tag_id=vip.id)
        assert not tags.untag_member(session, tenant_id=world.tenant_id, member_id=a, tag_id=vip.id)


def test_the_calendar_counts_local_days() -> None:
    cal = Calendar(dt.datetime(2026, 11, 21, 16, 30, tzinfo=dt.UTC), "Asia/Shanghai")
    assert cal.today == dt.date(2026, 11, 22)  # 00:30 the next day in Shanghai
    assert cal.since(1) == dt.datetime(2026, 11, 21, 16, 0, tzinfo=dt.UTC)
    assert cal.since(30) == dt.datetime(2026, 10, 23, 16, 0, tzinfo=dt.UTC)
    leap = Calendar(dt.datetime(2028, 2, 29, 4, tzinfo=dt.UTC), "UTC")
    assert leap.years_ago(1) == dt.date(2027, 2, 28)


@pytest.mark.skipif(PG_URL is None, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_staff_naming_a_tag_alike_at_once_get_one_tag_and_a_409(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        tenant_id = make_brand(session, runtime, quantity=1).tenant_id
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def create() -> None:
        start.wait()
        try:
            with runtime.db.unit_of_work() as session:
                tags.create_tag(session, tenant_id=tenant_id, name="VIP")
            outcomes.append("created")
        except TagNameTakenError:
            outcomes.append("taken")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["taken"] * 5
