"""A code's journey as the consumer sees it: on the scan page and in the scan API, in the
brand's timezone, in plain words, and nothing of what only the brand may know."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

import codegen
import scan_service
import traceability
from core.runtime import Runtime
from scan_service.schemas import ScanOut
from tests.factories import Brand, make_brand
from traceability.activation import SerialRange

# Late evening in UTC is the next morning in Shanghai: a time shown in UTC would be caught.
T0 = dt.datetime(2026, 11, 20, 20, 30, tzinfo=dt.UTC)
OPERATORS = ("op-zhang-line", "plc-case-7", "wh-li-dispatch", "rcv-wang-gate")
CASE = 100

STEPS_ZH = [
    ("2026-11-21 04:30", "在杭州工厂 L1生产并激活"),
    ("2026-11-21 05:30", "装箱"),
    ("2026-11-21 07:30", "发往浙江总代"),
    ("2026-11-22 06:30", "浙江总代已收货"),
]
STEPS_EN = [
    ("2026-11-21 04:30", "Made and activated at 杭州工厂 L1"),
    ("2026-11-21 05:30", "Packed into a case"),
    ("2026-11-21 07:30", "Shipped to 浙江总代"),
    ("2026-11-22 06:30", "Received by 浙江总代"),
]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with scan_service.create_app().test_client() as test_client:
        yield test_client


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=200)


def ref(brand: Brand, serial: int) -> traceability.CodeRef:
    return traceability.CodeRef(brand.batch_id, serial)


def record_journey(runtime: Runtime, brand: Brand) -> int:
    """Activate 1..100 at the line, pack 1..24 into case 100, ship it to the provincial
    distributor, who receives it the next day. Returns the distributor's id."""
    with runtime.db.unit_of_work() as session:
        traceability.record_activation(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            action="activate",
            scope="range",
            ranges=[SerialRange(brand.batch_id, 1, CASE)],
            operator=OPERATORS[0],
            line="L1",
            site="杭州工厂",
            at=T0,
        )
    with runtime.db.unit_of_work() as session:
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="ZJ-01",
            name="浙江总代",
            level="provincial",
            regions=["CN-ZJ"],
        )
        traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(ref(brand, CASE), ref(brand, s)) for s in range(1, 25)],
            operator=OPERATORS[1],
            at=T0 + dt.timedelta(hours=1),
        )
        shipment = traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-4711",
            to_distributor_id=east.id,
            units=[ref(brand, CASE)],
            operator=OPERATORS[2],
            at=T0 + dt.timedelta(hours=3),
        )
        traceability.receive(
            session,
            tenant_id=brand.tenant_id,
            shipment_id=shipment.id,
            operator=OPERATORS[3],
            at=T0 + dt.timedelta(days=1, hours=2),
        )
        return east.id


def path_of(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        url = codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url
    return urlsplit(url).path


def api_scan(client: FlaskClient, code: str, lang: str, **extra: Any) -> Any:
    response = client.post(
        "/api/v1/scans",
        json={"code": code, "device_id": "device-journey", **extra},
        headers={"Accept-Language": "en-US,en;q=0.9" if lang == "en" else "zh-CN,zh;q=0.9"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def assert_in_order(html: str, needles: list[str]) -> None:
    at = [html.find(n) for n in needles]
    assert all(i >= 0 for i in at), [n for n, i in zip(needles, at, strict=True) if i < 0]
    assert at == sorted(at), needles


def assert_nothing_brand_only(body: str) -> None:
    for secret in (*OPERATORS, "ZJ-01", "DN-4711", "diverted", "distributor_id", "signals"):
        assert secret not in body, secret


@pytest.mark.parametrize(("lang", "steps"), [("zh", STEPS_ZH), ("en", STEPS_EN)])
def test_the_scan_page_shows_the_journey_in_local_time(
    client: FlaskClient, runtime: Runtime, brand: Brand, lang: str, steps: list[tuple[str, str]]
) -> None:
    record_journey(runtime, brand)
    page = client.get(path_of(runtime, brand, 5) + f"?lang={lang}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-verdict="genuine"' in html
    journey = html[
        html.index('id="journey"') : html.index("</section>", html.index('id="journey"'))
    ]
    assert ("Where this item has been" if lang == "en" else "溯源信息") in journey
    assert_in_order(journey, [piece for step in steps for piece in step])
    # Asia/Shanghai, never the UTC clock the events were stored in.
    assert "2026-11-20 20:30" not in html and "2026-11-21 04:30" in journey
    assert journey.count("<li") == 4
    assert_nothing_brand_only(html)


@pytest.mark.parametrize(("lang", "steps"), [("zh", STEPS_ZH), ("en", STEPS_EN)])
def test_the_scan_api_returns_the_journey_and_keeps_diversion_to_the_brand(
    client: FlaskClient, runtime: Runtime, brand: Brand, lang: str, steps: list[tuple[str, str]]
) -> None:
    distributor_id = record_journey(runtime, brand)
    code = "https://yima.example.com" + path_of(runtime, brand, 7)
    # Scanned in Beijing: outside the distributor's Zhejiang, so the brand is told "diverted".
    response = api_scan(client, code, lang, lat=39.90, lon=116.40, accuracy_m=20)
    answer = response.get_json()
    ScanOut.model_validate(answer)
    assert [s["text"] for s in answer["journey"]] == [text for _when, text in steps]
    assert [s["kind"] for s in answer["journey"]] == ["activated", "packed", "shipped", "received"]
    assert [dt.datetime.fromisoformat(s["at"]) for s in answer["journey"]] == [
        T0,
        T0 + dt.timedelta(hours=1),
        T0 + dt.timedelta(hours=3),
        T0 + dt.timedelta(days=1, hours=2),
    ]
    assert all(set(s) == {"kind", "at", "text"} for s in answer["journey"])
    with runtime.db.read_only() as session:
        recorded = session.execute(
            text("SELECT diverted, distributor_id FROM anti_fraud_scans WHERE serial = 7")
        ).one()
    assert tuple(recorded) == (True, distributor_id)  # the brand knows; the phone does not
    assert_nothing_brand_only(response.get_data(as_text=True))
    assert "diverted" not in json.dumps(answer) and "signals" not in answer


def test_a_code_without_trace_history_shows_no_journey(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    record_journey(runtime, brand)  # the brand traces, but serial 150 never met the line
    html = client.get(path_of(runtime, brand, 150)).get_data(as_text=True)
    assert 'data-verdict="' in html and 'id="journey"' not in html and "溯源信息" not in html
    code = "https://yima.example.com" + path_of(runtime, brand, 150)
    assert api_scan(client, code, "zh").get_json()["journey"] == []


def test_a_brand_that_does_not_trace_shows_no_journey(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    html = client.get(path_of(runtime, brand, 3)).get_data(as_text=True)
    assert 'data-verdict="genuine"' in html and 'id="journey"' not in html


def test_forged_and_genuine_answers_have_the_same_shape(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    record_journey(runtime, brand)
    code = "https://yima.example.com" + path_of(runtime, brand, 9)
    genuine = api_scan(client, code, "en").get_json()
    forged = api_scan(client, code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB"), "en")
    assert forged.get_json()["verdict"] == "counterfeit"
    assert set(forged.get_json()) == set(genuine) and forged.get_json()["journey"] == []
    ScanOut.model_validate(forged.get_json())


def test_the_openapi_spec_documents_the_journey(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    journey = schemas["ScanOut"]["properties"]["journey"]
    assert journey["type"] == "array"
    step = schemas[journey["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(step["properties"]) == {"kind", "at", "text"}
