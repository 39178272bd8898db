"""The traceability API: activation, packing, distributors, shipments, a code's trail.

Thin: parse, authorise, call a service, serialise. Every query is scoped to the caller's tenant.
Factory and warehouse staff (admin, factory_operator keys) may do everything; analysts read;
a distributor's key (``POST /trace/distributors/<id>/api-keys``) or a console user with the
distributor role acts for that distributor only: it receives the shipments addressed to it,
ships what it holds, and sees its own shipments.
Handhelds and line controllers send codes as they scanned them (token, short URL or GS1
Digital Link).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, request

import codegen
from core.auth import PERMISSIONS, Principal, audit, current_principal
from core.errors import PermissionDeniedError, ValidationFailedError
from core.openapi import (
    PAGINATION,
    UnsupportedMediaTypeError,
    next_after,
    operation,
    page_args,
    parse_body,
    query_int,
)
from core.web import app_runtime, db_session
from traceability import schemas
from traceability.activation import (
    SerialRange,
    activate_case,
    list_activations,
    record_activation,
    roll_range,
)
from traceability.codes import CodeRef, bulk, resolve_code, resolve_codes
from traceability.distributors import (
    authorised_regions,
    create_distributor,
    distributor_of_principal,
    get_distributor_or_raise,
    issue_distributor_key,
    list_distributors,
    own_regions,
    update_distributor,
)
from traceability.epcis import code_document, shipment_document
from traceability.errors import CodeUnknownError, ShipmentNotFoundError
from traceability.journey import code_trail, describe
from traceability.models import Distributor, Shipment
from traceability.packing import contents_of, current_parent, pack, unpack
from traceability.regions import Located, parse_region
from traceability.settings import get_trace_config, update_trace_settings
from traceability.shipments import (
    get_shipment_or_raise,
    list_shipments,
    receive,
    ship,
    shipment_contents,
)

api = Blueprint("trace_api", __name__)

LOCATOR = "yima.locate_gps"  # app.extensions key: (lat, lon, accuracy_m) -> traceability.Located
UPLOAD_LIMIT = 16 * 1024 * 1024  # a packing upload: up to MAX_PAIRS pairs of URLs


# --- who is asking -------------------------------------------------------------------------


def _caller(need: str, *, distributor_ok: bool = False) -> tuple[Principal, int | None]:
    """The caller and, for a distributor's key or user, the distributor it acts for."""
    principal = current_principal()
    if principal.role == "distributor":
        if not distributor_ok:
            raise PermissionDeniedError("a distributor's key may not do this")
        distributor_id = distributor_of_principal(db_session(), principal)
        if distributor_id is None:
            raise PermissionDeniedError("this key is not bound to a distributor")
        return principal, distributor_id
    if need not in PERMISSIONS.get(principal.role, frozenset()):
        raise PermissionDeniedError(f"the role {principal.role!r} may not {need}")
    return principal, None


def _secured(view: Callable[..., Any]) -> Callable[..., Any]:
    view.__dict__["_yima_security"] = True
    return view


def _codes(texts: list[str], field: str) -> list[CodeRef]:
    principal = current_principal()
    return resolve_codes(
        app_runtime(),
        db_session(),
        tenant_id=principal.tenant_id,
        texts=texts,
        fields=[f"{field}[{i}]" for i in range(len(texts))],
    )


def _code(text: object, field: str) -> CodeRef:
    principal = current_principal()
    return resolve_code(
        app_runtime(), db_session(), tenant_id=principal.tenant_id, text=text, field=field
    )


def _batch_range(batch_id: int, first: int, last: int, field: str) -> SerialRange:
    principal = current_principal()
    context = codegen.load_code_context(app_runtime(), db_session(), batch_id)
    if context is None or context.tenant_id != principal.tenant_id:
        raise CodeUnknownError(
            f"{field}: no batch {batch_id}", errors={f"{field}.batch_id": "unknown batch"}
        )
    if not 1 <= first <= last <= context.quantity:
        raise ValidationFailedError.field(
            field, f"serials must satisfy 1 <= first <= last <= {context.quantity}"
        )
    return SerialRange(batch_id, first, last)


def _range_of(
    *,
    batch_id: int | None,
    first: int | None,
    last: int | None,
    from_code: str | None,
    to_code: str | None,
    field: str,
) -> SerialRange:
    if from_code is not None or to_code is not None:
        if from_code is None or to_code is None or batch_id is not None:
            raise ValidationFailedError.field(
                field, "give from_code and to_code, or batch_id with serials"
            )
        a, b = _code(from_code, f"{field}.from_code"), _code(to_code, f"{field}.to_code")
        if a.batch_id != b.batch_id:
            raise ValidationFailedError.field(
                field, "from_code and to_code are of different batches"
            )
        return _batch_range(a.batch_id, min(a.serial, b.serial), max(a.serial, b.serial), field)
    if batch_id is None or first is None or last is None:
        raise ValidationFailedError.field(field, "give batch_id, first_serial and last_serial")
    return _batch_range(batch_id, first, last, field)


# --- settings ------------------------------------------------------------------------------


@api.get("/trace/settings")
@operation("The brand's traceability settings", tag="trace", response=schemas.SettingsIO)
@_secured
def get_settings() -> Any:
    principal, _ = _caller("read")
    config = get_trace_config(app_runtime(), principal.tenant_id, db_session())
    return schemas.SettingsIO(require_activation=config.require_activation).model_dump()


@api.put("/trace/settings")
@operation(
    "Require activation at the line (codes inactive until activated)",
    tag="trace",
    body=schemas.SettingsIO,
    response=schemas.SettingsIO,
    errors=(415,),
)
@_secured
def put_settings() -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.SettingsIO)
    session = db_session()
    config = update_trace_settings(
        session,
        app_runtime(),
        tenant_id=principal.tenant_id,
        require_activation=body.require_activation,
    )
    audit(
        "trace.settings",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail=body.model_dump(),
    )
    return schemas.SettingsIO(require_activation=config.require_activation).model_dump()


# --- activation ----------------------------------------------------------------------------


@api.post("/trace/activations")
@operation(
    "Activate or deactivate codes at the line: by serial range, first/last code, roll or case",
    tag="trace",
    body=schemas.ActivationIn,
    response=schemas.ActivationOut,
    status=201,
    errors=(409, 415),
)
@_secured
def post_activation() -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.ActivationIn)
    runtime, session = app_runtime(), db_session()
    forms = [
        body.case is not None,
        body.roll is not None or body.roll_size is not None,
        body.from_code is not None or body.to_code is not None,
        body.first_serial is not None or body.last_serial is not None,
    ]
    if sum(forms) != 1:
        raise ValidationFailedError(
            "give exactly one of: case; batch_id with roll and roll_size; from_code and to_code; "
            "batch_id with first_serial and last_serial",
            errors={"body": "exactly one way of naming the codes"},
        )
    details: dict[str, Any] = {
        "reason": body.reason,
        "note": body.note,
        "line": body.line,
        "site": body.site,
        "at": body.at,
    }
    if body.action == "activate" and body.reason is not None:
        raise ValidationFailedError.field("reason", "only a deactivation has a reason")
    if body.action == "deactivate" and body.reason is None:
        raise ValidationFailedError.field("reason", "say why the codes are deactivated")
    if body.case is not None:
        if body.batch_id is not None:
            raise ValidationFailedError.field("batch_id", "a case names its own batch")
        case = _code(body.case, "case")
        event = activate_case(
            session,
            runtime,
            tenant_id=principal.tenant_id,
            case=case,
            action=body.action,
            operator=principal.actor,
            reference=body.case[:200],
            **details,
        )
    elif forms[1]:
        if body.batch_id is None:
            raise ValidationFailedError.field("batch_id", "a roll is numbered within a batch")
        whole = _batch_range(body.batch_id, 1, 1, "batch_id")
        context = codegen.load_code_context(runtime, session, whole.batch_id)
        assert context is not None
        first, last = roll_range(
            roll=body.roll, roll_size=body.roll_size, quantity=context.quantity
        )
        event = record_activation(
            session,
            runtime,
            tenant_id=principal.tenant_id,
            action=body.action,
            scope="roll",
            ranges=[SerialRange(body.batch_id, first, last)],
            operator=principal.actor,
            reference=f"roll {body.roll} of {body.roll_size}",
            **details,
        )
    else:
        span = _range_of(
            batch_id=body.batch_id,
            first=body.first_serial,
            last=body.last_serial,
            from_code=body.from_code,
            to_code=body.to_code,
            field="range",
        )
        event = record_activation(
            session,
            runtime,
            tenant_id=principal.tenant_id,
            action=body.action,
            scope="range",
            ranges=[span],
            operator=principal.actor,
            **details,
        )
    return schemas.ActivationOut.of(event).model_dump(mode="json"), 201


@api.get("/trace/activations")
@operation(
    "Activations and deactivations, oldest first",
    tag="trace",
    response=schemas.ActivationPage,
    query={**PAGINATION, "batch_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
)
@_secured
def get_activations() -> Any:
    principal, _ = _caller("read")
    limit, after = page_args()
    items = list(
        list_activations(
            db_session(),
            tenant_id=principal.tenant_id,
            batch_id=query_int("batch_id", low=1),
            after_id=after,
            limit=limit,
        )
    )
    return schemas.ActivationPage(
        items=[schemas.ActivationOut.of(a) for a in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


# --- packing -------------------------------------------------------------------------------


def _pairs_from_csv() -> tuple[list[tuple[str, str]], str]:
    text = request.get_data(cache=False, as_text=False)
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailedError.field("body", "CSV must be UTF-8") from None
    if "\x00" in decoded:
        raise ValidationFailedError.field("body", "contains a NUL byte")
    pairs: list[tuple[str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(decoded)), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() == "parent":
            continue
        if len(row) != 2:
            raise ValidationFailedError.field(
                f"line {number}", "expected two columns: parent,child"
            )
        pairs.append((row[0], row[1]))
    if not pairs:
        raise ValidationFailedError.field("body", "no parent,child rows")
    line = request.args.get("line", "")[:100]
    return pairs, line


def _pack(pairs: list[tuple[str, str]], line: str, at: Any) -> schemas.PackOut:
    principal, _ = _caller("write")
    texts = [t for pair in pairs for t in pair]
    fields = [f"pairs[{i // 2}].{'parent' if i % 2 == 0 else 'child'}" for i in range(len(texts))]
    with bulk():
        refs = resolve_codes(
            app_runtime(), db_session(), tenant_id=principal.tenant_id, texts=texts, fields=fields
        )
        result = pack(
            db_session(),
            app_runtime(),
            tenant_id=principal.tenant_id,
            pairs=list(zip(refs[0::2], refs[1::2], strict=True)),
            operator=principal.actor,
            line=line,
            at=at,
        )
    return schemas.PackOut(packed=result.packed, already_packed=result.already_packed)


@api.post("/trace/packings")
@operation(
    "Upload what the packing line scanned: parent/child pairs as JSON (or text/csv rows "
    "'parent,child'); all or nothing",
    tag="trace",
    body=schemas.PackingsIn,
    response=schemas.PackOut,
    errors=(409, 415),
)
@_secured
def post_packings() -> Any:
    _caller("write")
    request.max_content_length = UPLOAD_LIMIT  # 100,000 pairs of URLs; the app allows 2 MB
    if request.mimetype == "text/csv":
        pairs, line = _pairs_from_csv()
        return _pack(pairs, line, None).model_dump()
    body = parse_body(schemas.PackingsIn)
    return _pack([(p.parent, p.child) for p in body.pairs], body.line, body.at).model_dump()


@api.post("/trace/packings/case")
@operation(
    "A line controller closes one case: the case's code and what went into it",
    tag="trace",
    body=schemas.CaseIn,
    response=schemas.PackOut,
    errors=(409, 415),
)
@_secured
def post_case() -> Any:
    _caller("write")
    body = parse_body(schemas.CaseIn)
    return _pack([(body.parent, child) for child in body.children], body.line, body.at).model_dump()


@api.post("/trace/unpackings")
@operation(
    "Unpack a case (everything in it) or take given codes out of their parents",
    tag="trace",
    body=schemas.UnpackIn,
    response=schemas.UnpackOut,
    errors=(409, 415),
)
@_secured
def post_unpacking() -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.UnpackIn)
    if (body.parent is None) == (not body.children):
        raise ValidationFailedError.field("body", "give a parent, or children")
    session = db_session()
    if body.parent is not None:
        done = unpack(session, tenant_id=principal.tenant_id, parent=_code(body.parent, "parent"))
    else:
        done = unpack(
            session, tenant_id=principal.tenant_id, children=_codes(body.children, "children")
        )
    return schemas.UnpackOut(unpacked=done).model_dump()


@api.post("/trace/repackings")
@operation(
    "Move codes into another parent in one step (unpacked from wherever they are)",
    tag="trace",
    body=schemas.RepackIn,
    response=schemas.PackOut,
    errors=(409, 415),
)
@_secured
def post_repacking() -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.RepackIn)
    session, runtime = db_session(), app_runtime()
    parent = _code(body.parent, "parent")
    children = _codes(body.children, "children")
    loose = [c for c in children if current_parent(session, c) is not None]
    if loose:
        unpack(session, tenant_id=principal.tenant_id, children=loose)
    result = pack(
        session,
        runtime,
        tenant_id=principal.tenant_id,
        pairs=[(parent, c) for c in children],
        operator=principal.actor,
        line=body.line,
    )
    return schemas.PackOut(packed=result.packed, already_packed=result.already_packed).model_dump()


# --- a code --------------------------------------------------------------------------------


@api.get("/trace/codes")
@operation(
    "Everything traceability knows of one code: state, parent, contents, holder, journey",
    tag="trace",
    response=schemas.CodeOut,
    query={
        "code": {"type": "string", "description": "token, short URL or GS1 Digital Link"},
        "lang": {"type": "string", "enum": ["zh", "en"]},
    },
)
@_secured
def get_code() -> Any:
    principal, acting = _caller("read", distributor_ok=True)
    raw = request.args.get("code")
    if not raw:
        raise ValidationFailedError.field("code", "required")
    lang = "en" if request.args.get("lang") == "en" else "zh"
    code = _code(raw, "code")
    session, runtime = db_session(), app_runtime()
    trail = code_trail(runtime, session, tenant_id=principal.tenant_id, code=code)
    if acting is not None and trail.holder_id != acting:
        raise CodeUnknownError("code: not a code you hold", errors={"code": "not a code you hold"})
    parent = current_parent(session, code)
    contents = contents_of(session, tenant_id=principal.tenant_id, parents=[code])
    return schemas.CodeOut(
        batch_id=code.batch_id,
        serial=code.serial,
        active=trail.active,
        deactivated_reason=trail.deactivated_reason,
        parent=schemas.UnitOut(batch_id=parent.batch_id, serial=parent.serial) if parent else None,
        contents=len(contents),
        holder_id=trail.holder_id,
        holder_name=trail.holder_name,
        authorised_regions=list(trail.regions),
        journey=[
            schemas.StepOut(
                kind=s.kind,
                at=s.at,
                text=describe(s, lang),
                line=s.line,
                site=s.site,
                reason=s.reason,
                distributor_id=s.distributor_id,
                distributor=s.distributor,
                shipment_id=s.shipment_id,
                reference=s.reference,
                parent=schemas.UnitOut(batch_id=s.parent.batch_id, serial=s.parent.serial)
                if s.parent
                else None,
            )
            for s in trail.steps
        ],
    ).model_dump(mode="json")


# --- distributors --------------------------------------------------------------------------


def _distributor_out(d: Distributor) -> schemas.DistributorOut:
    session = db_session()
    _, authorised = authorised_regions(session, d.id)
    return schemas.DistributorOut(
        id=d.id,
        code=d.code,
        name=d.name,
        level=d.level,
        channel=d.channel,
        parent_id=d.parent_id,
        regions=own_regions(session, d.id),
        authorised_regions=authorised,
        contact=d.contact,
        active=d.active,
        created_at=d.created_at,
    )


@api.post("/trace/distributors")
@operation(
    "Create a distributor with its authorised sales regions (CN, CN-ZJ, CN-ZJ/杭州市)",
    tag="trace",
    body=schemas.DistributorIn,
    response=schemas.DistributorOut,
    status=201,
    errors=(409, 415),
)
@_secured
def post_distributor() -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.DistributorIn)
    made = create_distributor(db_session(), tenant_id=principal.tenant_id, **body.model_dump())
    return _distributor_out(made).model_dump(mode="json"), 201


@api.get("/trace/distributors")
@operation(
    "List distributors",
    tag="trace",
    response=schemas.DistributorPage,
    query={**PAGINATION, "parent_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
)
@_secured
def get_distributors() -> Any:
    principal, _ = _caller("read")
    limit, after = page_args()
    items = list(
        list_distributors(
            db_session(),
            tenant_id=principal.tenant_id,
            after_id=after,
            limit=limit,
            parent_id=query_int("parent_id", low=1),
        )
    )
    return schemas.DistributorPage(
        items=[_distributor_out(d) for d in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.get("/trace/distributors/<id:distributor_id>")
@operation("Get a distributor", tag="trace", response=schemas.DistributorOut)
@_secured
def get_distributor_view(distributor_id: int) -> Any:
    principal, acting = _caller("read", distributor_ok=True)
    if acting is not None and acting != distributor_id:
        raise PermissionDeniedError("a distributor's key sees its own distributor only")
    found = get_distributor_or_raise(
        db_session(), tenant_id=principal.tenant_id, distributor_id=distributor_id
    )
    return _distributor_out(found).model_dump(mode="json")


@api.patch("/trace/distributors/<id:distributor_id>")
@operation(
    "Change a distributor (name, level, channel, parent, regions, active)",
    tag="trace",
    body=schemas.DistributorPatch,
    response=schemas.DistributorOut,
    errors=(415,),
)
@_secured
def patch_distributor(distributor_id: int) -> Any:
    principal, _ = _caller("write")
    body = parse_body(schemas.DistributorPatch)
    session = db_session()
    runtime = app_runtime()
    changed = update_distributor(
        session,
        runtime,
        tenant_id=principal.tenant_id,
        distributor_id=distributor_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return _distributor_out(changed).model_dump(mode="json")


@api.post("/trace/distributors/<id:distributor_id>/api-keys")
@operation(
    "An API key that acts for this distributor (its handhelds and phones); shown once",
    tag="trace",
    body=schemas.DistributorKeyIn,
    response=schemas.DistributorKeyOut,
    status=201,
    errors=(415,),
)
@_secured
def post_distributor_key(distributor_id: int) -> Any:
    principal = current_principal()
    if "keys" not in PERMISSIONS.get(principal.role, frozenset()):
        raise PermissionDeniedError(f"the role {principal.role!r} may not issue keys")
    body = parse_body(schemas.DistributorKeyIn)
    issued = issue_distributor_key(
        db_session(),
        tenant_id=principal.tenant_id,
        distributor_id=distributor_id,
        name=body.name,
    )
    audit(
        "trace.distributor_key",
        target_type="distributor",
        target_id=distributor_id,
        detail={"api_key_id": issued.key.id, "name": body.name},
    )
    return schemas.DistributorKeyOut(
        id=issued.key.id, distributor_id=distributor_id, name=body.name, token=issued.token
    ).model_dump(), 201


# --- shipments -----------------------------------------------------------------------------


@api.post("/trace/shipments")
@operation(
    "Ship cases, pallets or ranges to a distributor (or return them); all or nothing",
    tag="trace",
    body=schemas.ShipmentIn,
    response=schemas.ShipmentDetailOut,
    status=201,
    errors=(409, 415),
)
@_secured
def post_shipment() -> Any:
    principal, acting = _caller("write", distributor_ok=True)
    body = parse_body(schemas.ShipmentIn)
    sender = body.from_distributor_id
    if acting is not None:
        if sender not in (None, acting):
            raise PermissionDeniedError("a distributor ships from itself only")
        sender = acting
    units = _codes(body.units, "units") if body.units else []
    ranges = [
        _range_of(
            batch_id=r.batch_id,
            first=r.first_serial,
            last=r.last_serial,
            from_code=r.from_code,
            to_code=r.to_code,
            field=f"ranges[{i}]",
        )
        for i, r in enumerate(body.ranges)
    ]
    session = db_session()
    shipment = ship(
        session,
        app_runtime(),
        tenant_id=principal.tenant_id,
        reference=body.reference,
        to_distributor_id=body.to_distributor_id,
        from_distributor_id=sender,
        kind=body.kind,
        units=units,
        ranges=ranges,
        operator=principal.actor,
        at=body.at,
        note=body.note,
    )
    return _shipment_detail(shipment).model_dump(mode="json"), 201


def _shipment_detail(shipment: Shipment) -> schemas.ShipmentDetailOut:
    units, ranges = shipment_contents(db_session(), shipment)
    return schemas.ShipmentDetailOut(
        **schemas.ShipmentOut.of(shipment).model_dump(),
        units=[schemas.UnitOut(batch_id=u.batch_id, serial=u.serial) for u in units],
        ranges=[
            schemas.RangeOut(batch_id=r.batch_id, first_serial=r.first, last_serial=r.last)
            for r in ranges
        ],
    )


@api.get("/trace/shipments")
@operation(
    "List shipments (a distributor's key sees its own)",
    tag="trace",
    response=schemas.ShipmentPage,
    query={
        **PAGINATION,
        "distributor_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "status": {"type": "string", "enum": ["in_transit", "received"]},
    },
)
@_secured
def get_shipments() -> Any:
    principal, acting = _caller("read", distributor_ok=True)
    limit, after = page_args()
    status = request.args.get("status")
    if status not in (None, "in_transit", "received"):
        raise ValidationFailedError.field("status", "in_transit or received")
    distributor_id = query_int("distributor_id", low=1)
    if acting is not None:
        if distributor_id not in (None, acting):
            raise PermissionDeniedError("a distributor's key sees its own shipments only")
        distributor_id = acting
    items = list(
        list_shipments(
            db_session(),
            tenant_id=principal.tenant_id,
            after_id=after,
            limit=limit,
            distributor_id=distributor_id,
            status=status,
        )
    )
    return schemas.ShipmentPage(
        items=[schemas.ShipmentOut.of(s) for s in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.get("/trace/shipments/<id:shipment_id>")
@operation(
    "Get a shipment with its units and ranges", tag="trace", response=schemas.ShipmentDetailOut
)
@_secured
def get_shipment(shipment_id: int) -> Any:
    principal, acting = _caller("read", distributor_ok=True)
    shipment = get_shipment_or_raise(
        db_session(), tenant_id=principal.tenant_id, shipment_id=shipment_id
    )
    if acting is not None and acting not in (
        shipment.to_distributor_id,
        shipment.from_distributor_id,
    ):
        raise ShipmentNotFoundError(f"no shipment {shipment_id}")
    return _shipment_detail(shipment).model_dump(mode="json")


@api.post("/trace/shipments/<id:shipment_id>/receive")
@operation(
    "The receiver confirms a shipment, optionally with where it was scanned",
    tag="trace",
    body=schemas.ReceiveIn,
    response=schemas.ShipmentOut,
    errors=(409, 415),
)
@_secured
def post_receive(shipment_id: int) -> Any:
    principal, acting = _caller("write", distributor_ok=True)
    body = parse_body(schemas.ReceiveIn) if request.content_length else schemas.ReceiveIn()
    if not request.content_length and request.mimetype not in ("", "application/json"):
        raise UnsupportedMediaTypeError("send the body as application/json")
    located, source = _located(body.location)
    shipment = receive(
        db_session(),
        tenant_id=principal.tenant_id,
        shipment_id=shipment_id,
        operator=principal.actor,
        location=located,
        location_source=source,
        acting_distributor_id=acting,
        at=body.at,
    )
    return schemas.ShipmentOut.of(shipment).model_dump(mode="json")


def _located(location: schemas.LocationIn | None) -> tuple[Located | None, str]:
    if location is None:
        return None, "none"
    if location.region is not None:
        if location.lat is not None or location.lon is not None:
            raise ValidationFailedError.field("location", "give coordinates or a region, not both")
        region = parse_region(location.region, field="location.region")
        return Located(region.country, region.division, region.city, region.level), "manual"
    if location.lat is None or location.lon is None:
        raise ValidationFailedError.field("location", "give lat and lon, or a region")
    locate = current_app.extensions.get(LOCATOR)
    if locate is None:
        raise ValidationFailedError.field("location", "this server cannot place coordinates")
    try:
        return locate(location.lat, location.lon, location.accuracy_m), "gps"
    except ValueError as exc:
        raise ValidationFailedError.field("location", str(exc)) from None


# --- EPCIS 2.0 -----------------------------------------------------------------------------


def _scan_host(tenant_id: int) -> str:
    return codegen.scan_host_for(db_session(), app_runtime(), tenant_id)


@api.get("/trace/epcis")
@operation(
    "A code's events as an EPCIS 2.0 JSON-LD document (commissioning, packing, shipping, "
    "receiving)",
    tag="trace",
    query={"code": {"type": "string", "description": "token, short URL or GS1 Digital Link"}},
)
@_secured
def get_code_epcis() -> Any:
    principal, _ = _caller("read")
    raw = request.args.get("code")
    if not raw:
        raise ValidationFailedError.field("code", "required")
    document = code_document(
        db_session(),
        app_runtime(),
        tenant_id=principal.tenant_id,
        code=_code(raw, "code"),
        scan_host=_scan_host(principal.tenant_id),
    )
    return _json_ld(document)


@api.get("/trace/shipments/<id:shipment_id>/epcis")
@operation(
    "A shipment's events as an EPCIS 2.0 JSON-LD document (what each unit held when shipped)",
    tag="trace",
)
@_secured
def get_shipment_epcis(shipment_id: int) -> Any:
    principal, _ = _caller("read")
    document = shipment_document(
        db_session(),
        app_runtime(),
        tenant_id=principal.tenant_id,
        shipment_id=shipment_id,
        scan_host=_scan_host(principal.tenant_id),
    )
    return _json_ld(document)


def _json_ld(document: dict[str, Any]) -> Any:
    from flask import current_app

    response = current_app.json.response(document)
    response.mimetype = "application/ld+json"
    return response
