"""A code's life as phones see it: genuine, re-scans, other devices, clones, forgeries, floods.

Runs on SQLite and PostgreSQL; every scan goes through HTTP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

import anti_fraud
import codegen
import scan_service
from anti_fraud.invalid import spool_for
from anti_fraud.models import Alert, BlacklistEntry, CodeState, Scan
from core.runtime import Runtime
from scan_service.schemas import ScanOut
from tests.factories import Brand, make_brand


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with scan_service.create_app().test_client() as test_client:
        yield test_client


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=500)


def code_url(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url


def api_scan(
    client: FlaskClient,
    code: str,
    device: str | None = None,
    ip: str = "203.0.113.7",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {"code": code, **extra}
    if device:
        body["device_id"] = device
    response = client.post(
        "/api/v1/scans", json=body, environ_base={"REMOTE_ADDR": ip}, headers=headers or {}
    )
    assert response.status_code in (200, 429), response.get_data(as_text=True)
    return response


def test_a_codes_life_through_the_api(client: FlaskClient, runtime: Runtime, brand: Brand) -> None:
    url = code_url(runtime, brand, 17)
    first = api_scan(client, url, "device-aaaa").get_json()
    ScanOut.model_validate(first)  # the answer keeps the documented shape
    assert first["verdict"] == "genuine" and first["scan_count"] == 1
    assert first["product"]["name"] == "Green tea 250 g" and first["lot"] == "L2026A"
    assert len(first["scan_id"]) == 26
    again = api_scan(client, url, "device-aaaa").get_json()
    assert again["verdict"] == "genuine" and again["scan_count"] == 2  # same device: no escalation
    other = api_scan(client, url, "device-bbbb").get_json()
    assert other["verdict"] == "already_verified"
    assert dt.datetime.fromisoformat(other["first_scan"]["at"]) == dt.datetime.fromisoformat(
        first["first_scan"]["at"]
    )
    for n in range(3):  # five distinct devices in all: the default clone threshold
        api_scan(client, url, f"device-c{n:03d}")
    cloned = api_scan(client, url, "device-aaaa").get_json()
    assert cloned["verdict"] == "suspicious"
    assert "signals" not in cloned  # internal reasons never reach a consumer


def test_the_page_tells_when_and_where_it_was_first_checked(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    path = urlsplit(code_url(runtime, brand, 3)).path
    first = client.get(path, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert 'data-verdict="genuine"' in first.get_data(as_text=True)
    assert "yima_d=" in first.headers["Set-Cookie"]
    assert "nonce-" in first.headers["Content-Security-Policy"]
    client.get(path)  # the same phone (cookie): still genuine
    with scan_service.create_app().test_client() as other_phone:
        page = other_phone.get(path).get_data(as_text=True)
        english = other_phone.get(path + "?lang=en").get_data(as_text=True)
    assert 'data-verdict="already_verified"' in page
    assert "此码已于" in page and "首次查询，共查询 3 次" in page
    assert "First checked on" in english and "checked 4 times in all" in english


def test_forged_codes_are_answered_without_the_database(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    url = code_url(runtime, brand, 5)
    api_scan(client, url)  # warm the key ring and caches
    # A changed middle character (the last one also carries padding bits: "malformed").
    forged = [
        url[:-5] + ("A" if url[-5] != "A" else "B") + url[-4:],
        "HTTPS://X.CN/C/" + "Q" * 29,
        "garbage",
        "x" * 3000,
    ]
    statements: list[str] = []
    engine = runtime.db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        answers = [api_scan(client, code, ip="198.51.100.1") for code in forged[:3]]
        long_one = api_scan(client, forged[3][:2048], ip="198.51.100.1")
        page = client.get("/c/" + "Z" * 29, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []
    assert [a.get_json()["verdict"] for a in answers] == ["counterfeit"] * 3
    # Answered by the WSGI fast path, in the documented shape, as the full path would.
    for answer in answers:
        ScanOut.model_validate(answer.get_json())
        assert answer.get_json()["scan_id"] is None and answer.mimetype == "application/json"
    assert long_one.status_code in (200, 422)
    assert 'data-verdict="counterfeit"' in page.get_data(as_text=True)
    # ...and recorded afterwards, as keyed hashes with their reason.
    assert spool_for(runtime).flush() >= 4
    with runtime.db.unit_of_work() as session:
        rows = session.scalars(select(Scan).where(Scan.verdict == "counterfeit")).all()
    reasons = {r.invalid_reason for r in rows}
    assert {"bad_signature", "malformed"} <= reasons
    assert all(r.token_hash and len(r.token_hash) == 32 and r.serial is None for r in rows)
    assert any(r.tenant_id == brand.tenant_id for r in rows)  # the forged copy names its key


def test_floods_of_bad_codes_get_429_then_a_calm_page(
    client: FlaskClient, runtime: Runtime
) -> None:
    ip = "192.0.2.66"
    limit = runtime.settings.invalid_scans_per_ip_per_minute
    for n in range(limit):
        assert api_scan(client, f"forged-{n}", device=f"flood-{n:05d}", ip=ip).status_code == 200
    refused = api_scan(client, "forged-x", device="flood-final", ip=ip)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.mimetype == "application/problem+json"
    page = client.get("/c/" + "A" * 29, environ_base={"REMOTE_ADDR": ip})
    assert page.status_code == 429 and "请稍后再试" in page.get_data(as_text=True)
    # Another client is not affected.
    assert api_scan(client, "forged-y", ip="192.0.2.67").status_code == 200


def test_first_scan_is_recorded_once_and_scans_keep_their_evidence(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    url = code_url(runtime, brand, 8)
    api_scan(
        client, url, "device-aaaa", ip="203.0.113.45", headers={"User-Agent": "MicroMessenger/8.0"}
    )
    api_scan(client, url, "device-bbbb", ip="203.0.113.46")
    with runtime.db.unit_of_work() as session:
        scans = session.scalars(select(Scan).where(Scan.serial == 8).order_by(Scan.id)).all()
        state = session.get(CodeState, (brand.batch_id, 8))
    assert [s.verdict for s in scans] == ["genuine", "already_verified"]
    assert state is not None and (state.scan_count, state.device_count) == (2, 2)
    assert scans[0].ip == "203.0.113.0"  # the default privacy setting truncates
    assert scans[0].device and scans[0].device != "device-aaaa"  # a keyed hash, not the id


def test_ip_storage_follows_the_tenant_setting(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        anti_fraud.update_thresholds(
            session, runtime, tenant_id=brand.tenant_id, ip_storage="hashed"
        )
    api_scan(client, code_url(runtime, brand, 9), "device-aaaa", ip="203.0.113.45")
    with runtime.db.unit_of_work() as session:
        stored = session.scalar(select(Scan.ip).where(Scan.serial == 9))
    assert stored and "203.0.113" not in stored and len(stored) == 32


def test_blacklisted_codes_are_suspicious_until_lifted(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    url = code_url(runtime, brand, 30)
    with runtime.db.unit_of_work() as session:
        entry = anti_fraud.add_to_blacklist(
            session,
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            first_serial=20,
            last_serial=40,
            reason="stolen",
            actor="test",
        )
    assert api_scan(client, url, "device-aaaa").get_json()["verdict"] == "suspicious"
    assert (
        api_scan(client, code_url(runtime, brand, 41), "device-aaaa").get_json()["verdict"]
        == "genuine"
    )
    with runtime.db.unit_of_work() as session:
        anti_fraud.lift_blacklist(
            session,
            tenant_id=brand.tenant_id,
            entry_id=entry.id,
            reason="found in the warehouse",
            actor="test",
        )
    assert api_scan(client, url, "device-aaaa").get_json()["verdict"] == "genuine"


def test_auto_blacklisting_after_too_many_devices(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        anti_fraud.update_thresholds(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            clone_device_threshold=3,
            auto_blacklist_device_threshold=4,
        )
    url = code_url(runtime, brand, 50)
    verdicts = [api_scan(client, url, f"device-{n:04d}").get_json()["verdict"] for n in range(5)]
    assert verdicts == ["genuine", "already_verified", "suspicious", "suspicious", "suspicious"]
    with runtime.db.unit_of_work() as session:
        entries = session.scalars(select(BlacklistEntry)).all()
    assert [(e.source, e.reason, e.first_serial) for e in entries] == [
        ("auto", "max_scan_count_exceeded", 50)
    ]
    assert anti_fraud.evaluate_alerts(runtime) >= 2  # the clone and the auto-blacklist
    with runtime.db.unit_of_work() as session:
        kinds = set(session.scalars(select(Alert.kind)).all())
    assert {"clone_suspected", "auto_blacklisted"} <= kinds
    assert anti_fraud.evaluate_alerts(runtime) == 0  # evaluating again raises nothing new


def test_forged_code_clusters_raise_alerts(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    with runtime.db.unit_of_work() as session:
        anti_fraud.update_thresholds(
            session, runtime, tenant_id=brand.tenant_id, forged_cluster_threshold=5
        )
    url = code_url(runtime, brand, 60)
    for n in range(6):
        forged = url[:-3] + f"{n:03d}".translate(str.maketrans("0123456789", "ABCDEFGHIJ"))
        api_scan(client, forged, device=f"forger-{n:04d}", ip="198.51.100.23")
    spool_for(runtime).flush()
    assert anti_fraud.evaluate_alerts(runtime) >= 1
    with runtime.db.unit_of_work() as session:
        alerts = session.scalars(select(Alert).where(Alert.kind == "forged_cluster_ip")).all()
    assert len(alerts) == 1 and alerts[0].count == 6 and alerts[0].subject.startswith("198.51")


def test_a_phones_location_refines_the_verdict(
    client: FlaskClient, runtime: Runtime, brand: Brand
) -> None:
    url = code_url(runtime, brand, 70)
    hangzhou = api_scan(client, url, "device-aaaa", lat=30.25, lon=120.15).get_json()
    assert hangzhou["first_scan"]["place"]["label"] in ("浙江杭州", "杭州")
    beijing = api_scan(client, url, "device-bbbb").get_json()
    refined = client.post(
        f"/api/v1/scans/{beijing['scan_id']}/location",
        json={"lat": 39.90, "lon": 116.40, "accuracy_m": 30},
    )
    assert refined.status_code == 200
    assert refined.get_json()["verdict"] == "suspicious"  # Hangzhou to Beijing in seconds
    assert "北京" in refined.get_json()["place"]["label"]
    bad = client.post(f"/api/v1/scans/{'a' * 26}/location", json={"lat": 1, "lon": 2})
    assert bad.status_code == 404
    with runtime.db.unit_of_work() as session:
        count = session.scalar(
            select(func.count()).select_from(Scan).where(Scan.place_source == "gps")
        )
    assert count == 2


def test_forged_scans_still_spooled_are_written_when_the_process_stops(
    database_url: str, tmp_path: Any, runtime: Runtime
) -> None:
    """A server shutting down (its runtime closing) writes the evidence it still holds."""
    from anti_fraud.invalid import invalid_scan_row, token_hash
    from core.runtime import Runtime as ProcessRuntime
    from tests.conftest import make_settings

    other = ProcessRuntime(make_settings(database_url, tmp_path / "other"))
    try:
        for n in range(3):
            spool_for(other).add(
                invalid_scan_row(
                    other,
                    token=f"FORGED{n}",
                    reason="bad_signature",
                    tenant_id=None,
                    ip=None,
                    stored_ip=None,
                    device=None,
                    user_agent=None,
                    place={},
                )
            )
    finally:
        other.close()
    with runtime.db.read_only() as session:
        found = session.scalars(select(Scan.token_hash).where(Scan.verdict == "counterfeit")).all()
    assert sorted(found) == sorted(token_hash(other, f"FORGED{n}") for n in range(3))
