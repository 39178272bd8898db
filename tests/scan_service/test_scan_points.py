"""A signed-in member's scan earns the code's points: pending, once per code ever, with growth
value; a suspicious code, another brand's member or a second claimant earns nothing.

Every scan goes through HTTP (API with a member's bearer token, and the page with the cookie)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

import codegen
import members
import scan_service
from core.runtime import Runtime
from members.models import GrowthEntry, Member, PointsEntry
from members.sessions import open_session
from scan_service.schemas import ScanOut
from tests.factories import Brand, make_brand


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with scan_service.create_app().test_client() as test_client:
        yield test_client


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=100)


def signed_in(runtime: Runtime, tenant_id: int) -> tuple[int, str]:
    with runtime.db.unit_of_work() as session:
        member = members.create_member(session, tenant_id=tenant_id)
        return member.id, open_session(session, tenant_id=tenant_id, member_id=member.id)


def code_url(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url


def scan(client: FlaskClient, code: str, token: str | None, device: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post(
        "/api/v1/scans", json={"code": code, "device_id": device}, headers=headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    ScanOut.model_validate(body)
    return body  # type: ignore[no-any-return]


def test_a_signed_in_scan_earns_pending_points_once_per_code(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    alice, alice_token = signed_in(runtime, brand.tenant_id)
    bob, bob_token = signed_in(runtime, brand.tenant_id)
    url = code_url(runtime, brand, 7)

    first = scan(client, url, alice_token, "device-alice")
    assert first["verdict"] == "genuine" and first["brand"] == "acme"
    assert first["points"] == {
        "earned": 10,
        "pending": True,
        "status": "earned",
        "text": "本次扫码获得 10 积分（待生效，24 小时内到账）",
    }
    again = scan(client, url, alice_token, "device-alice")
    # Alice's own re-scan shows the points are hers; Bob's finds them taken.
    assert again["points"]["status"] == "already_yours"  # type: ignore[index]
    other = scan(client, url, bob_token, "device-bob")
    assert other["verdict"] == "already_verified"
    assert other["points"]["earned"] == 0  # type: ignore[index]
    assert other["points"]["status"] == "already_claimed"  # type: ignore[index]

    with runtime.db.read_only() as session:
        assert members.balance_of(session, alice).pending == 10
        assert members.balance_of(session, bob).pending == 0
        entries = session.scalars(select(PointsEntry)).all()
        assert [(e.member_id, e.points, e.business_key) for e in entries] == [
            (alice, 10, f"scan:{brand.batch_id}:7")
        ]
        growth = session.scalars(select(GrowthEntry)).all()
        assert [(g.member_id, g.points) for g in growth] == [(alice, 10)]
        assert session.get(Member, alice).growth == 10  # type: ignore[union-attr]


def test_the_programme_sets_the_points_and_the_pending_window(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        members.update_programme(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            changes={"scan_points": 25, "pending_hours": 0},
        )
    alice, token = signed_in(runtime, brand.tenant_id)
    body = scan(client, code_url(runtime, brand, 3), token, "device-alice")
    assert body["points"]["earned"] == 25 and body["points"]["pending"] is False  # type: ignore[index]
    with runtime.db.read_only() as session:
        assert members.balance_of(session, alice).active == 25


def test_no_points_without_a_member_for_forgeries_or_for_another_brand(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=10)
    _, rival_token = signed_in(runtime, rival.tenant_id)
    url = code_url(runtime, brand, 9)

    anonymous = scan(client, url, None, "device-anon")
    assert anonymous["verdict"] == "genuine" and anonymous["points"] is None
    foreign = scan(client, url, rival_token, "device-rival")
    assert foreign["points"]["status"] == "other_brand"  # type: ignore[index]

    _, token = signed_in(runtime, brand.tenant_id)
    forged = scan(client, url[:-3] + "AAA", token, "device-forger")
    assert forged["verdict"] == "counterfeit" and forged["points"] is None
    bogus = scan(client, code_url(runtime, brand, 10), "ms_not-a-real-token", "device-x")
    assert bogus["points"] is None  # an unknown token is nobody, not an error

    with runtime.db.read_only() as session:
        assert session.scalars(select(PointsEntry)).all() == []


def test_the_page_offers_sign_in_and_shows_what_the_member_earned(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    url = code_url(runtime, brand, 11)
    path = urlsplit(url).path
    page = client.get(path).get_data(as_text=True)
    assert 'id="sign-in"' in page and "/m/sign-in?brand=acme" in page
    assert "登录会员，领取本次扫码积分" in page

    alice, token = signed_in(runtime, brand.tenant_id)
    client.set_cookie(members.MEMBER_COOKIE, token)
    page = client.get(path).get_data(as_text=True)
    assert 'data-status="earned"' in page and "本次扫码获得 10 积分" in page
    english = client.get(path + "?lang=en").get_data(as_text=True)
    assert "This code&#39;s points are already yours" in english
    with runtime.db.read_only() as session:
        assert members.balance_of(session, alice).pending == 10


def test_the_scan_apis_spec_says_which_operations_take_a_member_token(
    client: FlaskClient,
) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["memberToken"]["scheme"] == "bearer"
    paths = spec["paths"]
    assert paths["/api/v1/me"]["get"]["security"] == [{"memberToken": []}]
    assert paths["/api/v1/me/orders"]["post"]["security"] == [{"memberToken": []}]
    assert paths["/api/v1/members/otp"]["post"]["security"] == []  # before sign-in
    assert paths["/api/v1/scans"]["post"]["security"] == []  # anyone may scan


def test_a_forged_code_costs_no_query_even_with_a_member_token(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    from sqlalchemy import event

    _, token = signed_in(runtime, brand.tenant_id)
    forged = code_url(runtime, brand, 5)[:-3] + "AAA"
    statements: list[str] = []

    def listener(*args: object) -> None:
        statements.append(str(args[2]))

    engine = runtime.db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        api = client.post(
            "/api/v1/scans",
            json={"code": forged, "device_id": "device-forger", "lat": 30.2, "lon": 120.1},
            headers={"Authorization": f"Bearer {token}"},
        )
        client.set_cookie(members.MEMBER_COOKIE, token)
        page = client.get(urlsplit(forged).path)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert api.get_json()["verdict"] == "counterfeit" and api.get_json()["points"] is None
    assert 'data-verdict="counterfeit"' in page.get_data(as_text=True)
    assert statements == []
