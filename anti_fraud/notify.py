"""Alert notifications: rules that say whom to tell of which alerts, and an outbox that tells
them by e-mail or signed webhook, with retries.

- A rule (``anti_fraud_alert_rules``) names alert kinds (forged-code clusters, clone suspicions,
  auto-blacklists, diversion), a threshold (the alert's count, or a diversion alert's score)
  and one channel: e-mail addresses, or a webhook URL with a signing secret kept sealed under
  the brand's data key.
- :func:`match_alerts` (every minute on beat, and ``yima alerts notify``) writes one outbox row
  per (rule, alert) for the alerts that reach a rule's threshold after the rule was made. The
  unique ``(rule_id, event_key)`` makes it idempotent: re-runs and concurrent runs add each row
  once, so an alert is notified once per rule however often it is matched.
- :func:`deliver` sends one row while holding its lock (``FOR UPDATE SKIP LOCKED``: two workers
  never send the same row at once) and marks it ``sent``, or schedules a retry after 1, 2, 4 ...
  60 minutes; after :data:`MAX_ATTEMPTS` it is ``failed`` with the last error kept. Delivery is
  at-least-once (a worker killed after the send and before the commit sends again), so every
  webhook carries ``X-Yima-Delivery``, the row's id, for the receiver to drop repeats.

A webhook is ``POST`` JSON signed like Stripe's: ``X-Yima-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" under the secret>``; receivers check the signature and the time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from anti_fraud.models import (
    Alert,
    AlertRule,
    DiversionAlert,
    Notification,
)
from anti_fraud.schemas import AlertRuleIn
from core.db import insert_ignore, utcnow
from core.errors import ConflictError, NotFoundError, ValidationFailedError
from core.keyring import open_sealed, seal
from core.mail import Mail, mailer_for
from core.runtime import Runtime
from core.services import data_key

MAX_ATTEMPTS = 8
WEBHOOK_TIMEOUT_SECONDS = 5.0
LOOKBACK = dt.timedelta(days=7)  # alerts older than this are not notified by a new rule
KIND_LABELS = {
    "forged_cluster_ip": "伪码聚集（同一 IP）forged codes from one IP",
    "forged_cluster_region": "伪码聚集（同一地区）forged codes in one region",
    "clone_suspected": "疑似克隆码 suspected cloned code",
    "auto_blacklisted": "自动拉黑 code blacklisted automatically",
    "diversion": "窜货 diversion",
}


class AlertRuleNotFoundError(NotFoundError):
    code = "alert_rule_not_found"


def _check_target(rule: AlertRuleIn, production: bool) -> str:
    """The target in its stored form: addresses joined by ', ', or the webhook URL."""
    if rule.channel == "email":
        addresses = [a.strip() for a in rule.target.replace(";", ",").split(",") if a.strip()]
        bad = [a for a in addresses if a.count("@") != 1 or " " in a or "." not in a.split("@")[1]]
        if not addresses or bad or len(addresses) > 20:
            raise ValidationFailedError.field("target", "1-20 e-mail addresses, comma-separated")
        return ", ".join(addresses)
    parts = urlsplit(rule.target.strip())
    schemes = ("https",) if production else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise ValidationFailedError.field(
            "target", "an https:// URL" if production else "an http(s):// URL"
        )
    return rule.target.strip()


def _secret_key(session: Session, runtime: Runtime, tenant_id: int) -> bytes:
    return data_key(
        session,
        master_key=runtime.settings.master_key_bytes,
        tenant_id=tenant_id,
        purpose="webhooks",
    )


def _aad(rule_id: int) -> bytes:
    return f"yima/webhook/{rule_id}".encode()


@dataclass(frozen=True)
class SavedRule:
    rule: AlertRule
    secret: str | None  # the webhook secret, shown once when it is made


def _unique_name(session: Session, tenant_id: int, name: str, rule_id: int | None) -> None:
    taken = session.scalar(
        select(AlertRule.id).where(AlertRule.tenant_id == tenant_id, AlertRule.name == name)
    )
    if taken is not None and taken != rule_id:
        raise ConflictError(f"a rule named {name!r} exists", errors={"name": "already taken"})


def create_rule(
    session: Session, runtime: Runtime, *, tenant_id: int, body: AlertRuleIn
) -> SavedRule:
    """A new rule; a webhook rule gets a new signing secret, returned once."""
    target = _check_target(body, runtime.settings.env == "production")
    _unique_name(session, tenant_id, body.name, None)
    now = utcnow()
    rule = AlertRule(
        tenant_id=tenant_id,
        name=body.name,
        kinds=body.kinds,
        min_count=body.min_count,
        min_score=body.min_score,
        channel=body.channel,
        target=target,
        enabled=body.enabled,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    secret = _new_secret(session, runtime, rule) if rule.channel == "webhook" else None
    return SavedRule(rule, secret)


def _new_secret(session: Session, runtime: Runtime, rule: AlertRule) -> str:
    secret = "whsec_" + secrets.token_urlsafe(32)
    rule.secret_sealed = seal(
        _secret_key(session, runtime, rule.tenant_id), secret.encode(), _aad(rule.id)
    )
    session.flush()
    return secret


def update_rule(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    rule_id: int,
    body: AlertRuleIn,
    rotate_secret: bool = False,
) -> SavedRule:
    """Replace the rule's settings; a webhook rule keeps its secret unless ``rotate_secret`` (or
    it had none, having been an e-mail rule)."""
    rule = get_rule_or_raise(session, tenant_id=tenant_id, rule_id=rule_id, for_update=True)
    target = _check_target(body, runtime.settings.env == "production")
    _unique_name(session, tenant_id, body.name, rule.id)
    rule.name, rule.kinds, rule.min_count, rule.min_score = (
        body.name,
        body.kinds,
        body.min_count,
        body.min_score,
    )
    rule.channel, rule.target, rule.enabled, rule.updated_at = (
        body.channel,
        target,
        body.enabled,
        utcnow(),
    )
    secret = None
    if rule.channel == "webhook" and (rotate_secret or rule.secret_sealed is None):
        secret = _new_secret(session, runtime, rule)
    elif rule.channel == "email":
        rule.secret_sealed = None
    session.flush()
    return SavedRule(rule, secret)


def delete_rule(session: Session, *, tenant_id: int, rule_id: int) -> None:
    """The rule and its outbox rows (sent or not) go."""
    rule = get_rule_or_raise(session, tenant_id=tenant_id, rule_id=rule_id, for_update=True)
    session.delete(rule)
    session.flush()


def get_rule_or_raise(
    session: Session, *, tenant_id: int, rule_id: int, for_update: bool = False
) -> AlertRule:
    stmt = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.tenant_id == tenant_id)
    if for_update:
        stmt = stmt.with_for_update()
    found = session.scalars(stmt).first()
    if found is None:
        raise AlertRuleNotFoundError(f"no alert rule {rule_id}")
    return found


def list_rules(session: Session, *, tenant_id: int) -> Sequence[AlertRule]:
    return session.scalars(
        select(AlertRule).where(AlertRule.tenant_id == tenant_id).order_by(AlertRule.id)
    ).all()


def list_notifications(
    session: Session,
    *,
    tenant_id: int,
    rule_id: int | None = None,
    status: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Sequence[Notification]:
    """The outbox, newest first (what was sent, what is retrying and why)."""
    stmt = select(Notification).where(Notification.tenant_id == tenant_id)
    if rule_id is not None:
        stmt = stmt.where(Notification.rule_id == rule_id)
    if status is not None:
        stmt = stmt.where(Notification.status == status)
    if after_id is not None:
        stmt = stmt.where(Notification.id < after_id)
    return session.scalars(stmt.order_by(Notification.id.desc()).limit(limit)).all()


# --- matching -----------------------------------------------------------------------------------


def _alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "event": "alert",
        "kind": alert.kind,
        "alert_id": alert.id,
        "subject": alert.subject,
        "count": alert.count,
        "detail": alert.detail,
        "status": alert.status,
        "created_at": alert.created_at.isoformat(),
    }


def _diversion_payload(alert: DiversionAlert) -> dict[str, Any]:
    return {
        "event": "alert",
        "kind": "diversion",
        "alert_id": alert.id,
        "distributor_id": alert.distributor_id,
        "shipment_id": alert.shipment_id,
        "score": alert.score,
        "code_count": alert.code_count,
        "scan_count": alert.scan_count,
        "authorised_regions": alert.regions,
        "places": alert.places[:10],
        "status": alert.status,
        "first_seen_at": alert.first_seen_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
    }


def match_alerts(session: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Outbox rows for every enabled rule's new alerts; the ids of the rows added (sent by
    :func:`notify_alerts` after they are committed)."""
    now = now or utcnow()
    added: list[int] = []
    for rule in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))).all():
        since = max(rule.created_at, now - LOOKBACK)
        events: list[tuple[str, dict[str, Any]]] = []
        kinds = [k for k in rule.kinds if k != "diversion"]
        if kinds:
            for alert in session.scalars(
                select(Alert).where(
                    Alert.tenant_id == rule.tenant_id,
                    Alert.kind.in_(kinds),
                    Alert.count >= rule.min_count,
                    Alert.created_at >= since,
                )
            ):
                events.append((f"alert:{alert.id}", _alert_payload(alert)))
        if "diversion" in rule.kinds:
            for found in session.scalars(
                select(DiversionAlert).where(
                    DiversionAlert.tenant_id == rule.tenant_id,
                    DiversionAlert.score >= rule.min_score,
                    DiversionAlert.last_seen_at >= since,
                    DiversionAlert.status != "dismissed",
                )
            ):
                events.append((f"diversion:{found.id}", _diversion_payload(found)))
        for key, payload in events:
            if insert_ignore(
                session,
                Notification.__table__,
                {
                    "tenant_id": rule.tenant_id,
                    "rule_id": rule.id,
                    "event_key": key,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                },
            ):
                notification_id = session.scalar(
                    select(Notification.id).where(
                        Notification.rule_id == rule.id, Notification.event_key == key
                    )
                )
                assert notification_id is not None
                added.append(notification_id)
    return added


def send_test(session: Session, runtime: Runtime, *, tenant_id: int, rule_id: int) -> Notification:
    """Send a test notification through the rule now (its outcome is on the returned row)."""
    rule = get_rule_or_raise(session, tenant_id=tenant_id, rule_id=rule_id)
    now = utcnow()
    row = Notification(
        tenant_id=tenant_id,
        rule_id=rule.id,
        event_key=f"test:{secrets.token_hex(8)}",
        payload={"event": "test", "kind": "test", "rule": rule.name, "sent_at": now.isoformat()},
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    deliver(session, runtime, notification_id=row.id, now=now)
    return row


# --- delivering ---------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A channel did not take the message (the reason is kept on the row)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Yima-Signature`` header of a webhook body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _post(rule: AlertRule, secret: str, row: Notification, now: dt.datetime) -> None:
    body = json.dumps(row.payload, ensure_ascii=False, sort_keys=True).encode()
    stamp = int(now.timestamp())
    request = urllib.request.Request(
        rule.target,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Yima-Webhooks/1",
            "X-Yima-Event": str(row.payload.get("kind", "alert")),
            "X-Yima-Delivery": str(row.id),
            "X-Yima-Signature": signature(secret, stamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


def _mail(runtime: Runtime, rule: AlertRule, row: Notification) -> None:
    payload = row.payload
    kind = str(payload.get("kind"))
    label = KIND_LABELS.get(kind, "测试 test" if kind == "test" else kind)
    subject = f"【一码告警 Yima alert】{label}"
    if "subject" in payload:
        subject += f": {payload['subject']}"
    lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in payload.items()]
    text = "\n".join([f"规则 Rule: {rule.name}", "", *lines])
    try:
        mailer_for(runtime).send(
            Mail(tuple(a.strip() for a in rule.target.split(",")), subject[:200], text)
        )
    except Exception as exc:  # the mailer's errors are many (SMTP, socket, TLS)
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


def retry_delay(attempts: int) -> dt.timedelta:
    """Wait before the next try after ``attempts`` failed ones: 1, 2, 4 ... 60 minutes."""
    return dt.timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


def deliver(
    session: Session, runtime: Runtime, *, notification_id: int, now: dt.datetime | None = None
) -> str | None:
    """Send one notification if it is due and nobody else holds it; its status after, or None
    when there was nothing to do."""
    now = now or utcnow()
    row = session.scalars(
        select(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status.in_(("pending", "retry")),
            Notification.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    rule = session.get(AlertRule, row.rule_id)
    assert rule is not None
    row.attempts += 1
    try:
        if rule.channel == "webhook":
            if rule.secret_sealed is None:
                raise DeliveryError("the webhook has no secret")
            secret = open_sealed(
                _secret_key(session, runtime, rule.tenant_id), rule.secret_sealed, _aad(rule.id)
            ).decode()
            _post(rule, secret, row, now)
        else:
            _mail(runtime, rule, row)
    except DeliveryError as exc:
        row.last_error = str(exc)[:300]
        if row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
        else:
            row.status = "retry"
            row.next_attempt_at = now + retry_delay(row.attempts)
    else:
        row.status, row.sent_at, row.last_error = "sent", now, None
    session.flush()
    return row.status


def due_notifications(session: Session, *, now: dt.datetime, limit: int = 500) -> list[int]:
    """Outbox rows due now: never sent (a lost task, a crashed worker) or due for a retry."""
    return list(
        session.scalars(
            select(Notification.id)
            .where(
                Notification.status.in_(("pending", "retry")), Notification.next_attempt_at <= now
            )
            .order_by(Notification.next_attempt_at)
            .limit(limit)
        )
    )


def notify_alerts(runtime: Runtime, *, now: dt.datetime | None = None) -> tuple[int, int]:
    """One round: match new alerts to the rules, then send what is due, each row in its own unit
    of work; (rows added, rows sent)."""
    now = now or utcnow()
    with runtime.db.unit_of_work() as session:
        added = match_alerts(session, now=now)
        due = due_notifications(session, now=now)
    sent = 0
    for notification_id in due:
        with runtime.db.unit_of_work() as session:
            sent += deliver(session, runtime, notification_id=notification_id, now=now) == "sent"
    return len(added), sent
