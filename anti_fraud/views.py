"""The brand-facing anti-fraud API: alerts, blacklist, thresholds, a code's scan history."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from flask import Blueprint, request

import codegen
from anti_fraud import alerts, diversion, schemas, services
from core.auth import audit, current_principal, requires
from core.errors import ValidationFailedError
from core.openapi import PAGINATION, next_after, operation, page_args, parse_body, query_int
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
    except ValueError:
        raise ValidationFailedError.field(name, "an ISO 8601 date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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
@requires("read")
def list_diversion_alerts() -> Any:
    limit, after = page_args()
    items = list(
        diversion.list_diversion_alerts(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            distributor_id=query_int("distributor_id", low=1),
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
@requires("read")
def get_diversion_alert(alert_id: int) -> Any:
    session = db_session()
    alert = diversion.get_diversion_alert_or_raise(
        session, tenant_id=current_principal().tenant_id, alert_id=alert_id
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
