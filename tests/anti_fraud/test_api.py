"""The brand's anti-fraud API: blacklist by code or range, lifting, thresholds, alerts, history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import codegen
import console
import scan_service
from core import services as core_services
from core.runtime import Runtime
from tests.factories import Brand, make_brand


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=100)


@pytest.fixture
def api(runtime: Runtime, brand: Brand) -> Iterator[Any]:
    with console.create_app().test_client() as client:
        headers = {"Authorization": f"Bearer {brand.admin_token}"}

        def call(method: str, path: str, **kw: Any) -> Any:
            return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

        yield call


def _url(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url


def _scan(url: str, device: str) -> str:
    with scan_service.create_app().test_client() as phone:
        return str(
            phone.post("/api/v1/scans", json={"code": url, "device_id": device}).get_json()[
                "verdict"
            ]
        )


def test_blacklisting_a_code_by_its_url_then_lifting_it(
    api: Any, runtime: Runtime, brand: Brand
) -> None:
    url = _url(runtime, brand, 12)
    made = api("POST", "/blacklist", json={"code": url, "reason": "stolen", "note": "truck 7"})
    assert made.status_code == 201
    entry = made.get_json()
    assert (entry["batch_id"], entry["first_serial"], entry["last_serial"]) == (
        brand.batch_id,
        12,
        12,
    )
    assert _scan(url, "device-aaaa") == "suspicious"
    lifted = api("POST", f"/blacklist/{entry['id']}/lift", json={"reason": "recovered"})
    assert lifted.get_json()["lifted_reason"] == "recovered"
    assert _scan(url, "device-aaaa") == "genuine"
    listed = api("GET", "/blacklist?active=false").get_json()["items"]
    assert [e["id"] for e in listed] == [entry["id"]]


def test_blacklisting_a_range_is_checked_against_the_batch(api: Any, brand: Brand) -> None:
    ok = api(
        "POST",
        "/blacklist",
        json={
            "batch_id": brand.batch_id,
            "first_serial": 10,
            "last_serial": 20,
            "reason": "misprint",
        },
    )
    assert ok.status_code == 201
    too_far = api(
        "POST",
        "/blacklist",
        json={
            "batch_id": brand.batch_id,
            "first_serial": 90,
            "last_serial": 101,
            "reason": "misprint",
        },
    )
    assert too_far.status_code == 422 and "last_serial" in too_far.get_json()["errors"]
    bad_reason = api(
        "POST",
        "/blacklist",
        json={"batch_id": brand.batch_id, "first_serial": 1, "reason": "bored"},
    )
    assert bad_reason.status_code == 422
    forged = api("POST", "/blacklist", json={"code": "HTTPS://X/C/" + "A" * 29, "reason": "stolen"})
    assert forged.status_code == 422 and "code" in forged.get_json()["errors"]


def test_another_brand_cannot_blacklist_or_read_our_codes(
    api: Any, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival")
    url = _url(runtime, brand, 5)
    with console.create_app().test_client() as client:
        headers = {"Authorization": f"Bearer {rival.admin_token}"}
        refused = client.post(
            "/api/v1/blacklist", headers=headers, json={"code": url, "reason": "stolen"}
        )
        history = client.get(f"/api/v1/batches/{brand.batch_id}/codes/5/scans", headers=headers)
    assert refused.status_code == 422 and history.status_code == 404


def test_thresholds_change_the_verdicts(api: Any, runtime: Runtime, brand: Brand) -> None:
    assert api("GET", "/anti-fraud/settings").get_json()["clone_device_threshold"] == 5
    changed = api("PUT", "/anti-fraud/settings", json={"clone_device_threshold": 2})
    assert changed.get_json()["clone_device_threshold"] == 2
    assert api("PUT", "/anti-fraud/settings", json={"clone_device_threshold": 0}).status_code == 422
    url = _url(runtime, brand, 33)
    assert [_scan(url, d) for d in ("device-aaaa", "device-bbbb")] == ["genuine", "suspicious"]
    history = api("GET", f"/batches/{brand.batch_id}/codes/33/scans").get_json()["items"]
    assert [h["verdict"] for h in history] == ["suspicious", "genuine"]
    assert "many_devices" in history[0]["signals"]


def test_an_analyst_reads_alerts_but_cannot_change_settings(runtime: Runtime, brand: Brand) -> None:
    with runtime.db.unit_of_work() as session:
        token = core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name="bi", role="analyst"
        ).token
    with console.create_app().test_client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/alerts", headers=headers).status_code == 200
        assert (
            client.put(
                "/api/v1/anti-fraud/settings", headers=headers, json={"clone_device_threshold": 9}
            ).status_code
            == 403
        )
        assert (
            client.post(
                "/api/v1/blacklist",
                headers=headers,
                json={"batch_id": brand.batch_id, "first_serial": 1, "reason": "stolen"},
            ).status_code
            == 403
        )


@pytest.mark.parametrize("reason", ["overprint", "not_sold"])
def test_a_line_blacklists_overprinted_or_unsold_ranges(
    api: Any, runtime: Runtime, brand: Brand, reason: str
) -> None:
    made = api(
        "POST",
        "/blacklist",
        json={"batch_id": brand.batch_id, "first_serial": 40, "last_serial": 60, "reason": reason},
    )
    assert made.status_code == 201 and made.get_json()["reason"] == reason
    assert _scan(_url(runtime, brand, 50), "phone-0001") == "suspicious"
    assert _scan(_url(runtime, brand, 61), "phone-0001") == "genuine"
