"""The dashboards' API: figures from the rollups, filters, CSV, 422s, roles, tenant isolation."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import anti_fraud
import codegen
import console
import members
import traceability
from anti_fraud.recording import insert_scan
from core import services as core_services
from core.runtime import Runtime
from tests.campaigns.helpers import live_campaign
from tests.factories import Brand, make_brand

DAY = dt.date(2026, 12, 2)  # the brand's local day (Asia/Shanghai) of the scans below
AT = dt.datetime(2026, 12, 2, 2, 30, tzinfo=dt.UTC)  # 10:30 in Shanghai
ZJ = {"country": "CN", "province": "浙江省", "city": "杭州市", "source": "gps", "precision": "city"}
JS = {"country": "CN", "province": "江苏省", "city": "南京市", "source": "gps", "precision": "city"}
PERIOD = f"from={DAY}&to={DAY}"


@dataclass
class World:
    brand: Brand
    other: Brand
    second_batch: int
    distributor: int
    keys: dict[str, str]


def _key(session: Any, tenant_id: int, role: str) -> tuple[str, int]:
    issued = core_services.create_api_key(session, tenant_id=tenant_id, name=role, role=role)
    return issued.token, issued.key.id


@pytest.fixture
def world(runtime: Runtime) -> World:
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, slug="acme", quantity=1000)
        other = make_brand(session, runtime, slug="bravo", quantity=100)
        second = codegen.create_batch(
            session, runtime=runtime, tenant_id=brand.tenant_id, product_id=brand.product_id,
            lot="L2026B", quantity=500, url_form="short",
        ).id  # fmt: skip
        keys = {"admin": brand.admin_token}
        for role in ("analyst", "factory_operator", "customer_service"):
            keys[role] = _key(session, brand.tenant_id, role)[0]
        dist = traceability.create_distributor(
            session, tenant_id=brand.tenant_id, code="ZJ-1", name="浙江总经销", level="provincial",
            regions=["CN-ZJ"],
        )  # fmt: skip
        keys["distributor"], key_id = _key(session, brand.tenant_id, "distributor")
        traceability.bind_api_key(session, distributor_id=dist.id, api_key_id=key_id)
        keys["unbound_distributor"] = _key(session, brand.tenant_id, "distributor")[0]
        traceability.record_activation(
            session, runtime, tenant_id=brand.tenant_id, action="activate", scope="range",
            ranges=[traceability.SerialRange(brand.batch_id, 1, 600)], operator="line",
        )  # fmt: skip
        scans = [
            (brand, brand.batch_id, "genuine", ZJ, dist.id, False, "p1"),
            (brand, brand.batch_id, "already_verified", ZJ, dist.id, False, "p2"),
            (brand, brand.batch_id, "genuine", JS, dist.id, True, "p3"),  # diverted to Jiangsu
            (brand, second, "suspicious", JS, None, None, "p1"),
            (brand, None, "counterfeit", JS, None, None, "p4"),
            (other, other.batch_id, "genuine", ZJ, None, None, "q1"),
        ]
        for i, (b, batch, verdict, place, distributor, diverted, device) in enumerate(scans):
            insert_scan(
                session, now=AT + dt.timedelta(minutes=i), tenant_id=b.tenant_id, batch_id=batch,
                serial=i + 1 if batch else None, verdict=verdict, signals=[], device=device,
                ip="10.0.0.1", user_agent=None, place=place, distributor_id=distributor,
                diverted=diverted,
            )  # fmt: skip
        member = members.create_member(session, tenant_id=brand.tenant_id)
        member.created_at = AT
        members.earn(
            session, tenant_id=brand.tenant_id, member_id=member.id, points=40, business_key="e",
            expiry=members.Expiry.parse("10d"), now=AT,
        )  # fmt: skip
        members.spend(
            session, tenant_id=brand.tenant_id, member_id=member.id, points=15,
            business_key="s", now=AT,
        )  # fmt: skip
    anti_fraud.refresh_scan_rollups(runtime)
    members.refresh_member_rollups(runtime)
    return World(brand, other, second, dist.id, keys)


@pytest.fixture
def get(runtime: Runtime, world: World) -> Iterator[Any]:
    with console.create_app().test_client() as client:

        def call(path: str, role: str = "admin") -> Any:
            headers = {"Authorization": f"Bearer {world.keys[role]}"}
            return client.get(f"/api/v1/dashboards/{path}", headers=headers)

        yield call


def test_overview_counts_scans_verdicts_scanners_and_members(get: Any, world: World) -> None:
    answer = get(f"overview?{PERIOD}")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["verdicts"] == {
        "scans": 5, "genuine": 2, "already_verified": 1, "suspicious": 1, "counterfeit": 1,
        "diverted": 1,
    }  # fmt: skip
    assert body["series"] == [{"start": "2026-12-02", **body["verdicts"]}]
    assert body["unique_scanners"] == 4
    assert body["members"]["totals"]["new_members"] == 1
    assert body["members"]["totals"]["points_earned"] == 40
    assert body["members"]["totals"]["points_spent"] == 15
    assert body["filters"]["timezone"] == "Asia/Shanghai"
    assert body["rollups"]["open_gaps"] == 0 and body["rollups"]["last_scan_id"] == 6
    assert dt.datetime.fromisoformat(body["rollups"]["updated_at"]).tzinfo is not None
    hourly = get(f"overview?{PERIOD}&interval=hour").get_json()
    assert len(hourly["series"]) == 24
    at_ten = [p for p in hourly["series"] if p["scans"]]
    assert [p["start"] for p in at_ten] == ["2026-12-02T10:00:00+08:00"]


def test_filters_narrow_every_figure(get: Any, world: World) -> None:
    sku = f"{world.brand.slug}-SKU-1"
    by_sku = get(f"overview?{PERIOD}&sku={sku}").get_json()
    assert by_sku["verdicts"]["scans"] == 4  # the forged code belongs to no product
    one = get(f"overview?{PERIOD}&batch_id={world.second_batch}").get_json()
    assert one["verdicts"]["scans"] == 1 and one["unique_scanners"] == 1
    both = get(f"overview?{PERIOD}&batch_id={world.brand.batch_id},{world.second_batch}")
    assert both.get_json()["verdicts"]["scans"] == 4
    js = get(f"overview?{PERIOD}&region=CN-JS").get_json()
    assert js["verdicts"]["scans"] == 3 and js["unique_scanners"] is None
    assert get(f"overview?{PERIOD}&region=CN-JS&interval=hour").status_code == 422
    empty = get("overview?from=2026-11-01&to=2026-11-30").get_json()
    assert empty["verdicts"]["scans"] == 0 and len(empty["series"]) == 30


def test_map_diversion_and_counterfeit_pages(get: Any, world: World) -> None:
    places = get(f"map?{PERIOD}").get_json()
    assert {p["province"]: p["scans"] for p in places["provinces"]} == {"CN-JS": 3, "CN-ZJ": 2}
    assert places["countries"] == [
        {"country": "CN", "scans": 5, "genuine": 2, "already_verified": 1, "suspicious": 1,
         "counterfeit": 1, "diverted": 1},
    ]  # fmt: skip
    diversion = get(f"diversion?{PERIOD}").get_json()["distributors"]
    assert diversion[0]["distributor_id"] == world.distributor
    assert diversion[0]["name"] == "浙江总经销"
    assert diversion[0]["diverted_scans"] == 1
    assert diversion[0]["places"] == [{"region": "CN-JS", "scans": 1}]
    fakes = get(f"counterfeit?{PERIOD}").get_json()
    assert fakes["places"][0] == {
        "country": "CN", "province": "CN-JS", "counterfeit": 1, "suspicious": 1,
    }  # fmt: skip
    assert fakes["auto_blacklisted"] == {"by_reason": {}, "entries": []}


def test_production_members_and_campaigns_pages(get: Any, world: World, runtime: Runtime) -> None:
    batches = {b["batch_id"]: b for b in get(f"production?{PERIOD}").get_json()["batches"]}
    assert batches[world.brand.batch_id]["issued"] == 1000
    assert batches[world.brand.batch_id]["activated"] == 600
    assert batches[world.brand.batch_id]["scans"] == 3
    assert batches[world.second_batch]["activated"] == 0
    assert world.other.batch_id not in batches
    people = get(f"members?{PERIOD}").get_json()
    assert people["members"] == 1
    assert people["growth"]["totals"]["new_members"] == 1
    assert people["points_liability"] == {"active": 25, "pending": 0}
    assert len(people["segments"]) == 8
    with runtime.db.unit_of_work() as session:
        campaign = live_campaign(session, runtime, world.brand)
    figures = get(f"campaigns?campaign_id={campaign.id}").get_json()["campaigns"]
    assert figures[0]["id"] == campaign.id
    assert figures[0]["draws"] == 0 and figures[0]["review_queue"] == 0
    assert {p["key"] for p in figures[0]["prizes"]} == {"cash", "p50", "mug", "thanks"}
    # A campaign filter cuts the period to its window: scans of 2 December fall outside it.
    cut = get(f"overview?from=2026-11-01&to={DAY}&campaign_id={campaign.id}").get_json()
    assert cut["filters"]["from"] == "2026-11-21" and cut["filters"]["to"] == "2026-12-01"
    assert cut["verdicts"]["scans"] == 0


def test_csv_exports(get: Any, world: World) -> None:
    for page, header in (
        ("overview", "start"),
        ("map", "country"),
        ("diversion", "distributor_id"),
        ("counterfeit", "country"),
        ("campaigns", "campaign_id"),
        ("members", "day"),
        ("production", "batch_id"),
    ):
        answer = get(f"{page}?{PERIOD}&format=csv")
        assert answer.status_code == 200, page
        assert answer.mimetype == "text/csv"
        assert f'filename="{page}-{DAY}-{DAY}.csv"' in answer.headers["Content-Disposition"]
        text = answer.get_data().decode("utf-8")
        assert text.startswith("\ufeff")
        rows = list(csv.reader(io.StringIO(text[1:])))
        assert rows[0][0] == header
    rows = list(
        csv.reader(io.StringIO(get(f"overview?{PERIOD}&format=csv").get_data(as_text=True)[1:]))
    )
    assert rows[1] == ["2026-12-02", "5", "2", "1", "1", "1", "1"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("from=2026-13-01", "from"),
        ("from=yesterday", "from"),
        ("to=0001-01-01", "to"),
        ("from=9999-12-31&to=2026-12-01", "from"),
        ("from=2026-12-05&to=2026-12-01", "to"),
        ("from=2024-01-01&to=2026-12-01", "to"),
        ("interval=week", "interval"),
        ("interval=hour&from=2026-10-01&to=2026-12-01", "interval"),
        ("sku=NOPE", "sku"),
        ("batch_id=abc", "batch_id"),
        ("batch_id=0", "batch_id"),
        ("batch_id=99999999999", "batch_id"),
        ("region=XX", "region"),
        ("region=CN-ZJ/杭州市", "region"),
        ("campaign_id=424242", "campaign_id"),
        ("format=xml", "format"),
        ("batch_id=" + ",".join(str(i) for i in range(1, 60)), "batch_id"),
    ],
)
def test_bad_filters_are_422_naming_the_field(get: Any, query: str, field: str) -> None:
    answer = get(f"overview?{query}")
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    assert field in answer.get_json()["errors"]


def test_another_brands_ids_are_unknown_and_its_scans_never_counted(get: Any, world: World) -> None:
    assert get(f"overview?batch_id={world.other.batch_id}").status_code == 422
    assert get(f"overview?sku={world.other.slug}-SKU-1").status_code == 422
    with console.create_app().test_client() as client:
        theirs = client.get(
            f"/api/v1/dashboards/overview?{PERIOD}",
            headers={"Authorization": f"Bearer {world.other.admin_token}"},
        ).get_json()
    assert theirs["verdicts"]["scans"] == 1 and theirs["unique_scanners"] == 1
    assert theirs["members"]["totals"]["new_members"] == 0


@pytest.mark.parametrize(
    "role, allowed",
    [
        (
            "analyst",
            {"overview", "map", "diversion", "counterfeit", "campaigns", "members", "production"},
        ),
        ("factory_operator", {"production"}),
        ("customer_service", {"members"}),
        ("distributor", {"diversion"}),
        ("unbound_distributor", set()),
    ],
)
def test_who_sees_which_page(get: Any, role: str, allowed: set[str]) -> None:
    for page in (
        "overview",
        "map",
        "diversion",
        "counterfeit",
        "campaigns",
        "members",
        "production",
    ):
        status = get(f"{page}?{PERIOD}", role=role).status_code
        assert status == (200 if page in allowed else 403), (role, page, status)


def test_a_distributor_sees_only_its_own_diversion(
    get: Any, world: World, runtime: Runtime
) -> None:
    with runtime.db.unit_of_work() as session:
        rival = traceability.create_distributor(
            session, tenant_id=world.brand.tenant_id, code="JS-1", name="江苏总经销",
            level="provincial", regions=["CN-JS"],
        )  # fmt: skip
        insert_scan(
            session, now=AT, tenant_id=world.brand.tenant_id, batch_id=world.brand.batch_id,
            serial=99, verdict="genuine", signals=[], device="p9", ip=None, user_agent=None,
            place=ZJ, distributor_id=rival.id, diverted=True,
        )  # fmt: skip
    anti_fraud.refresh_scan_rollups(runtime)
    everyone = get(f"diversion?{PERIOD}").get_json()["distributors"]
    assert {d["distributor_id"] for d in everyone} == {world.distributor, rival.id}
    own = get(f"diversion?{PERIOD}", role="distributor").get_json()["distributors"]
    assert [d["distributor_id"] for d in own] == [world.distributor]


def test_the_pages_are_in_the_openapi_document(runtime: Runtime, world: World) -> None:
    with console.create_app().test_client() as client:
        spec = client.get("/api/v1/openapi.json").get_json()
    for page in (
        "overview",
        "map",
        "diversion",
        "counterfeit",
        "campaigns",
        "members",
        "production",
    ):
        op = spec["paths"][f"/api/v1/dashboards/{page}"]["get"]
        assert {p["name"] for p in op["parameters"]} >= {"from", "to", "sku", "region", "format"}
        assert op["security"]
