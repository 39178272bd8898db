"""Alert notifications: rules, the outbox, signed webhooks to a real local HTTP server and e-mail
to a real local SMTP server, retries, and once-only under concurrent runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

import console
from anti_fraud import notify
from anti_fraud.models import Alert, DiversionAlert, Notification
from core import services as core_services
from core.db import utcnow
from core.mail import SmtpMailer, use_mailer
from core.runtime import Runtime
from tests.conftest import PG_URL
from tests.factories import Brand, make_brand

# --- a real webhook receiver and a real SMTP server -------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server that answers each POST with the next status of ``answers`` (then 200)."""

    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.received.append(Received(dict(self.headers.items()), body))
                status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/yima"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


# --- the brand, its API, its alerts -----------------------------------------------------------


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10)


def client_for(token: str) -> Any:
    client = console.create_app().test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kw: Any) -> Any:
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return call


@pytest.fixture
def api(runtime: Runtime, brand: Brand) -> Any:
    return client_for(brand.admin_token)


def key_for(runtime: Runtime, tenant_id: int, role: str) -> str:
    with runtime.db.unit_of_work() as session:
        return core_services.create_api_key(
            session, tenant_id=tenant_id, name=role, role=role
        ).token


def raise_alert(runtime: Runtime, brand: Brand, *, count: int, key: str = "ip:1") -> int:
    with runtime.db.unit_of_work() as session:
        alert = Alert(
            tenant_id=brand.tenant_id,
            kind="forged_cluster_ip",
            dedupe_key=key,
            subject="203.0.113.0/24",
            count=count,
            detail={"window_minutes": 60},
            created_at=utcnow(),
        )
        session.add(alert)
        session.flush()
        return alert.id


def webhook_rule(api: Any, url: str, **over: Any) -> dict[str, Any]:
    body = {
        "name": "安全团队 webhook",
        "kinds": ["forged_cluster_ip", "diversion"],
        "min_count": 20,
        "min_score": 2.0,
        "channel": "webhook",
        "target": url,
        **over,
    }
    made = api("POST", "/alert-rules", json=body)
    assert made.status_code == 201, made.get_json()
    return dict(made.get_json())


def verify(secret: str, got: Received) -> dict[str, Any]:
    """What a receiver does: check the signature over the timestamp and the body."""
    parts = dict(p.split("=", 1) for p in got.headers["X-Yima-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), f"{parts['t']}.".encode() + got.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return dict(json.loads(got.body))


def outbox(runtime: Runtime) -> list[Notification]:
    with runtime.db.read_only() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


# --- tests ------------------------------------------------------------------------------------


def test_an_alert_over_the_threshold_reaches_the_webhook_once_signed(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    rule = webhook_rule(api, receiver.url)
    secret = rule["secret"]
    assert secret.startswith("whsec_")
    listed = api("GET", "/alert-rules").get_json()["items"]
    assert [r["name"] for r in listed] == ["安全团队 webhook"]
    assert listed[0]["secret"] is None  # shown once, when it was made

    raise_alert(runtime, brand, count=5, key="small")  # under min_count: not notified
    alert_id = raise_alert(runtime, brand, count=25)
    assert notify.notify_alerts(runtime) == (1, 1)
    assert notify.notify_alerts(runtime) == (0, 0)  # matched again: nothing new, nothing resent

    (got,) = receiver.received
    payload = verify(secret, got)
    assert payload["kind"] == "forged_cluster_ip" and payload["alert_id"] == alert_id
    assert payload["count"] == 25 and payload["subject"] == "203.0.113.0/24"
    assert got.headers["X-Yima-Event"] == "forged_cluster_ip"
    (row,) = outbox(runtime)
    assert got.headers["X-Yima-Delivery"] == str(row.id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    page = api("GET", "/alert-notifications").get_json()
    assert [(n["status"], n["event_key"]) for n in page["items"]] == [("sent", f"alert:{alert_id}")]


def test_a_failing_webhook_is_retried_with_back_off_then_given_up(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    webhook_rule(api, receiver.url)
    raise_alert(runtime, brand, count=30)
    receiver.answers = [500, 503]
    now = utcnow()
    assert notify.notify_alerts(runtime, now=now) == (1, 0)
    (row,) = outbox(runtime)
    assert (row.status, row.attempts, row.last_error) == ("retry", 1, "HTTP 500")
    assert row.next_attempt_at == now + dt.timedelta(minutes=1)
    assert notify.notify_alerts(runtime, now=now + dt.timedelta(seconds=30)) == (0, 0)  # not due
    assert notify.notify_alerts(runtime, now=now + dt.timedelta(minutes=1)) == (0, 0)
    (row,) = outbox(runtime)
    assert (row.status, row.attempts, row.last_error) == ("retry", 2, "HTTP 503")
    assert row.next_attempt_at == now + dt.timedelta(minutes=3)  # 1 + 2 minutes
    assert notify.notify_alerts(runtime, now=now + dt.timedelta(minutes=3)) == (0, 1)
    assert [r.status for r in outbox(runtime)] == ["sent"]
    assert len(receiver.received) == 3

    # A receiver that never answers well: given up after MAX_ATTEMPTS, the reason kept.
    raise_alert(runtime, brand, count=40, key="ip:2")
    receiver.answers = [500] * notify.MAX_ATTEMPTS
    later = now + dt.timedelta(minutes=5)
    for _ in range(notify.MAX_ATTEMPTS):
        notify.notify_alerts(runtime, now=later)
        later += dt.timedelta(hours=1)
    failed = outbox(runtime)[-1]
    assert (failed.status, failed.attempts) == ("failed", notify.MAX_ATTEMPTS)
    assert failed.last_error == "HTTP 500"
    assert notify.notify_alerts(runtime, now=later + dt.timedelta(days=1)) == (0, 0)


def test_e_mail_goes_through_a_real_smtp_server(
    runtime: Runtime, brand: Brand, api: Any, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    use_mailer(runtime, SmtpMailer(f"smtp://127.0.0.1:{port}", "Yima <alerts@yima.test>"))
    made = api(
        "POST",
        "/alert-rules",
        json={
            "name": "值班邮箱",
            "kinds": ["diversion"],
            "min_score": 1.5,
            "channel": "email",
            "target": "ops@brand.test; lead@brand.test",
        },
    )
    assert made.status_code == 201 and made.get_json()["secret"] is None
    assert made.get_json()["target"] == "ops@brand.test, lead@brand.test"
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        for shipment, score in ((1, 1.0), (2, 3.5)):
            session.add(
                DiversionAlert(
                    tenant_id=brand.tenant_id,
                    distributor_id=7,
                    shipment_id=shipment,
                    score=score,
                    code_count=3,
                    scan_count=4,
                    regions=["CN-JS"],
                    places=[{"region": "CN-ZJ", "source": "gps"}],
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
    assert notify.notify_alerts(runtime) == (1, 1)
    ((sender, recipients, content),) = inbox.messages
    assert sender == "alerts@yima.test"
    assert sorted(recipients) == ["lead@brand.test", "ops@brand.test"]
    text = content.decode()
    assert "Subject:" in text and "shipment_id: 2" in text and "score: 3.5" in text


def test_a_test_notification_says_at_once_whether_it_went(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    rule = webhook_rule(api, receiver.url)
    sent = api("POST", f"/alert-rules/{rule['id']}/test")
    assert sent.status_code == 200 and sent.get_json()["status"] == "sent"
    assert verify(rule["secret"], receiver.received[0])["event"] == "test"
    receiver.answers = [404]
    failed = api("POST", f"/alert-rules/{rule['id']}/test").get_json()
    assert (failed["status"], failed["last_error"]) == ("retry", "HTTP 404")

    # Rotating the secret: the next webhook is signed with the new one.
    body = {k: rule[k] for k in ("name", "kinds", "min_count", "min_score", "channel", "target")}
    rotated = api("PUT", f"/alert-rules/{rule['id']}?rotate_secret=true", json=body).get_json()
    assert rotated["secret"] and rotated["secret"] != rule["secret"]
    api("POST", f"/alert-rules/{rule['id']}/test")
    assert verify(rotated["secret"], receiver.received[-1])["event"] == "test"
    kept = api("PUT", f"/alert-rules/{rule['id']}", json={**body, "enabled": False}).get_json()
    assert kept["secret"] is None and kept["enabled"] is False


def test_old_alerts_disabled_rules_and_deleted_rules_send_nothing(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    raise_alert(runtime, brand, count=50, key="before")  # raised before the rule existed
    rule = webhook_rule(api, receiver.url)
    assert notify.notify_alerts(runtime) == (0, 0)
    body = {k: rule[k] for k in ("name", "kinds", "min_count", "min_score", "channel", "target")}
    api("PUT", f"/alert-rules/{rule['id']}", json={**body, "enabled": False})
    raise_alert(runtime, brand, count=50, key="after")
    assert notify.notify_alerts(runtime) == (0, 0)
    assert api("DELETE", f"/alert-rules/{rule['id']}").status_code == 204
    assert api("GET", "/alert-rules").get_json()["items"] == []
    assert receiver.received == []


def test_bad_rules_are_422_and_rules_stay_inside_their_brand(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    base = {"name": "r", "kinds": ["diversion"], "channel": "webhook", "target": receiver.url}
    for over, field_name in (
        ({"kinds": ["nonsense"]}, "kinds"),
        ({"kinds": []}, "kinds"),
        ({"channel": "sms"}, "channel"),
        ({"channel": "email", "target": "not-an-address"}, "target"),
        ({"target": "ftp://example.com/x"}, "target"),
        ({"min_count": 0}, "min_count"),
        ({"extra": 1}, "extra"),
    ):
        answer = api("POST", "/alert-rules", json={**base, **over})
        assert answer.status_code == 422, over
        assert answer.content_type == "application/problem+json"
        assert field_name in answer.get_json()["errors"], answer.get_json()
    assert api("POST", "/alert-rules", json=base).status_code == 201
    again = api("POST", "/alert-rules", json=base)
    assert again.status_code == 409 and again.get_json()["errors"] == {"name": "already taken"}
    rule_id = api("GET", "/alert-rules").get_json()["items"][0]["id"]

    with runtime.db.unit_of_work() as session:
        rival = make_brand(session, runtime, slug="rival", quantity=1)
    theirs = client_for(rival.admin_token)
    assert theirs("GET", "/alert-rules").get_json()["items"] == []
    for method, path in (
        ("PUT", f"/alert-rules/{rule_id}"),
        ("DELETE", f"/alert-rules/{rule_id}"),
        ("POST", f"/alert-rules/{rule_id}/test"),
    ):
        kw = {"json": base} if method == "PUT" else {}
        assert theirs(method, path, **kw).status_code == 404
    analyst = client_for(key_for(runtime, brand.tenant_id, "analyst"))
    assert analyst("POST", "/alert-rules", json={**base, "name": "a2"}).status_code == 201
    factory = client_for(key_for(runtime, brand.tenant_id, "factory_operator"))
    assert factory("POST", "/alert-rules", json={**base, "name": "f"}).status_code == 403
    assert factory("GET", "/alert-rules").status_code == 200


@pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_rounds_send_each_alert_once(
    runtime: Runtime, brand: Brand, api: Any, receiver: Receiver
) -> None:
    webhook_rule(api, receiver.url)
    ids = [raise_alert(runtime, brand, count=30 + i, key=f"ip:{i}") for i in range(10)]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def round_() -> None:
        try:
            barrier.wait(timeout=30)
            notify.notify_alerts(runtime)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=round_) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r.event_key for r in outbox(runtime)) == sorted(f"alert:{i}" for i in ids)
    assert all(r.status == "sent" and r.attempts == 1 for r in outbox(runtime))
    delivered = [json.loads(r.body)["alert_id"] for r in receiver.received]
    assert sorted(delivered) == sorted(ids)  # each alert once, never twice
