"""The tags and segments API as a brand's member team uses it from the console."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

import console
from core import services as core_services
from core.models import AuditEntry
from core.runtime import Runtime
from tests.factories import make_brand
from tests.members.test_segments import T0, World, world  # noqa: F401 (fixture)

Call = Any


def client(token: str) -> Iterator[Call]:
    with console.create_app().test_client() as http:
        headers = {"Authorization": f"Bearer {token}"}

        def call(method: str, path: str, **kw: Any) -> Any:
            return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

        yield call


def token_for(runtime: Runtime, tenant_id: int, role: str) -> str:
    with runtime.db.unit_of_work() as session:
        return core_services.create_api_key(
            session, tenant_id=tenant_id, name=role, role=role
        ).token


@pytest.fixture
def api(runtime: Runtime, world: World) -> Iterator[Call]:  # noqa: F811
    yield from client(token_for(runtime, world.tenant_id, "admin"))


def audited(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.db.read_only() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_brand_computes_segments_and_pages_through_them(
    runtime: Runtime,
    world: World,  # noqa: F811
    api: Call,
) -> None:
    before = api("GET", "/segments")
    assert before.status_code == 200 and before.get_json()["computed_at"] is None
    assert before.get_json()["not_computed"] == 8

    done = api("POST", "/segments/compute")
    assert done.status_code == 200 and done.get_json()["members"] == 8
    summary = api("GET", "/segments").get_json()
    value = summary["segments"][0]
    assert value == {
        "segment": "important_value",
        "zh": "重要价值",
        "en": "Important value",
        "members": 1,
    }
    assert (summary["sleeping"], summary["churn_risk"], summary["not_computed"]) >= (1, 0, 0)

    page = api("GET", "/segments/members?segment=general_retain&limit=2")
    assert page.status_code == 200
    body = page.get_json()
    assert len(body["items"]) == 2 and body["next_after"] == body["items"][-1]["id"]
    assert body["items"][0]["phone"].startswith("138****")
    assert body["items"][0]["segment_zh"] == "一般挽留"
    rest = api("GET", f"/segments/members?segment=general_retain&after={body['next_after']}")
    assert rest.get_json()["next_after"] is None
    assert api("GET", "/segments/members?segment=vip").status_code == 422
    bad = api("GET", "/segments/members?sleeping=maybe")
    assert bad.status_code == 422 and "sleeping" in bad.get_json()["errors"]
    assert api("GET", "/segments/members?tier_id=999").status_code == 404


def test_export_parses_back_with_masked_phones_and_is_audited(
    runtime: Runtime,
    world: World,  # noqa: F811
    api: Call,
) -> None:
    assert api("POST", "/segments/compute").status_code == 200
    got = api("GET", "/segments/export.csv?sleeping=true")
    assert got.status_code == 200 and got.mimetype == "text/csv"
    raw = got.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    ids = {int(r["member_id"]) for r in rows}
    assert ids == {world.ids[n] for n in "BDEF"}
    assert all(r["phone"].startswith("138****") and len(r["phone"]) == 11 for r in rows)
    assert world.ids["H"] not in ids
    everyone = api("GET", "/segments/export.csv").get_data().decode("utf-8-sig")
    assert str(world.ids["H"]) not in {line.split(",")[0] for line in everyone.splitlines()}
    (first, second) = audited(runtime, "members.segment.export")
    assert first.detail == {
        "filters": {"segment": None, "tag_id": None, "tier_id": None, "sleeping": True},
        "rows": 4,
    }
    assert second.detail["rows"] == 8


def test_tags_through_the_api(runtime: Runtime, world: World, api: Call) -> None:  # noqa: F811
    made = api(
        "POST",
        "/tags",
        json={
            "name": "浙江老客",
            "kind": "auto",
            "rule": {
                "all": [
                    {"field": "region", "prefix": "CN-ZJ"},
                    {"field": "scans", "days": 365, "min": 1},
                ]
            },
        },
    )
    assert made.status_code == 201, made.get_json()
    auto = made.get_json()
    assert auto["members"] == 2 and auto["evaluated_at"] is not None  # A and B (H is erased)
    tagged = api("GET", f"/segments/members?tag_id={auto['id']}").get_json()["items"]
    assert [m["id"] for m in tagged] == [world.ids["A"], world.ids["B"]]

    bad = api(
        "POST",
        "/tags",
        json={
            "name": "x",
            "kind": "auto",
            "rule": {"all": [{"field": "scans", "days": -1, "min": 1}]},
        },
    )
    assert bad.status_code == 422 and "rule.all.0.scans.days" in bad.get_json()["errors"]
    assert api("POST", "/tags", json={"name": "y", "kind": "auto"}).status_code == 422
    taken = api("POST", "/tags", json={"name": "浙江老客"})
    assert taken.status_code == 409 and taken.get_json()["code"] == "tag_name_taken"

    vip = api("POST", "/tags", json={"name": "VIP"}).get_json()
    a = world.ids["A"]
    for _ in range(2):
        put = api("PUT", f"/members/{a}/tags/{vip['id']}")
        assert put.status_code == 200
    assert put.get_json() == {"member_id": a, "tag_id": vip["id"], "added": False}
    conflict = api("PUT", f"/members/{a}/tags/{auto['id']}")
    assert conflict.status_code == 409 and conflict.get_json()["code"] == "tag_not_manual"
    assert api("DELETE", f"/members/{a}/tags/{auto['id']}").status_code == 409
    assert api("PUT", f"/members/{world.ids['H']}/tags/{vip['id']}").status_code == 409
    listed = {t["name"]: t["members"] for t in api("GET", "/tags").get_json()["items"]}
    assert listed == {"浙江老客": 2, "VIP": 1}

    renamed = api(
        "PATCH",
        f"/tags/{auto['id']}",
        json={"rule": {"any": [{"field": "region", "prefix": "CN-SH"}]}},
    )
    assert renamed.status_code == 200 and renamed.get_json()["members"] == 1
    assert (
        api(
            "PATCH", f"/tags/{vip['id']}", json={"rule": {"any": [{"field": "growth", "min": 1}]}}
        ).status_code
        == 422
    )
    evaluated = api("POST", "/tags/evaluate")
    assert evaluated.get_json() == {"tags": 1, "added": 0, "removed": 0}

    assert api("DELETE", f"/members/{a}/tags/{vip['id']}").status_code == 204
    assert api("DELETE", f"/members/{a}/tags/{vip['id']}").status_code == 204
    assert api("DELETE", f"/tags/{vip['id']}").status_code == 204
    assert api("GET", "/tags").get_json()["items"][0]["name"] == "浙江老客"
    assert [e.detail["name"] for e in audited(runtime, "members.tag.create")] == ["浙江老客", "VIP"]
    assert len(audited(runtime, "members.member.tag")) == 1  # the second PUT changed nothing


def test_other_brands_and_roles_are_kept_out(
    runtime: Runtime,
    world: World,  # noqa: F811
    api: Call,
) -> None:
    vip = api("POST", "/tags", json={"name": "VIP"}).get_json()
    with runtime.db.unit_of_work() as session:
        third = make_brand(session, runtime, slug="third", quantity=10)
    (rival,) = client(third.admin_token)
    assert rival("PATCH", f"/tags/{vip['id']}", json={"name": "mine"}).status_code == 404
    assert rival("DELETE", f"/tags/{vip['id']}").status_code == 404
    assert rival("GET", f"/segments/members?tag_id={vip['id']}").status_code == 404
    assert rival("PUT", f"/members/{world.ids['A']}/tags/{vip['id']}").status_code == 404
    assert rival("GET", "/tags").get_json() == {"items": []}
    mine = rival("POST", "/tags", json={"name": "Mine"}).get_json()
    assert api("PUT", f"/members/{world.ids['A']}/tags/{mine['id']}").status_code == 404

    (factory,) = client(token_for(runtime, world.tenant_id, "factory_operator"))
    for method, path in (
        ("GET", "/tags"),
        ("GET", "/segments"),
        ("GET", "/segments/export.csv"),
        ("POST", "/segments/compute"),
    ):
        denied = factory(method, path)
        assert denied.status_code == 403, path
    (analyst,) = client(token_for(runtime, world.tenant_id, "analyst"))
    assert analyst("GET", "/segments").status_code == 200
    assert analyst("POST", "/tags", json={"name": "nope"}).status_code == 403
    assert analyst("POST", "/segments/compute").status_code == 403
