"""The loyalty API as a brand's console and a member's phone use it: the tier ladder and the
programme (validated, audited, scoped to the brand, read-only for analysts), my tier and what
the next one needs, daily check-in, my referral link."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

import console
import members
import members.settings
import scan_service
from core import services as core_services
from core.models import AuditEntry
from core.runtime import Runtime
from members.models import PointsEntry
from members.sessions import open_session
from members.tiers import add_growth, check_upgrade
from tests.factories import Brand, make_brand

Call = Any

SILVER = {
    "rank": 1,
    "name": "银卡",
    "name_en": "Silver",
    "min_growth": 100,
    "upgrade_gift_points": 50,
    "benefits": {"points_multiplier": 1.2, "free_shipping": False},
}
GOLD = {
    "rank": 2,
    "name": "金卡",
    "min_growth": 500,
    "min_spend": 300,
    "benefits": {"points_multiplier": 1.5, "discount_rate": 0.95, "free_shipping": True},
}


@pytest.fixture(autouse=True)
def _fresh_programme_cache() -> Iterator[None]:
    members.settings._cache.clear()
    yield
    members.settings._cache.clear()


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


@pytest.fixture
def rival(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, slug="rival", quantity=10)


def console_client(token: str) -> Iterator[Call]:
    with console.create_app().test_client() as http:
        headers = {"Authorization": f"Bearer {token}"}

        def call(method: str, path: str, **kw: Any) -> Any:
            return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

        yield call


@pytest.fixture
def api(runtime: Runtime, brand: Brand) -> Iterator[Call]:
    yield from console_client(brand.admin_token)


def key(runtime: Runtime, brand: Brand, role: str) -> str:
    with runtime.db.unit_of_work() as session:
        return core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name=role, role=role
        ).token


def ladder(api: Call) -> dict[str, int]:
    ids: dict[str, int] = {}
    for spec in ({"rank": 0, "name": "普通"}, SILVER, GOLD):
        made = api("POST", "/tiers", json=spec)
        assert made.status_code == 201, made.get_json()
        ids[str(spec["name"])] = made.get_json()["id"]
    return ids


def audits(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.db.read_only() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# --- management -------------------------------------------------------------------------------


def test_a_brand_builds_its_ladder_and_reads_it_back(
    runtime: Runtime, brand: Brand, api: Call
) -> None:
    ids = ladder(api)
    listed = api("GET", "/tiers").get_json()["items"]
    assert [(t["rank"], t["name"], t["members"]) for t in listed] == [
        (0, "普通", 0),
        (1, "银卡", 0),
        (2, "金卡", 0),
    ]
    gold = api("GET", f"/tiers/{ids['金卡']}").get_json()
    assert gold["benefits"] == {
        "points_multiplier": 1.5,
        "discount_rate": 0.95,
        "free_shipping": True,
        "birthday_points": 0,
        "priority_service": False,
    }
    assert gold["qualify"] == "any" and gold["min_spend"] == 300
    changed = api(
        "PATCH",
        f"/tiers/{ids['金卡']}",
        json={"min_spend": None, "benefits": {"birthday_points": 88}},
    )
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert body["min_spend"] is None and body["min_growth"] == 500
    assert body["benefits"]["birthday_points"] == 88 and body["benefits"]["free_shipping"]
    assert len(audits(runtime, "members.tier.create")) == 3
    assert audits(runtime, "members.tier.update")[0].detail == {
        "min_spend": None,
        "benefits": {"birthday_points": 88},
    }
    assert api("DELETE", f"/tiers/{ids['金卡']}").status_code == 204
    assert api("GET", f"/tiers/{ids['金卡']}").status_code == 404
    assert [t["name"] for t in api("GET", "/tiers").get_json()["items"]] == ["普通", "银卡"]
    assert len(audits(runtime, "members.tier.delete")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rank": 3, "name": "钻石", "min_growth": 400}, "min_growth"),  # below 金卡's 500
        ({"rank": 3, "name": "钻石"}, "min_growth"),
        (
            {"rank": 3, "name": "钻石", "min_growth": 900, "benefits": {"points_multiplier": 50}},
            "benefits.points_multiplier",
        ),
        ({"rank": 3, "name": "钻石", "min_growth": 900, "perks": ["lounge"]}, "perks"),
        ({"rank": 3, "name": "钻石", "min_growth": 900, "benefits": {"spa": True}}, "benefits.spa"),
        ({"rank": 1, "name": "钻石", "min_growth": 900}, "rank"),
        ({"rank": 3, "name": "银卡", "min_growth": 900}, "name"),
        ({"rank": "high", "name": "钻石"}, "rank"),
    ],
)
def test_a_tier_that_does_not_fit_is_a_422_naming_the_field(
    runtime: Runtime, api: Call, body: dict[str, Any], field: str
) -> None:
    ladder(api)
    refused = api("POST", "/tiers", json=body)
    assert refused.status_code == 422, refused.get_json()
    problem = refused.get_json()
    assert refused.content_type == "application/problem+json"
    assert field in problem["errors"], problem
    assert len(api("GET", "/tiers").get_json()["items"]) == 3


def test_patches_that_break_the_ladder_are_refused(runtime: Runtime, api: Call) -> None:
    ids = ladder(api)
    lowered = api("PATCH", f"/tiers/{ids['金卡']}", json={"min_growth": 50})
    assert lowered.status_code == 422 and "min_growth" in lowered.get_json()["errors"]
    unknown = api("PATCH", f"/tiers/{ids['金卡']}", json={"colour": "gold"})
    assert unknown.status_code == 422 and "colour" in unknown.get_json()["errors"]
    stripped = api("PATCH", f"/tiers/{ids['银卡']}", json={"min_growth": None})
    assert stripped.status_code == 422  # rank 1 with no threshold left
    assert api("GET", f"/tiers/{ids['金卡']}").get_json()["min_growth"] == 500


def test_another_brand_tier_is_not_found(
    runtime: Runtime, brand: Brand, rival: Brand, api: Call
) -> None:
    ids = ladder(api)
    for their in console_client(rival.admin_token):
        for method, body in (("GET", None), ("PATCH", {"name": "偷"}), ("DELETE", None)):
            answer = their(method, f"/tiers/{ids['银卡']}", json=body)
            assert answer.status_code == 404, (method, answer.get_json())
            assert answer.get_json()["code"] == "tier_not_found"
        assert their("GET", "/tiers").get_json()["items"] == []
    assert api("GET", f"/tiers/{ids['银卡']}").get_json()["name"] == "银卡"


def test_an_analyst_reads_but_cannot_write(runtime: Runtime, brand: Brand, api: Call) -> None:
    ids = ladder(api)
    for analyst in console_client(key(runtime, brand, "analyst")):
        assert analyst("GET", "/tiers").status_code == 200
        assert analyst("GET", "/members/programme").status_code == 200
        for method, path, body in (
            ("POST", "/tiers", {"rank": 3, "name": "钻石", "min_growth": 900}),
            ("PATCH", f"/tiers/{ids['银卡']}", {"min_growth": 120}),
            ("DELETE", f"/tiers/{ids['银卡']}", None),
            ("PUT", "/members/programme", {"checkin_points": 5}),
        ):
            refused = analyst(method, path, json=body)
            assert refused.status_code == 403, (method, path)
    for operator in console_client(key(runtime, brand, "factory_operator")):
        assert operator("GET", "/tiers").status_code == 403
    assert api("GET", f"/tiers/{ids['银卡']}").get_json()["min_growth"] == 100


def test_a_tier_members_hold_cannot_be_deleted(runtime: Runtime, brand: Brand, api: Call) -> None:
    ids = ladder(api)
    with runtime.db.unit_of_work() as session:
        m = members.create_member(session, tenant_id=brand.tenant_id).id
        add_growth(
            session,
            tenant_id=brand.tenant_id,
            member_id=m,
            points=150,
            business_key="g1",
            reason="scan",
        )
        check_upgrade(session, runtime, tenant_id=brand.tenant_id, member_id=m)
    refused = api("DELETE", f"/tiers/{ids['银卡']}")
    assert refused.status_code == 409 and refused.get_json()["code"] == "tier_in_use"
    assert api("GET", "/tiers").get_json()["items"][1]["members"] == 1
    history = api("GET", f"/members/{m}/tier-changes").get_json()
    assert [(c["from_tier"], c["to_tier"]["name"], c["reason"]) for c in history["items"]] == [
        (None, "银卡", "upgrade")
    ]
    assert history["next_after"] is None
    assert api("GET", "/members/999999/tier-changes").status_code == 404


def test_the_programme_is_changed_in_part_validated_and_audited(
    runtime: Runtime, brand: Brand, api: Call
) -> None:
    before = api("GET", "/members/programme").get_json()
    assert before["downgrade"] == "one_step" and before["tier_review_days"] == 365
    changed = api(
        "PUT",
        "/members/programme",
        json={"checkin_points": 3, "checkin_streak_bonus": {"7": 30}, "downgrade": "never"},
    )
    assert changed.status_code == 200, changed.get_json()
    after = api("GET", "/members/programme").get_json()
    assert after["checkin_points"] == 3 and after["downgrade"] == "never"
    assert after["checkin_streak_bonus"] == {"7": 30}
    assert after["scan_points"] == before["scan_points"]
    for bad, field in (
        ({"downgrade": "sometimes"}, "downgrade"),
        ({"tier_review_days": 0}, "tier_review_days"),
        ({"loyalty_magic": 1}, "loyalty_magic"),
        ({"referral_points": [1, 2, 3]}, "referral_points"),
    ):
        refused = api("PUT", "/members/programme", json=bad)
        assert refused.status_code == 422, bad
        assert any(k.startswith(field) for k in refused.get_json()["errors"]), refused.get_json()
    assert api("GET", "/members/programme").get_json() == after
    logged = audits(runtime, "members.programme")
    assert len(logged) == 1 and logged[0].detail["checkin_points"] == 3


def test_the_console_spec_documents_the_loyalty_routes(runtime: Runtime, api: Call) -> None:
    spec = api("GET", "/openapi.json")
    assert spec.status_code == 200
    paths = spec.get_json()["paths"]
    assert {"/api/v1/tiers", "/api/v1/tiers/{tier_id}", "/api/v1/members/programme"} <= set(paths)


# --- consumer ---------------------------------------------------------------------------------


@pytest.fixture
def phone(runtime: Runtime, brand: Brand) -> Iterator[tuple[Call, int]]:
    with runtime.db.unit_of_work() as session:
        member = members.create_member(session, tenant_id=brand.tenant_id)
        member.referral_code = "YM7K2Q"
        member.birthday = dt.date(1990, 5, 1)
        token = open_session(session, tenant_id=brand.tenant_id, member_id=member.id)
        member_id = member.id
    # No ``with``: the console's client may be open at the same time.
    http = scan_service.create_app().test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kw: Any) -> Any:
        return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    yield call, member_id


def test_my_tier_shows_progress_and_what_the_next_tier_needs(
    runtime: Runtime, brand: Brand, api: Call, phone: tuple[Call, int]
) -> None:
    me, member_id = phone
    no_ladder = me("GET", "/me/tier").get_json()
    assert no_ladder["tier"] is None and no_ladder["next"] is None
    assert no_ladder["benefits"]["points_multiplier"] == 1.0
    ladder(api)
    with runtime.db.unit_of_work() as session:
        add_growth(
            session,
            tenant_id=brand.tenant_id,
            member_id=member_id,
            points=130,
            business_key="scan-growth:1:1",
            reason="scan",
        )
        check_upgrade(session, runtime, tenant_id=brand.tenant_id, member_id=member_id)
    answer = me("GET", "/me/tier")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["tier"]["name"] == "银卡"
    assert body["next"]["name"] == "金卡" and body["next"]["qualify"] == "any"
    assert body["next"]["need"] == {"growth": 370, "spend": 300}
    assert body["progress"] == {"growth": 130, "spend": 0, "scans": 0}
    assert body["benefits"]["points_multiplier"] == 1.2
    assert body["window_days"] == 365
    review = dt.datetime.fromisoformat(body["review_at"])
    assert dt.timedelta(days=364) < review - dt.datetime.now(dt.UTC) <= dt.timedelta(days=365)


def test_a_member_checks_in_once_a_day(
    runtime: Runtime, brand: Brand, phone: tuple[Call, int]
) -> None:
    me, member_id = phone
    first = me("POST", "/me/check-ins")
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["streak"] == 1 and first.get_json()["points"] == 1
    again = me("POST", "/me/check-ins")
    assert again.status_code == 409 and again.get_json()["code"] == "already_checked_in"
    month = me("GET", "/me/check-ins").get_json()
    assert month == {"days": [first.get_json()["day"]], "streak": 1}
    assert me("GET", "/me/check-ins?month=2020-01").get_json() == {"days": [], "streak": 1}
    for bad in ("2026-13", "26-11", "november"):
        refused = me("GET", f"/me/check-ins?month={bad}")
        assert refused.status_code == 422 and "month" in refused.get_json()["errors"]
    with runtime.db.read_only() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(PointsEntry)
                .where(PointsEntry.member_id == member_id)
            )
            == 1
        )


def test_my_referral_link_and_what_it_earned(
    runtime: Runtime, brand: Brand, phone: tuple[Call, int]
) -> None:
    me, member_id = phone
    with runtime.db.unit_of_work() as session:
        for _ in range(2):
            friend = members.create_member(session, tenant_id=brand.tenant_id)
            friend.referrer_id = member_id
            session.flush()
            members.engagement.reward_referral(
                session, runtime, tenant_id=brand.tenant_id, member_id=friend.id
            )
    answer = me("GET", "/me/referral")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "code": "YM7K2Q",
        "link": "https://yima.example.com/m/invite/YM7K2Q?brand=acme",
        "invited": 2,
        "points_earned": 100,
    }


def test_the_loyalty_routes_need_a_signed_in_member(runtime: Runtime, brand: Brand) -> None:
    with scan_service.create_app().test_client() as http:
        for method, path in (
            ("GET", "/me/tier"),
            ("POST", "/me/check-ins"),
            ("GET", "/me/check-ins"),
            ("GET", "/me/referral"),
        ):
            answer = http.open(f"/api/v1{path}", method=method)
            assert answer.status_code == 401, path
