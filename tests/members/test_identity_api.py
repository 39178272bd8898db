"""Sign-in, the member's own profile and points, and the management of members, through HTTP as
a phone and a brand's staff use them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from sqlalchemy import func, select, update

import console
import members
import scan_service
from core import services as core_services
from core.db import utcnow
from core.models import AuditEntry
from core.ratelimit import MemoryRateLimiter
from core.runtime import Runtime
from members.models import Member, MemberSession, OneTimeCode
from members.otp import RecordingSmsSender, use_rate_limiter, use_sms_sender
from tests.factories import Brand, make_brand

PHONE = "13912345678"
Call = Any


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, slug="acme", quantity=10)


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    return sender


class Clock:
    """The sign-in limits' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    clock = Clock()
    use_rate_limiter(runtime, MemoryRateLimiter(clock=clock))
    return clock


@pytest.fixture
def phone(runtime: Runtime, brand: Brand, sms: RecordingSmsSender, clock: Clock) -> Any:
    return scan_service.create_app().test_client()


def console_client(token: str) -> Call:
    # Plain clients (no ``with``): two apps' clients kept open would interleave contexts.
    http = console.create_app().test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kw: Any) -> Any:
        return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return call


@pytest.fixture
def admin(runtime: Runtime, brand: Brand) -> Call:
    return console_client(brand.admin_token)


def key_of(runtime: Runtime, brand: Brand, role: str) -> str:
    with runtime.db.unit_of_work() as session:
        return core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name=role, role=role
        ).token


SignIn = Any


@pytest.fixture
def signin(phone: Any, sms: RecordingSmsSender, clock: Clock) -> SignIn:
    """Ask for a code (once the last one may be resent) and sign in with it."""

    def run(number: str = PHONE, **extra: Any) -> Any:
        clock.now += 121  # the one-a-minute window has slid past the last code
        sent = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": number})
        assert sent.status_code == 202, sent.get_json()
        return phone.post(
            "/api/v1/members/sign-in",
            json={"brand": "acme", "phone": number, "code": sms.last_code(number), **extra},
        )

    return run


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_actions(runtime: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    with runtime.db.read_only() as session:
        return [
            (a.action, a.target_id, a.detail)
            for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


# --- sign-in ------------------------------------------------------------------------------------


def test_a_phone_signs_in_with_the_code_it_received(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender, signin: SignIn
) -> None:
    sent = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": "139 1234 5678"})
    assert sent.status_code == 202
    answer = sent.get_json()
    assert answer["sent"] is True and answer["expires_in"] == 300
    assert 60 <= answer["resend_after"] <= 120  # the sliding window's own estimate
    assert sms.sent[-1][0] == "+8613912345678" and "acme brand" in sms.sent[-1][1]
    code = sms.last_code()
    done = phone.post(
        "/api/v1/members/sign-in",
        json={"brand": "acme", "phone": PHONE, "code": code, "channel": "wechat-qr"},
    )
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["created"] is True and body["token"].startswith("ms_")
    me = body["member"]
    assert me["phone"] == "139****5678"
    assert me["points"] == {"active": 0, "pending": 0, "next_expiry": None}
    assert len(me["referral_code"]) == 8 and me["tier"] is None
    cookie = done.headers["Set-Cookie"]
    assert "yima_m=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # The bearer token works; so does the cookie the response set.
    assert phone.get("/api/v1/me", headers=bearer(body["token"])).get_json()["id"] == me["id"]
    assert phone.get("/api/v1/me").status_code == 200
    # The code itself is nowhere in the database.
    with runtime.db.read_only() as session:
        stored = session.scalars(select(OneTimeCode)).all()
        assert len(stored) == 1 and code not in stored[0].code_hash
        member = session.get(Member, me["id"])
        assert member is not None and member.channel == "wechat-qr" and member.source == "scan"
        assert member.last_active_at is not None
    # Signing out ends the token and clears the cookie.
    out = phone.post("/api/v1/me/sign-out", headers=bearer(body["token"]))
    assert out.status_code == 204 and "yima_m=;" in out.headers["Set-Cookie"]
    assert phone.get("/api/v1/me", headers=bearer(body["token"])).status_code == 401
    # Signing in again finds the same member.
    sms_again = signin()
    assert sms_again.status_code == 200, sms_again.get_json()
    assert sms_again.get_json()["created"] is False
    assert sms_again.get_json()["member"]["id"] == me["id"]


def test_a_code_opens_one_session_only(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender
) -> None:
    phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE})
    payload = {"brand": "acme", "phone": PHONE, "code": sms.last_code()}
    assert phone.post("/api/v1/members/sign-in", json=payload).status_code == 200
    replay = phone.post("/api/v1/members/sign-in", json=payload)
    assert replay.status_code == 400
    assert replay.get_json()["code"] == "otp_invalid"
    assert replay.headers["Content-Type"] == "application/problem+json"
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(MemberSession)) == 1


def test_an_expired_code_is_refused(runtime: Runtime, phone: Any, sms: RecordingSmsSender) -> None:
    phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE})
    with runtime.db.unit_of_work() as session:
        session.execute(update(OneTimeCode).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    late = phone.post(
        "/api/v1/members/sign-in",
        json={"brand": "acme", "phone": PHONE, "code": sms.last_code()},
    )
    assert late.status_code == 400 and late.get_json()["code"] == "otp_invalid"
    with runtime.db.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 0


def test_wrong_codes_count_even_though_each_answer_is_an_error(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender
) -> None:
    phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE})
    right = sms.last_code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1, 0):
        guess = phone.post(
            "/api/v1/members/sign-in", json={"brand": "acme", "phone": PHONE, "code": wrong}
        )
        assert guess.status_code == 400 and f"{left} attempts left" in guess.get_json()["detail"]
    late = phone.post(
        "/api/v1/members/sign-in", json={"brand": "acme", "phone": PHONE, "code": right}
    )
    assert late.status_code == 400 and late.get_json()["errors"] == {"code": "too many attempts"}


def test_bad_sign_in_requests_are_clear_errors(phone: Any, sms: RecordingSmsSender) -> None:
    bad_phone = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": "12345"})
    assert bad_phone.status_code == 422 and "phone" in bad_phone.get_json()["errors"]
    no_brand = phone.post("/api/v1/members/otp", json={"brand": "nobody", "phone": PHONE})
    assert no_brand.status_code == 404 and no_brand.get_json()["errors"] == {
        "brand": "unknown brand"
    }
    bad_code = phone.post(
        "/api/v1/members/sign-in", json={"brand": "acme", "phone": PHONE, "code": "12ab56"}
    )
    assert bad_code.status_code == 422 and "code" in bad_code.get_json()["errors"]
    bad_sign_in_phone = phone.post(
        "/api/v1/members/sign-in", json={"brand": "acme", "phone": "+1 415", "code": "123456"}
    )
    assert bad_sign_in_phone.status_code == 422
    assert "phone" in bad_sign_in_phone.get_json()["errors"]
    not_json = phone.post("/api/v1/members/otp", data="phone=1", content_type="text/plain")
    assert not_json.status_code == 415
    assert sms.sent == []


def test_asking_for_codes_too_often_is_a_429_with_retry_after(
    phone: Any, sms: RecordingSmsSender, clock: Clock
) -> None:
    first = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE})
    assert first.status_code == 202
    again = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE})
    assert again.status_code == 429
    assert again.get_json()["code"] == "otp_rate_limited"
    wait = int(again.headers["Retry-After"])
    assert 1 <= wait <= 120
    assert len(sms.sent) == 1
    clock.now += wait  # waiting as long as told is enough
    assert (
        phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": PHONE}).status_code == 202
    )
    # Per IP: 20 an hour, whatever the phones.
    for n in range(18):
        other = phone.post(
            "/api/v1/members/otp", json={"brand": "acme", "phone": f"1370000{n:04d}"}
        )
        assert other.status_code == 202, other.get_json()
    flood = phone.post("/api/v1/members/otp", json={"brand": "acme", "phone": "13600000000"})
    assert flood.status_code == 429 and int(flood.headers["Retry-After"]) > 120
    assert len(sms.sent) == 20


def test_the_member_edits_its_profile(phone: Any, sms: RecordingSmsSender, signin: SignIn) -> None:
    token = signin().get_json()["token"]
    changed = phone.patch(
        "/api/v1/me",
        headers=bearer(token),
        json={
            "nickname": " 小明 ",
            "birthday": "1990-05-17",
            "gender": "male",
            "region": "cn-zj/杭州市",
        },
    )
    assert changed.status_code == 200, changed.get_json()
    me = changed.get_json()
    assert (me["nickname"], me["birthday"], me["gender"], me["region"]) == (
        "小明",
        "1990-05-17",
        "male",
        "CN-ZJ/杭州市",
    )
    cleared = phone.patch("/api/v1/me", headers=bearer(token), json={"gender": None})
    assert cleared.get_json()["gender"] is None and cleared.get_json()["nickname"] == "小明"
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    for body, field in (
        ({"nickname": "x" * 33}, "nickname"),
        ({"nickname": "a\u0007b"}, "nickname"),
        ({"birthday": tomorrow}, "birthday"),
        ({"birthday": "1899-12-31"}, "birthday"),
        ({"gender": "robot"}, "gender"),
        ({"region": "Zhejiang"}, "region"),
        ({"phone": "13800000000"}, "phone"),
    ):
        refused = phone.patch("/api/v1/me", headers=bearer(token), json=body)
        assert refused.status_code == 422, body
        assert field in refused.get_json()["errors"], refused.get_json()
    assert phone.get("/api/v1/me", headers=bearer(token)).get_json()["region"] == "CN-ZJ/杭州市"
    assert phone.get("/api/v1/me").status_code == 200  # the cookie
    assert phone.get("/api/v1/me", headers=bearer("ms_forged")).status_code == 401


def test_the_member_sees_its_points_and_their_expiry(
    runtime: Runtime, brand: Brand, phone: Any, sms: RecordingSmsSender, signin: SignIn
) -> None:
    body = signin().get_json()
    token, member_id = body["token"], body["member"]["id"]
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        for n, (points, days) in enumerate(((100, 10), (50, 40), (30, 10))):
            members.earn(
                session,
                tenant_id=brand.tenant_id,
                member_id=member_id,
                points=points,
                business_key=f"test:{n}",
                expiry=members.Expiry("days", days),
                reason="scan",
                now=now,
            )
    found = phone.get("/api/v1/me/points", headers=bearer(token)).get_json()
    assert found["active"] == 180 and found["pending"] == 0
    soon = dt.datetime.fromisoformat(found["next_expiry"]["at"])
    assert abs(soon - (now + dt.timedelta(days=10))) < dt.timedelta(seconds=1)
    assert found["next_expiry"]["points"] == 130
    assert [e["points"] for e in found["expiring"]] == [130, 50]
    me = phone.get("/api/v1/me", headers=bearer(token)).get_json()
    assert me["points"]["next_expiry"]["points"] == 130
    first = phone.get("/api/v1/me/points/history?limit=2", headers=bearer(token)).get_json()
    assert [i["points"] for i in first["items"]] == [30, 50]
    assert first["items"][0]["kind"] == "earn" and first["next_after"] is not None
    rest = phone.get(
        f"/api/v1/me/points/history?limit=2&after={first['next_after']}", headers=bearer(token)
    ).get_json()
    assert [i["points"] for i in rest["items"]] == [100] and rest["next_after"] is None
    assert phone.get("/api/v1/me/points/history?limit=0", headers=bearer(token)).status_code == 422


def test_a_member_erases_itself(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender, signin: SignIn
) -> None:
    body = signin().get_json()
    gone = phone.delete("/api/v1/me", headers=bearer(body["token"]))
    assert gone.status_code == 204 and "yima_m=;" in gone.headers["Set-Cookie"]
    assert phone.get("/api/v1/me", headers=bearer(body["token"])).status_code == 401
    again = signin()
    assert again.status_code == 200 and again.get_json()["created"] is True
    assert again.get_json()["member"]["id"] != body["member"]["id"]
    [(_action, target, detail)] = [a for a in audit_actions(runtime) if a[0] == "members.erase"]
    assert target == str(body["member"]["id"]) and detail["sessions_revoked"] == 1


# --- management -------------------------------------------------------------------------------


def test_staff_list_and_filter_members_with_phones_masked(
    runtime: Runtime, brand: Brand, phone: Any, sms: RecordingSmsSender, admin: Call, signin: SignIn
) -> None:
    ids = []
    for n, channel in enumerate(("shop", "shop", "wechat")):
        done = signin(f"1380013800{n}", channel=channel)
        assert done.status_code == 200, done.get_json()
        ids.append(done.get_json()["member"]["id"])
    page = admin("GET", "/members?limit=2").get_json()
    assert [m["id"] for m in page["items"]] == ids[:2] and page["next_after"] == ids[1]
    assert page["items"][0]["phone"] == "138****8000"
    rest = admin("GET", f"/members?limit=2&after={page['next_after']}").get_json()
    assert [m["id"] for m in rest["items"]] == ids[2:] and rest["next_after"] is None
    by_phone = admin("GET", "/members?phone=%2B86%20138%200013%208001").get_json()
    assert [m["id"] for m in by_phone["items"]] == [ids[1]]
    by_channel = admin("GET", "/members?channel=shop&status=active").get_json()
    assert [m["id"] for m in by_channel["items"]] == ids[:2]
    today = dt.date.today()
    since = admin("GET", f"/members?created_since={today - dt.timedelta(days=1)}").get_json()
    assert len(since["items"]) == 3
    until = admin("GET", f"/members?created_until={today - dt.timedelta(days=1)}").get_json()
    assert until["items"] == []
    for query, field in (
        ("phone=12", "phone"),
        ("status=gone", "status"),
        ("created_since=yesterday", "created_since"),
        ("created_since=0001-01-01T00:00:00", "created_since"),  # before year 1 in UTC
        ("tier_id=x", "tier_id"),
    ):
        bad = admin("GET", f"/members?{query}")
        assert bad.status_code == 422 and field in bad.get_json()["errors"], query
    one = admin("GET", f"/members/{ids[0]}").get_json()
    assert one["phone"] == "138****8000" and one["points"]["active"] == 0
    assert one["channel"] == "shop" and one["invited"] == 0


def test_roles_see_what_they_may(
    runtime: Runtime, brand: Brand, phone: Any, sms: RecordingSmsSender, admin: Call, signin: SignIn
) -> None:
    member_id = signin().get_json()["member"]["id"]
    service = console_client(key_of(runtime, brand, "customer_service"))
    listed = service("GET", "/members").get_json()
    assert listed["items"][0]["phone"] == "139****5678"
    assert service("GET", f"/members/{member_id}").get_json()["phone"] == "139****5678"
    assert service("GET", f"/members/{member_id}/phone").status_code == 403
    assert service("GET", "/members/export.csv?unmasked=true").status_code == 403
    factory = console_client(key_of(runtime, brand, "factory_operator"))
    assert factory("GET", "/members").status_code == 403
    assert factory("GET", f"/members/{member_id}").status_code == 403
    analyst = console_client(key_of(runtime, brand, "analyst"))
    assert analyst("GET", "/members").status_code == 200
    assert (
        analyst(
            "POST",
            f"/members/{member_id}/adjustments",
            json={"points": 5, "reason": "x", "idempotency_key": "k1"},
        ).status_code
        == 403
    )
    # The full number, for those who hold pii, and every look is written down.
    full = admin("GET", f"/members/{member_id}/phone")
    assert full.status_code == 200 and full.get_json() == {"phone": "+8613912345678"}
    views = [a for a in audit_actions(runtime) if a[0] == "members.phone.view"]
    assert views == [("members.phone.view", str(member_id), {})]


def test_another_brands_member_is_not_found(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender, admin: Call, signin: SignIn
) -> None:
    member_id = signin().get_json()["member"]["id"]
    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=10)
    other = console_client(rival.admin_token)
    for path in (f"/members/{member_id}", f"/members/{member_id}/phone"):
        missing = other("GET", path)
        assert missing.status_code == 404 and missing.get_json()["code"] == "member_not_found"
    assert other("GET", "/members").get_json()["items"] == []
    adjust = other(
        "POST",
        f"/members/{member_id}/adjustments",
        json={"points": 5, "reason": "x", "idempotency_key": "k1"},
    )
    assert adjust.status_code == 404
    assert other("POST", f"/members/{member_id}/erase").status_code == 404
    assert admin("GET", "/members/99999").status_code == 404


def test_exports_are_csv_for_excel_and_unmasked_ones_are_audited(
    runtime: Runtime, brand: Brand, phone: Any, sms: RecordingSmsSender, admin: Call, signin: SignIn
) -> None:
    for n in range(3):
        token = signin(f"1350000000{n}", channel="shop" if n else "mall").get_json()
        phone.patch("/api/v1/me", headers=bearer(token["token"]), json={"nickname": f"=cmd|{n}"})
    masked = admin("GET", "/members/export.csv")
    assert masked.status_code == 200 and masked.mimetype == "text/csv"
    raw = masked.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "phone", "nickname"] and len(rows) == 4
    assert [r[1] for r in rows[1:]] == ["135****0000", "135****0001", "135****0002"]
    assert rows[1][2] == "'=cmd|0"  # a nickname never runs as a spreadsheet formula
    full = admin("GET", "/members/export.csv?unmasked=true&channel=shop")
    assert full.status_code == 200
    rows = list(csv.reader(io.StringIO(full.get_data().decode("utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == ["+8613500000001", "+8613500000002"]
    exports = [a for a in audit_actions(runtime) if a[0] == "members.export"]
    assert exports[-1][2] == {"filters": {"channel": "shop"}, "rows": 2, "unmasked": True}
    by_phone = admin("GET", "/members/export.csv?unmasked=1&phone=13500000001")
    assert len(by_phone.get_data().decode("utf-8-sig").splitlines()) == 2
    detail = [a for a in audit_actions(runtime) if a[0] == "members.export"][-1][2]
    assert detail["filters"] == {"phone": "given"} and "13500000001" not in str(detail)
    assert admin("GET", "/members/export.csv?unmasked=maybe").status_code == 422


def test_adjustments_need_a_reason_and_apply_once(
    runtime: Runtime, brand: Brand, phone: Any, sms: RecordingSmsSender, signin: SignIn
) -> None:
    member_id = signin().get_json()["member"]["id"]
    service = console_client(key_of(runtime, brand, "customer_service"))
    path = f"/members/{member_id}/adjustments"
    for body, field in (
        ({"points": 50, "idempotency_key": "t-1"}, "reason"),
        ({"points": 50, "reason": "   ", "idempotency_key": "t-1"}, "reason"),
        ({"points": 0, "reason": "goodwill", "idempotency_key": "t-1"}, "points"),
        ({"points": "50", "reason": "goodwill", "idempotency_key": "t-1"}, "points"),
        ({"points": 50, "reason": "goodwill"}, "idempotency_key"),
    ):
        refused = service("POST", path, json=body)
        assert refused.status_code == 422 and field in refused.get_json()["errors"], body
    body = {"points": 50, "reason": "parcel lost in transit", "idempotency_key": "ticket-881"}
    first = service("POST", path, json=body)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["applied"] is True
    assert first.get_json()["balance"] == {"active": 50, "pending": 0}
    second = service("POST", path, json=body)
    assert second.status_code == 200 and second.get_json()["applied"] is False
    assert second.get_json()["balance"] == {"active": 50, "pending": 0}
    debit = service(
        "POST", path, json={"points": -80, "reason": "refund", "idempotency_key": "ticket-882"}
    )
    assert debit.status_code == 201 and debit.get_json()["balance"]["active"] == -30
    reused = service(
        "POST", path, json={"points": 10, "reason": "oops", "idempotency_key": "ticket-881"}
    )
    assert reused.status_code == 409
    adjusted = [a for a in audit_actions(runtime) if a[0] == "members.points.adjust"]
    assert [a[2]["points"] for a in adjusted] == [50, -80]
    assert adjusted[0][2]["reason"] == "parcel lost in transit"


def test_staff_erase_a_member(
    runtime: Runtime, phone: Any, sms: RecordingSmsSender, admin: Call, signin: SignIn
) -> None:
    body = signin().get_json()
    member_id = body["member"]["id"]
    gone = admin("POST", f"/members/{member_id}/erase")
    assert gone.status_code == 200 and gone.get_json()["already"] is False
    again = admin("POST", f"/members/{member_id}/erase")
    assert again.status_code == 200 and again.get_json()["already"] is True
    assert phone.get("/api/v1/me", headers=bearer(body["token"])).status_code == 401
    shown = admin("GET", f"/members/{member_id}").get_json()
    assert shown["status"] == "erased" and shown["phone"] is None and shown["nickname"] is None
    assert admin("GET", f"/members/{member_id}/phone").status_code == 409
    assert admin("GET", "/members?phone=13912345678").get_json()["items"] == []
    erasures = [a for a in audit_actions(runtime) if a[0] == "members.erase"]
    assert len(erasures) == 1 and erasures[0][1] == str(member_id)


def test_the_scan_api_documents_the_member_routes(runtime: Runtime, brand: Brand) -> None:
    with scan_service.create_app().test_client() as http:
        spec = http.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/members/sign-in" in spec["paths"]
    assert spec["paths"]["/api/v1/me"]["get"]["security"] == [{"memberToken": []}]
    assert spec["paths"]["/api/v1/members/otp"]["post"]["security"] == []
    with console.create_app().test_client() as http:
        spec = http.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/members/{member_id}/phone" in spec["paths"]
    assert "/api/v1/members/export.csv" in spec["paths"]
