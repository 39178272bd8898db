"""Diversion: scans outside the holder's regions are flagged for the brand, and clusters per
shipment become scored alerts the brand reviews; single low-precision scans stay noise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import anti_fraud
import codegen
import console
import scan_service
import traceability
from core.runtime import Runtime
from tests.factories import Brand, make_brand
from yima.cli import main

HOST = "yima.example.com"
HANGZHOU = {"lat": 30.274, "lon": 120.155}
NANJING = {"lat": 32.060, "lon": 118.797}
SUZHOU = {"lat": 31.299, "lon": 120.585}


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=500)


@pytest.fixture
def api(runtime: Runtime, brand: Brand) -> Iterator[Any]:
    with console.create_app().test_client() as http:
        headers = {"Authorization": f"Bearer {brand.admin_token}"}

        def call(method: str, path: str, **kw: Any) -> Any:
            return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

        yield call


def urls(runtime: Runtime, brand: Brand, *serials: int) -> list[str]:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return [
            codegen.code_for_serial(runtime, batch=batch, gtin=None, serial=s, host=HOST).url
            for s in serials
        ]


def scan(url: str, *, device: str, ip: str = "127.0.0.1", **where: float) -> dict[str, Any]:
    with scan_service.create_app().test_client() as phone:
        r = phone.post(
            "/api/v1/scans",
            json={"code": url, "device_id": f"device-{device}", **where},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert r.status_code == 200, r.get_json()
        return dict(r.get_json())


@pytest.fixture
def shipped(api: Any, runtime: Runtime, brand: Brand) -> dict[str, Any]:
    """Items 1-24 in one case, shipped to the Zhejiang distributor (authorised for CN-ZJ)."""
    zj = api(
        "POST",
        "/trace/distributors",
        json={
            "code": "ZJ-01",
            "name": "浙江总代",
            "level": "provincial",
            "regions": ["CN-ZJ"],
        },
    ).get_json()
    case, *items = urls(runtime, brand, 400, *range(1, 25))
    assert (
        api("POST", "/trace/packings/case", json={"parent": case, "children": items}).status_code
        == 200
    )
    shipment = api(
        "POST",
        "/trace/shipments",
        json={
            "reference": "DN-2026-118",
            "to_distributor_id": zj["id"],
            "units": [case],
        },
    ).get_json()
    return {"distributor": zj["id"], "shipment": shipment["id"], "items": items}


def flags(api: Any, brand: Brand, serial: int) -> list[Any]:
    scans = api("GET", f"/batches/{brand.batch_id}/codes/{serial}/scans").get_json()["items"]
    return [s["diverted"] for s in scans]


def test_scans_outside_the_region_are_flagged_for_the_brand_only(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    items = shipped["items"]
    inside = scan(items[0], device="phone-hz-1", **HANGZHOU)
    outside = scan(items[1], device="phone-nj-1", **NANJING)
    # The consumer's answer is the same either way: genuine, and no word of diversion.
    assert inside["verdict"] == outside["verdict"] == "genuine"
    assert "divert" not in str(outside).lower()
    assert flags(api, brand, 1) == [False]
    assert flags(api, brand, 2) == [True]
    # An IP address inside China cannot tell Jiangsu from Zhejiang: no flag either way.
    scan(items[2], device="phone-ip-1", ip="114.114.114.114")
    assert flags(api, brand, 3) == [None]
    # An IP address abroad is outside China, so outside Zhejiang.
    scan(items[3], device="phone-us-1", ip="8.8.8.8")
    assert flags(api, brand, 4) == [True]


def test_a_phone_that_shares_its_location_afterwards_refines_the_flag(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    answer = scan(shipped["items"][0], device="phone-1", ip="114.114.114.114")
    assert flags(api, brand, 1) == [None]
    with scan_service.create_app().test_client() as phone:
        r = phone.post(f"/api/v1/scans/{answer['scan_id']}/location", json=NANJING)
        assert r.status_code == 200
    assert flags(api, brand, 1) == [True]


def test_clusters_become_scored_alerts_and_single_guesses_do_not(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    items = shipped["items"]
    scan(items[0], device="abroad-1", ip="8.8.8.8")  # one IP guess: 0.15
    assert anti_fraud.evaluate_diversion(runtime) == 0
    assert api("GET", "/diversion/alerts").get_json()["items"] == []
    scan(items[1], device="nj-1", **NANJING)  # a phone in Nanjing: 0.6, and now a cluster
    assert anti_fraud.evaluate_diversion(runtime) == 1
    [alert] = api("GET", "/diversion/alerts").get_json()["items"]
    assert alert["distributor_id"] == shipped["distributor"]
    assert alert["shipment_id"] == shipped["shipment"]
    assert alert["regions"] == ["CN-ZJ"] and alert["status"] == "open"
    assert (alert["code_count"], alert["scan_count"]) == (2, 2)
    score = alert["score"]
    # More codes of the same shipment: the same alert, a higher score.
    scan(items[2], device="nj-2", **NANJING)
    scan(items[3], device="sz-1", **SUZHOU)
    scan(items[3], device="sz-2", **SUZHOU)  # the same code again counts once
    scan(items[4], device="nj-3", **NANJING)
    assert anti_fraud.evaluate_diversion(runtime) == 0
    [grown] = api("GET", "/diversion/alerts").get_json()["items"]
    assert grown["id"] == alert["id"] and grown["score"] > score
    assert (grown["code_count"], grown["scan_count"]) == (5, 6)
    places = {p["region"]: p for p in grown["places"]}
    assert places["CN-JS/南京市"]["count"] == 3 and places["CN-JS/南京市"]["source"] == "gps"
    assert places["CN-JS/苏州市"]["precision"] == "city"
    assert places["US"]["source"] == "ip" and places["US"]["precision"] == "country"
    # The drill-down names the codes and where they were scanned.
    detail = api("GET", f"/diversion/alerts/{alert['id']}").get_json()
    assert {s["serial"] for s in detail["scans"]} == {1, 2, 3, 4, 5}
    # Filters: by distributor, by region where goods turned up, by period.
    assert (
        len(api("GET", "/diversion/alerts", query_string={"region": "CN-JS"}).get_json()["items"])
        == 1
    )
    assert (
        api("GET", "/diversion/alerts", query_string={"region": "CN-GD"}).get_json()["items"] == []
    )
    assert (
        api("GET", "/diversion/alerts", query_string={"distributor_id": 99}).get_json()["items"]
        == []
    )
    assert (
        api("GET", "/diversion/alerts", query_string={"since": "2099-01-01"}).get_json()["items"]
        == []
    )
    assert api("GET", "/diversion/alerts", query_string={"region": "Mars"}).status_code == 422
    assert api("GET", "/diversion/alerts", query_string={"since": "yesterday"}).status_code == 422
    year_one = {"since": "0001-01-01T00:00:00+08:00"}  # before year 1 once in UTC
    assert api("GET", "/diversion/alerts", query_string=year_one).status_code == 422
    # The brand confirms it; evaluating again leaves the review alone.
    reviewed = api(
        "POST",
        f"/diversion/alerts/{alert['id']}/review",
        json={
            "status": "confirmed",
            "note": "dealer in Nanjing confirmed by field visit",
        },
    )
    assert reviewed.status_code == 200 and reviewed.get_json()["status"] == "confirmed"
    anti_fraud.evaluate_diversion(runtime)
    assert api("GET", f"/diversion/alerts/{alert['id']}").get_json()["status"] == "confirmed"
    assert (
        api("POST", f"/diversion/alerts/{alert['id']}/review", json={"status": "maybe"}).status_code
        == 422
    )


def test_one_located_scan_alone_is_noise(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    scan(shipped["items"][0], device="nj-1", **NANJING)
    scan(shipped["items"][0], device="nj-2", **NANJING)  # the same code twice is still one
    assert anti_fraud.evaluate_diversion(runtime) == 0
    assert api("GET", "/diversion/alerts").get_json()["items"] == []


def test_a_receipt_outside_the_region_raises_an_alert_on_its_own(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    r = api("POST", f"/trace/shipments/{shipped['shipment']}/receive", json={"location": NANJING})
    assert r.status_code == 200
    assert anti_fraud.evaluate_diversion(runtime) == 1
    [alert] = api("GET", "/diversion/alerts").get_json()["items"]
    assert alert["receipt_count"] == 1 and alert["places"][0]["region"] == "CN-JS/南京市"


def test_the_cli_lists_alerts_per_distributor(
    api: Any, runtime: Runtime, brand: Brand, shipped: dict[str, Any]
) -> None:
    for n, device in enumerate(("a", "b", "c")):
        scan(shipped["items"][n], device=device, **NANJING)
    runner = CliRunner()
    evaluated = runner.invoke(main, ["diversion", "evaluate"], catch_exceptions=False)
    assert evaluated.exit_code == 0 and "1 new" in evaluated.output
    listed = runner.invoke(
        main,
        [
            "diversion",
            "alerts",
            "--tenant",
            brand.slug,
            "--distributor",
            str(shipped["distributor"]),
            "--region",
            "CN-JS",
        ],
        catch_exceptions=False,
    )
    assert listed.exit_code == 0, listed.output
    assert "浙江总代" in listed.output and "DN-2026-118" in listed.output
    assert "CN-JS/南京市" in listed.output


def test_trace_region_check_at_each_precision() -> None:
    zj = [traceability.parse_region("CN-ZJ")]
    hz = [traceability.parse_region("CN-ZJ/杭州")]
    assert (
        traceability.region_check(zj, traceability.Located("CN", "CN-ZJ", "杭州市", "city"))
        == "inside"
    )
    assert (
        traceability.region_check(zj, traceability.Located("CN", "CN-JS", None, "province"))
        == "outside"
    )
    assert (
        traceability.region_check(zj, traceability.Located("CN", None, None, "country"))
        == "unknown"
    )
    assert (
        traceability.region_check(zj, traceability.Located("US", None, None, "country"))
        == "outside"
    )
    assert (
        traceability.region_check(hz, traceability.Located("CN", "CN-ZJ", None, "province"))
        == "unknown"
    )
    assert (
        traceability.region_check(hz, traceability.Located("CN", "CN-ZJ", "宁波市", "city"))
        == "outside"
    )
    assert (
        traceability.region_check([], traceability.Located("CN", "CN-ZJ", "宁波市", "city"))
        == "unknown"
    )
