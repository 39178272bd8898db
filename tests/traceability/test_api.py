"""The traceability API as a factory, a warehouse and a dealer's handheld use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

import codegen
import console
from core.runtime import Runtime
from tests.factories import Brand, make_brand
from traceability.models import ActivationSpan, Packing, ShipmentUnit

HOST = "yima.example.com"
HANGZHOU = {"lat": 30.274, "lon": 120.155}
NANJING = {"lat": 32.060, "lon": 118.797}


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=5_000)


@pytest.fixture
def other(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, slug="rival", quantity=100)


Call = Any


def client(token: str) -> Iterator[Call]:
    with console.create_app().test_client() as http:
        headers = {"Authorization": f"Bearer {token}"}

        def call(method: str, path: str, **kw: Any) -> Any:
            return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

        yield call


@pytest.fixture
def api(runtime: Runtime, brand: Brand) -> Iterator[Call]:
    yield from client(brand.admin_token)


def codes(runtime: Runtime, b: Brand, *serials: int) -> list[str]:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(session, tenant_id=b.tenant_id, batch_id=b.batch_id)
        return [
            codegen.code_for_serial(runtime, batch=batch, gtin=None, serial=s, host=HOST).url
            for s in serials
        ]


def count(runtime: Runtime, model: Any) -> int:
    with runtime.db.read_only() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def pack_pallet(api: Call, runtime: Runtime, brand: Brand) -> tuple[str, list[str]]:
    """Two cases of 12 items (serials 1-24) onto a pallet (serial 4,000)."""
    case_a, case_b, pallet = codes(runtime, brand, 3_001, 3_002, 4_000)
    items = codes(runtime, brand, *range(1, 25))
    for case, part in ((case_a, items[:12]), (case_b, items[12:])):
        done = api(
            "POST", "/trace/packings/case", json={"parent": case, "children": part, "line": "L2"}
        )
        assert done.status_code == 200, done.get_json()
        assert done.get_json() == {"packed": 12, "already_packed": 0}
    csv = f"parent,child\n{pallet},{case_a}\n{pallet},{case_b}\n"
    up = api("POST", "/trace/packings", data=csv, content_type="text/csv")
    assert up.status_code == 200 and up.get_json()["packed"] == 2
    return pallet, items


def test_activation_by_range_first_and_last_code_roll_and_case(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    r = api(
        "POST",
        "/trace/activations",
        json={
            "batch_id": brand.batch_id,
            "first_serial": 1,
            "last_serial": 1_000,
            "line": "L1",
            "site": "Hangzhou plant",
        },
    )
    assert r.status_code == 201 and r.get_json()["code_count"] == 1_000
    first, last = codes(runtime, brand, 1_001, 1_500)
    r = api("POST", "/trace/activations", json={"from_code": last, "to_code": first})
    assert r.status_code == 201
    assert (r.get_json()["first_serial"], r.get_json()["last_serial"]) == (1_001, 1_500)
    r = api(
        "POST", "/trace/activations", json={"batch_id": brand.batch_id, "roll": 4, "roll_size": 500}
    )
    assert r.status_code == 201 and r.get_json()["scope"] == "roll"
    assert (r.get_json()["first_serial"], r.get_json()["last_serial"]) == (1_501, 2_000)
    pallet, items = pack_pallet(api, runtime, brand)
    r = api(
        "POST",
        "/trace/activations",
        json={
            "case": pallet,
            "action": "deactivate",
            "reason": "recalled",
            "note": "lot recall 7",
        },
    )
    assert r.status_code == 201, r.get_json()
    # The pallet, its two cases and their 24 items: 27 codes in a few spans, not 27 rows.
    assert r.get_json()["code_count"] == 27
    assert count(runtime, ActivationSpan) <= 8
    state = api("GET", "/trace/codes", query_string={"code": items[5], "lang": "en"}).get_json()
    assert state["active"] is False and state["deactivated_reason"] == "recalled"
    assert state["parent"] == {"batch_id": brand.batch_id, "serial": 3_001}
    assert [s["kind"] for s in state["journey"]] == ["packed", "packed", "deactivated"]
    assert state["journey"][-1]["text"] == "Withdrawn by the brand (recalled)"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"batch_id": 999_999, "first_serial": 1, "last_serial": 5}, "range.batch_id"),
        ({"first_serial": 1, "last_serial": 5}, "range"),
        ({"batch_id": 1, "first_serial": 10, "last_serial": 5}, "range"),
        ({"case": "NOT-A-CODE"}, "case"),
        ({"batch_id": 1, "roll": 99, "roll_size": 500}, "roll"),
        ({"batch_id": 1, "first_serial": 1, "last_serial": 5, "roll": 1, "roll_size": 5}, "body"),
        ({"action": "deactivate", "batch_id": 1, "first_serial": 1, "last_serial": 5}, "reason"),
    ],
)
def test_bad_activations_name_the_field_and_change_nothing(
    api: Call, runtime: Runtime, brand: Brand, body: dict[str, Any], field: str
) -> None:
    if body.get("batch_id") == 1:
        body = {**body, "batch_id": brand.batch_id}
    if field == "range" and body.get("first_serial") == 10:
        body = {**body, "last_serial": 5}
    r = api("POST", "/trace/activations", json=body)
    assert r.status_code == 422, r.get_json()
    assert r.content_type == "application/problem+json"
    assert field in r.get_json()["errors"]
    assert count(runtime, ActivationSpan) == 0


def test_a_serial_beyond_the_batch_is_refused(api: Call, brand: Brand) -> None:
    r = api(
        "POST",
        "/trace/activations",
        json={
            "batch_id": brand.batch_id,
            "first_serial": 4_990,
            "last_serial": 5_001,
        },
    )
    assert r.status_code == 422 and "5000" in r.get_json()["detail"]


def test_packing_conflicts_name_the_code_and_change_nothing(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    pallet, items = pack_pallet(api, runtime, brand)
    before = count(runtime, Packing)
    case_c = codes(runtime, brand, 3_003)[0]
    # A code packed twice: item 1 is already in case 3,001.
    r = api(
        "POST",
        "/trace/packings",
        json={
            "pairs": [
                {"parent": case_c, "child": items[20 - 1]},
                {"parent": case_c, "child": items[0]},
            ]
        },
    )
    assert r.status_code == 409 and r.get_json()["code"] == "packing_conflict"
    assert "#1 is already in" in r.get_json()["detail"]
    # A pallet inside one of its own cases.
    case_a = codes(runtime, brand, 3_001)[0]
    r = api("POST", "/trace/packings", json={"pairs": [{"parent": case_a, "child": pallet}]})
    assert r.status_code == 409
    assert count(runtime, Packing) == before
    # Repacking moves an item from one case to another in one step.
    r = api("POST", "/trace/repackings", json={"parent": case_c, "children": [items[0]]})
    assert r.status_code == 200 and r.get_json()["packed"] == 1
    state = api("GET", "/trace/codes", query_string={"code": items[0]}).get_json()
    assert state["parent"]["serial"] == 3_003
    assert [s["kind"] for s in state["journey"]].count("unpacked") == 1
    r = api("POST", "/trace/unpackings", json={"parent": case_c})
    assert r.status_code == 200 and r.get_json() == {"unpacked": 1}
    r = api("POST", "/trace/unpackings", json={"children": [items[0]]})
    assert r.status_code == 409


def test_foreign_and_forged_codes_are_unknown(
    api: Call, runtime: Runtime, brand: Brand, other: Brand
) -> None:
    theirs = codes(runtime, other, 1)[0]
    ours = codes(runtime, brand, 1)[0]
    forged = ours[:-2] + ("A" if ours[-2] != "A" else "B") + ours[-1]
    for bad in (theirs, forged):
        r = api("POST", "/trace/packings", json={"pairs": [{"parent": ours, "child": bad}]})
        assert r.status_code == 422 and r.get_json()["code"] == "code_unknown"
        assert r.get_json()["errors"] == {"pairs[0].child": "not a code of this brand"}


def make_distributors(api: Call) -> tuple[int, int]:
    zj = api(
        "POST",
        "/trace/distributors",
        json={
            "code": "ZJ-01",
            "name": "浙江总代",
            "level": "provincial",
            "regions": ["CN-ZJ"],
        },
    )
    assert zj.status_code == 201, zj.get_json()
    dealer = api(
        "POST",
        "/trace/distributors",
        json={
            "code": "HZ-07",
            "name": "杭州西湖经销商",
            "level": "dealer",
            "channel": "retail",
            "parent_id": zj.get_json()["id"],
        },
    )
    assert dealer.status_code == 201
    assert dealer.get_json()["authorised_regions"] == ["CN-ZJ"]
    return zj.get_json()["id"], dealer.get_json()["id"]


@pytest.mark.parametrize("region", ["CN-XX", "Atlantis", "CN-ZJ/Gotham", "XX", "FR/Paris"])
def test_regions_that_do_not_exist_are_refused(api: Call, region: str) -> None:
    r = api(
        "POST",
        "/trace/distributors",
        json={
            "code": "D1",
            "name": "D",
            "level": "dealer",
            "regions": [region],
        },
    )
    assert r.status_code == 422 and "regions" in r.get_json()["errors"]


def test_regions_are_canonical(api: Call) -> None:
    r = api(
        "POST",
        "/trace/distributors",
        json={
            "code": "D1",
            "name": "D",
            "level": "dealer",
            "regions": ["cn-zj/杭州", "CN-JS/Nanjing", "US-CA"],
        },
    )
    assert r.status_code == 201
    assert r.get_json()["regions"] == ["CN-JS/南京市", "CN-ZJ/杭州市", "US-CA"]


def test_shipping_a_pallet_then_a_dealer_receives_and_ships_on(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    zj, dealer = make_distributors(api)
    pallet, items = pack_pallet(api, runtime, brand)
    api("PUT", "/trace/settings", json={"require_activation": True})
    refused = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-001",
            "to_distributor_id": zj,
            "units": [pallet],
        },
    )
    assert refused.status_code == 409 and refused.get_json()["code"] == "not_activated"
    api("POST", "/trace/activations", json={"case": pallet})
    shipped = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-001",
            "to_distributor_id": zj,
            "units": [pallet],
        },
    )
    assert shipped.status_code == 201, shipped.get_json()
    assert shipped.get_json()["code_count"] == 27 and count(runtime, ShipmentUnit) == 1
    again = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-001",
            "to_distributor_id": dealer,
            "units": [codes(runtime, brand, 30)[0]],
        },
    )
    assert again.status_code in (409, 422)
    # The provincial distributor's warehouse phone: its own key.
    key = api("POST", f"/trace/distributors/{zj}/api-keys", json={"name": "ZJ warehouse"})
    assert key.status_code == 201
    for phone in client(key.get_json()["token"]):
        assert (
            phone(
                "POST",
                "/trace/distributors",
                json={
                    "code": "X",
                    "name": "X",
                    "level": "dealer",
                },
            ).status_code
            == 403
        )
        received = phone(
            "POST",
            f"/trace/shipments/{shipped.get_json()['id']}/receive",
            json={
                "location": HANGZHOU,
            },
        )
        assert received.status_code == 200, received.get_json()
        assert received.get_json()["receipt_region_check"] == "inside"
        twice = phone("POST", f"/trace/shipments/{shipped.get_json()['id']}/receive", json={})
        assert twice.status_code == 409
        case_a = codes(runtime, brand, 3_001)[0]
        onward = phone(
            "POST",
            "/trace/shipments",
            json={
                "reference": "ZJ-778",
                "to_distributor_id": dealer,
                "units": [case_a],
            },
        )
        assert onward.status_code == 201, onward.get_json()
        assert onward.get_json()["from_distributor_id"] == zj
        mine = phone("GET", "/trace/shipments").get_json()["items"]
        assert {s["reference"] for s in mine} == {"DN-001", "ZJ-778"}
    state = api("GET", "/trace/codes", query_string={"code": items[0]}).get_json()
    assert state["holder_name"] == "杭州西湖经销商" and state["authorised_regions"] == ["CN-ZJ"]
    assert [s["text"] for s in state["journey"] if s["kind"] in ("shipped", "received")] == [
        "发往浙江总代",
        "浙江总代已收货",
        "发往杭州西湖经销商",
    ]
    # Item 13 travelled in the other case, which stayed with the provincial distributor.
    other = api("GET", "/trace/codes", query_string={"code": items[12]}).get_json()
    assert other["holder_name"] == "浙江总代"


def test_a_dealer_key_cannot_touch_other_shipments(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    zj, dealer = make_distributors(api)
    unit = codes(runtime, brand, 77)[0]
    shipped = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-9",
            "to_distributor_id": zj,
            "units": [unit],
        },
    ).get_json()
    key = api("POST", f"/trace/distributors/{dealer}/api-keys", json={"name": "dealer phone"})
    for phone in client(key.get_json()["token"]):
        assert (
            phone("POST", f"/trace/shipments/{shipped['id']}/receive", json={}).status_code == 404
        )
        assert phone("GET", f"/trace/shipments/{shipped['id']}").status_code == 404
        assert phone("GET", "/trace/shipments").get_json()["items"] == []
        # It does not hold the unit: shipping it is refused.
        r = phone(
            "POST",
            "/trace/shipments",
            json={
                "reference": "D-1",
                "to_distributor_id": zj,
                "kind": "return",
                "units": [unit],
            },
        )
        assert r.status_code == 409 and r.get_json()["code"] == "not_held"


def test_a_receipt_outside_the_region_is_recorded_as_such(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    zj, _ = make_distributors(api)
    unit = codes(runtime, brand, 5)[0]
    shipped = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-5",
            "to_distributor_id": zj,
            "units": [unit],
        },
    ).get_json()
    bad = api(
        "POST",
        f"/trace/shipments/{shipped['id']}/receive",
        json={
            "location": {"lat": 91, "lon": 0},
        },
    )
    assert bad.status_code == 422
    r = api("POST", f"/trace/shipments/{shipped['id']}/receive", json={"location": NANJING})
    assert r.status_code == 200 and r.get_json()["receipt_region_check"] == "outside"


def test_another_brand_sees_nothing(
    api: Call, runtime: Runtime, brand: Brand, other: Brand
) -> None:
    zj, _ = make_distributors(api)
    shipped = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-1",
            "to_distributor_id": zj,
            "units": [codes(runtime, brand, 9)[0]],
        },
    ).get_json()
    for rival in client(other.admin_token):
        assert rival("GET", f"/trace/shipments/{shipped['id']}").status_code == 404
        assert rival("GET", f"/trace/distributors/{zj}").status_code == 404
        assert (
            rival("POST", f"/trace/shipments/{shipped['id']}/receive", json={}).status_code == 404
        )
        assert (
            rival(
                "GET", "/trace/codes", query_string={"code": codes(runtime, brand, 9)[0]}
            ).status_code
            == 422
        )
        r = rival(
            "POST",
            "/trace/shipments",
            json={
                "reference": "X",
                "to_distributor_id": zj,
                "units": [codes(runtime, other, 1)[0]],
            },
        )
        assert r.status_code == 404


def test_epcis_documents_through_the_api(api: Call, runtime: Runtime, brand: Brand) -> None:
    from tests.traceability.test_epcis import SCHEMA_DIR, assert_valid

    schema = json.loads((SCHEMA_DIR / "EPCISDocument.schema.json").read_text())

    zj, _ = make_distributors(api)
    pallet, items = pack_pallet(api, runtime, brand)
    shipped = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-77",
            "to_distributor_id": zj,
            "units": [pallet],
        },
    ).get_json()
    api("POST", f"/trace/shipments/{shipped['id']}/receive", json={})
    of_code = api("GET", "/trace/epcis", query_string={"code": items[0]})
    assert of_code.status_code == 200 and of_code.mimetype == "application/ld+json"
    document = of_code.get_json()
    assert_valid(schema, document)
    kinds = [(e["type"], e["bizStep"]) for e in document["epcisBody"]["eventList"]]
    assert ("AggregationEvent", "packing") in kinds
    assert kinds[-2:] == [("ObjectEvent", "shipping"), ("ObjectEvent", "receiving")]
    of_shipment = api("GET", f"/trace/shipments/{shipped['id']}/epcis")
    assert of_shipment.status_code == 200
    assert_valid(schema, of_shipment.get_json())
    assert api("GET", "/trace/shipments/999999/epcis").status_code == 404
    assert api("GET", "/trace/epcis", query_string={"code": "nonsense"}).status_code == 422


def test_a_large_packing_upload_is_accepted_and_an_oversized_one_refused(
    api: Call, runtime: Runtime, brand: Brand
) -> None:
    # 3 MB of CSV (more than the 2 MB other requests may send): a line resending one pair.
    case, item = codes(runtime, brand, 4_999, 1)
    rows = "".join(f"{case},{item}\n" for _ in range(30_000))
    assert len(rows) > 2 * 1024 * 1024
    big = api("POST", "/trace/packings", data=rows, content_type="text/csv")
    assert big.status_code == 200 and big.get_json() == {"packed": 1, "already_packed": 0}
    huge = api("POST", "/trace/packings", data="x" * (17 * 1024 * 1024), content_type="text/csv")
    assert huge.status_code == 413
