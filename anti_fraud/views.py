"""The brand-facing anti-fraud API: alerts, blacklist, thresholds, a code's scan history."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from flask import Blueprint, request

import codegen
import traceability
from anti_fraud import alerts, diversion, notify, schemas, services
from anti_fraud.models import NOTIFICATION_STATUSES
from core.auth import Principal, audit, caller_with, current_principal, requires
from core.errors import PermissionDeniedError, ValidationFailedError
from core.openapi import (
    PAGINATION,
    next_after,
    operation,
    page_args,
    parse_body,
    query_int,
    secured,
)
from core.web import app_runtime, db_session

api = Blueprint("anti_fraud_api", __name__)


def _code_identity(code: str, tenant_id: int) -> tuple[int, int]:
    result = codegen.verify(app_runtime(), code)
    if isinstance(result, codegen.InvalidToken) or result.tenant_id != tenant_id:
        raise ValidationFailedError.field("code", "not a valid code of this brand")
    return result.batch_id, result.serial


@api.get("/alerts")
@operation(
    "List alerts (forged-code clusters, clone suspicions, auto-blacklists)",
    tag="anti-fraud",
    response=schemas.AlertPage,
    query={**PAGINATION, "kind": {"type": "string"}, "status": {"type": "string"}},
)
@requires("read")
def list_alerts() -> Any:
    limit, after = page_args()
    items = list(
        alerts.list_alerts(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            kind=request.args.get("kind"),
            status=request.args.get("status"),
        )
    )
    return schemas.AlertPage(
        items=[schemas.AlertOut.of(a) for a in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.get("/blacklist")
@operation(
    "List blacklist entries",
    tag="anti-fraud",
    response=schemas.BlacklistPage,
    query={
        **PAGINATION,
        "batch_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "active": {"type": "boolean"},
    },
)
@requires("read")
def list_blacklist() -> Any:
    limit, after = page_args()
    active_arg = request.args.get("active")
    active = None if active_arg is None else active_arg.lower() in ("1", "true", "yes")
    items = list(
        services.list_blacklist(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            batch_id=query_int("batch_id", low=1),
            active=active,
        )
    )
    return schemas.BlacklistPage(
        items=[schemas.BlacklistOut.of(e) for e in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.post("/blacklist")
@operation(
    "Blacklist a code or a range of serials, with a reason",
    tag="anti-fraud",
    body=schemas.BlacklistIn,
    response=schemas.BlacklistOut,
    status=201,
    errors=(415,),
)
@requires("write")
def add_blacklist() -> Any:
    body = parse_body(schemas.BlacklistIn)
    principal = current_principal()
    session = db_session()
    if body.code is not None:
        batch_id, first = _code_identity(body.code, principal.tenant_id)
        last = first
    else:
        if body.batch_id is None or body.first_serial is None:
            raise ValidationFailedError.field("code", "give a code, or batch_id and first_serial")
        batch = codegen.get_batch_or_raise(
            session, tenant_id=principal.tenant_id, batch_id=body.batch_id
        )
        batch_id, first = batch.id, body.first_serial
        last = body.last_serial or first
        if last > batch.quantity:
            raise ValidationFailedError.field("last_serial", f"the batch ends at {batch.quantity}")
    entry = services.add_to_blacklist(
        session,
        tenant_id=principal.tenant_id,
        batch_id=batch_id,
        first_serial=first,
        last_serial=last,
        reason=body.reason,
        note=body.note,
        actor=principal.actor,
    )
    audit(
        "blacklist.add",
        target_type="blacklist",
        target_id=entry.id,
        detail={"batch_id": batch_id, "first": first, "last": last, "reason": body.reason},
    )
    return schemas.BlacklistOut.of(entry).model_dump(mode="json"), 201


@api.post("/blacklist/<id:entry_id>/lift")
@operation(
    "Lift a blacklist entry (un-blacklist), with a reason",
    tag="anti-fraud",
    body=schemas.LiftIn,
    response=schemas.BlacklistOut,
    errors=(415,),
)
@requires("write")
def lift_blacklist(entry_id: int) -> Any:
    body = parse_body(schemas.LiftIn)
    principal = current_principal()
    session = db_session()
    entry = services.lift_blacklist(
        session,
        tenant_id=principal.tenant_id,
        entry_id=entry_id,
        reason=body.reason,
        actor=principal.actor,
    )
    audit(
        "blacklist.lift",
        target_type="blacklist",
        target_id=entry.id,
        detail={"reason": body.reason},
    )
    return schemas.BlacklistOut.of(entry).model_dump(mode="json")


@api.get("/anti-fraud/settings")
@operation(
    "The tenant's anti-fraud thresholds and privacy settings",
    tag="anti-fraud",
    response=schemas.SettingsIO,
)
@requires("read")
def get_settings() -> Any:
    thresholds = services.get_thresholds(app_runtime(), current_principal().tenant_id)
    return _settings_out(thresholds)


@api.put("/anti-fraud/settings")
@operation(
    "Change thresholds (fields left out keep their value)",
    tag="anti-fraud",
    body=schemas.SettingsIO,
    response=schemas.SettingsIO,
    errors=(415,),
)
@requires("keys")
def put_settings() -> Any:
    body = parse_body(schemas.SettingsIO)
    principal = current_principal()
    session = db_session()
    thresholds = services.update_thresholds(
        session, app_runtime(), tenant_id=principal.tenant_id, **body.model_dump(exclude_none=True)
    )
    audit(
        "anti_fraud.settings",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail=body.model_dump(exclude_none=True),
    )
    return _settings_out(thresholds)


def _settings_out(thresholds: Any) -> Any:
    fields = {k: v for k, v in asdict(thresholds).items() if k in schemas.SettingsIO.model_fields}
    return schemas.SettingsIO(**fields).model_dump(mode="json")


@api.get("/batches/<id:batch_id>/codes/<id:serial>/scans")
@operation(
    "A code's scans, newest first",
    tag="anti-fraud",
    response=schemas.CodeScansOut,
    query={"limit": PAGINATION["limit"]},
)
@requires("read")
def code_scans(batch_id: int, serial: int) -> Any:
    principal = current_principal()
    session = db_session()
    codegen.get_batch_or_raise(session, tenant_id=principal.tenant_id, batch_id=batch_id)
    limit = query_int("limit", default=50, low=1, high=200)
    scans = services.list_code_scans(
        session, tenant_id=principal.tenant_id, batch_id=batch_id, serial=serial, limit=limit
    )
    return schemas.CodeScansOut(
        batch_id=batch_id, serial=serial, items=[schemas.ScanRecordOut.of(s) for s in scans]
    ).model_dump(mode="json")


# --- diversion -----------------------------------------------------------------------------


def _query_time(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01 east of UTC, say
        raise ValidationFailedError.field(name, "an ISO 8601 date or time") from None


def _diversion_reader() -> tuple[Principal, int | None]:
    """The caller of a diversion read and, for a distributor (its key or console user), the
    distributor whose alerts alone it may see."""
    principal = current_principal()
    if principal.role != "distributor":
        return caller_with("read"), None
    acting = traceability.distributor_of_principal(db_session(), principal)
    if acting is None:
        raise PermissionDeniedError("this key is not bound to a distributor")
    return principal, acting


@api.get("/diversion/alerts")
@operation(
    "Diversion alerts: evidence per distributor and shipment, scored, with a review state",
    tag="diversion",
    response=schemas.DiversionAlertPage,
    query={
        **PAGINATION,
        "distributor_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "region": {"type": "string", "description": "where goods turned up: CN-JS, CN-JS/南京市"},
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "status": {"type": "string", "enum": ["open", "confirmed", "dismissed"]},
    },
)
@secured
def list_diversion_alerts() -> Any:
    principal, acting = _diversion_reader()
    limit, after = page_args()
    distributor_id = query_int("distributor_id", low=1)
    if acting is not None:
        if distributor_id not in (None, acting):
            raise PermissionDeniedError("a distributor sees its own diversion alerts only")
        distributor_id = acting
    items = list(
        diversion.list_diversion_alerts(
            db_session(),
            tenant_id=principal.tenant_id,
            after_id=after,
            limit=limit,
            distributor_id=distributor_id,
            region=request.args.get("region") or None,
            since=_query_time("since"),
            until=_query_time("until"),
            status=request.args.get("status") or None,
        )
    )
    return schemas.DiversionAlertPage(
        items=[schemas.DiversionAlertOut.of(a) for a in items],
        next_after=next_after(items, limit),
    ).model_dump(mode="json")


@api.get("/diversion/alerts/<id:alert_id>")
@operation(
    "A diversion alert with the flagged scans behind it (codes, places, sources, precision)",
    tag="diversion",
    response=schemas.DiversionAlertDetailOut,
)
@secured
def get_diversion_alert(alert_id: int) -> Any:
    principal, acting = _diversion_reader()
    session = db_session()
    alert = diversion.get_diversion_alert_or_raise(
        session, tenant_id=principal.tenant_id, alert_id=alert_id, distributor_id=acting
    )
    return schemas.DiversionAlertDetailOut(
        **schemas.DiversionAlertOut.of(alert).model_dump(),
        scans=[schemas.DiversionScanOut.of(s) for s in diversion.diversion_scans(session, alert)],
    ).model_dump(mode="json")


@api.post("/diversion/alerts/<id:alert_id>/review")
@operation(
    "Review a diversion alert: confirm, dismiss (or reopen), with a note",
    tag="diversion",
    body=schemas.ReviewIn,
    response=schemas.DiversionAlertOut,
    errors=(415,),
)
@requires("write")
def review_diversion_alert(alert_id: int) -> Any:
    body = parse_body(schemas.ReviewIn)
    principal = current_principal()
    session = db_session()
    alert = diversion.review_diversion_alert(
        session,
        tenant_id=principal.tenant_id,
        alert_id=alert_id,
        status=body.status,
        note=body.note,
        actor=principal.actor,
    )
    audit(
        "diversion.review",
        target_type="diversion_alert",
        target_id=alert_id,
        detail=body.model_dump(),
    )
    return schemas.DiversionAlertOut.of(alert).model_dump(mode="json")


# --- alert rules: whom to tell of which alerts (anti_fraud/notify.py) --------------------------

RULES_TAG = "alert-rules"


@api.get("/alert-rules")
@operation("The brand's alert rules", tag=RULES_TAG, response=schemas.AlertRuleList)
@requires("read")
def list_alert_rules() -> Any:
    rules = notify.list_rules(db_session(), tenant_id=current_principal().tenant_id)
    return schemas.AlertRuleList(items=[schemas.AlertRuleOut.of(r) for r in rules]).model_dump(
        mode="json"
    )


@api.post("/alert-rules")
@operation(
    "Add a rule: alerts of these kinds at or above the thresholds go to e-mail addresses or a "
    "webhook (a webhook's signing secret is in this answer only)",
    tag=RULES_TAG,
    body=schemas.AlertRuleIn,
    response=schemas.AlertRuleOut,
    status=201,
    errors=(409, 415),
)
@requires("alert_rules")
def create_alert_rule() -> Any:
    body = parse_body(schemas.AlertRuleIn)
    saved = notify.create_rule(
        db_session(), app_runtime(), tenant_id=current_principal().tenant_id, body=body
    )
    audit("alert_rules.create", target_type="alert_rule", target_id=saved.rule.id)
    return schemas.AlertRuleOut.of(saved.rule, saved.secret).model_dump(mode="json"), 201


@api.put("/alert-rules/<id:rule_id>")
@operation(
    "Replace a rule's settings (?rotate_secret=true: a new webhook secret, in this answer only)",
    tag=RULES_TAG,
    body=schemas.AlertRuleIn,
    response=schemas.AlertRuleOut,
    query={"rotate_secret": {"type": "boolean"}},
    errors=(409, 415),
)
@requires("alert_rules")
def update_alert_rule(rule_id: int) -> Any:
    body = parse_body(schemas.AlertRuleIn)
    rotate = request.args.get("rotate_secret", "false")
    if rotate not in ("true", "false"):
        raise ValidationFailedError.field("rotate_secret", "true or false")
    saved = notify.update_rule(
        db_session(),
        app_runtime(),
        tenant_id=current_principal().tenant_id,
        rule_id=rule_id,
        body=body,
        rotate_secret=rotate == "true",
    )
    audit(
        "alert_rules.update",
        target_type="alert_rule",
        target_id=rule_id,
        detail={"rotated_secret": saved.secret is not None},
    )
    return schemas.AlertRuleOut.of(saved.rule, saved.secret).model_dump(mode="json")


@api.delete("/alert-rules/<id:rule_id>")
@operation("Remove a rule and its notifications", tag=RULES_TAG, status=204)
@requires("alert_rules")
def delete_alert_rule(rule_id: int) -> Any:
    notify.delete_rule(db_session(), tenant_id=current_principal().tenant_id, rule_id=rule_id)
    audit("alert_rules.delete", target_type="alert_rule", target_id=rule_id)
    return "", 204


@api.post("/alert-rules/<id:rule_id>/test")
@operation(
    "Send a test notification through the rule now; the answer says whether it went",
    tag=RULES_TAG,
    response=schemas.NotificationOut,
)
@requires("alert_rules")
def test_alert_rule(rule_id: int) -> Any:
    row = notify.send_test(
        db_session(), app_runtime(), tenant_id=current_principal().tenant_id, rule_id=rule_id
    )
    return schemas.NotificationOut.of(row).model_dump(mode="json")


@api.get("/alert-notifications")
@operation(
    "Notifications sent or being retried, newest first (after: the last id of the page before)",
    tag=RULES_TAG,
    response=schemas.NotificationPage,
    query={
        **PAGINATION,
        "rule_id": {"type": "integer", "minimum": 1},
        "status": {"type": "string", "enum": list(NOTIFICATION_STATUSES)},
    },
)
@requires("read")
def list_alert_notifications() -> Any:
    limit, after = page_args()
    status = request.args.get("status")
    if status is not None and status not in NOTIFICATION_STATUSES:
        raise ValidationFailedError.field("status", f"one of {', '.join(NOTIFICATION_STATUSES)}")
    rows = list(
        notify.list_notifications(
            db_session(),
            tenant_id=current_principal().tenant_id,
            rule_id=query_int("rule_id", low=1),
            status=status,
            after_id=after or None,
            limit=limit,
        )
    )
    return schemas.NotificationPage(
        items=[schemas.NotificationOut.of(r) for r in rows], next_after=next_after(rows, limit)
    ).model_dump(mode="json")
