"""The management API of code generation: products, batches, exports, keys, verification.

Thin: parse, authorise, call a service, serialise. Every query is scoped to the caller's tenant.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, send_file

from codegen import exports, schemas, services
from codegen.tokens import VerifiedCode
from core import services as core_services
from core.auth import audit, current_principal, requires
from core.openapi import PAGINATION, next_after, operation, page_args, parse_body, query_int
from core.web import app_runtime, client_ip, db_session

api = Blueprint("codegen_api", __name__)


@api.get("/products")
@operation(
    "List products",
    tag="products",
    response=schemas.ProductPage,
    query={**PAGINATION, "sku": {"type": "string"}, "gtin": {"type": "string"}},
)
@requires("read")
def list_products() -> Any:
    limit, after = page_args()
    items = list(
        services.list_products(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            sku=request.args.get("sku"),
            gtin=request.args.get("gtin"),
        )
    )
    return schemas.ProductPage(
        items=[schemas.ProductOut.of(p) for p in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.post("/products")
@operation(
    "Create a product",
    tag="products",
    body=schemas.ProductIn,
    response=schemas.ProductOut,
    status=201,
    errors=(409, 415),
)
@requires("write")
def create_product() -> Any:
    body = parse_body(schemas.ProductIn)
    product = services.create_product(
        db_session(), tenant_id=current_principal().tenant_id, **body.model_dump()
    )
    return schemas.ProductOut.of(product).model_dump(mode="json"), 201


@api.get("/products/<id:product_id>")
@operation("Get a product", tag="products", response=schemas.ProductOut)
@requires("read")
def get_product(product_id: int) -> Any:
    product = services.get_product_or_raise(
        db_session(), tenant_id=current_principal().tenant_id, product_id=product_id
    )
    return schemas.ProductOut.of(product).model_dump(mode="json")


@api.get("/batches")
@operation(
    "List batches",
    tag="batches",
    response=schemas.BatchPage,
    query={
        **PAGINATION,
        "product_id": {"type": "integer", "minimum": 1},
        "lot": {"type": "string"},
    },
)
@requires("read")
def list_batches() -> Any:
    limit, after = page_args()
    items = list(
        services.list_batches(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            product_id=query_int("product_id", low=1),
            lot=request.args.get("lot"),
        )
    )
    return schemas.BatchPage(
        items=[schemas.BatchOut.of(b) for b in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.post("/batches")
@operation(
    "Create a batch (issues its codes: one row, no per-code rows)",
    tag="batches",
    body=schemas.BatchIn,
    response=schemas.BatchOut,
    status=201,
    errors=(409, 415),
)
@requires("write")
def create_batch() -> Any:
    body = parse_body(schemas.BatchIn)
    principal = current_principal()
    session = db_session()
    batch = services.create_batch(
        session, runtime=app_runtime(), tenant_id=principal.tenant_id, **body.model_dump()
    )
    audit(
        "batch.create",
        target_type="batch",
        target_id=batch.id,
        detail={"quantity": batch.quantity, "lot": batch.lot},
    )
    return schemas.BatchOut.of(batch).model_dump(mode="json"), 201


@api.get("/batches/<id:batch_id>")
@operation("Get a batch", tag="batches", response=schemas.BatchOut)
@requires("read")
def get_batch(batch_id: int) -> Any:
    batch = services.get_batch_or_raise(
        db_session(), tenant_id=current_principal().tenant_id, batch_id=batch_id
    )
    return schemas.BatchOut.of(batch).model_dump(mode="json")


@api.post("/batches/<id:batch_id>/exports")
@operation(
    "Start a print-file export of a batch",
    tag="exports",
    body=schemas.ExportIn,
    response=schemas.ExportOut,
    status=202,
    errors=(409, 415),
)
@requires("export")
def create_export(batch_id: int) -> Any:
    body = parse_body(schemas.ExportIn)
    principal = current_principal()
    export = exports.create_export(
        db_session(),
        runtime=app_runtime(),
        tenant_id=principal.tenant_id,
        batch_id=batch_id,
        fmt=body.format,
        actor=principal.actor,
        options=body.options,
        password=body.password,
        first_serial=body.first_serial,
        last_serial=body.last_serial,
    )
    return schemas.ExportOut.of(export).model_dump(mode="json"), 202


@api.get("/exports")
@operation(
    "List exports",
    tag="exports",
    response=schemas.ExportPage,
    query={
        **PAGINATION,
        "batch_id": {"type": "integer", "minimum": 1},
        "status": {"type": "string"},
    },
)
@requires("read")
def list_exports() -> Any:
    limit, after = page_args()
    items = list(
        exports.list_exports(
            db_session(),
            tenant_id=current_principal().tenant_id,
            after_id=after,
            limit=limit,
            batch_id=query_int("batch_id", low=1),
            status=request.args.get("status"),
        )
    )
    return schemas.ExportPage(
        items=[schemas.ExportOut.of(e) for e in items], next_after=next_after(items, limit)
    ).model_dump(mode="json")


@api.get("/exports/<id:export_id>")
@operation("Get an export and its progress", tag="exports", response=schemas.ExportOut)
@requires("read")
def get_export(export_id: int) -> Any:
    export = exports.get_export_or_raise(
        db_session(), tenant_id=current_principal().tenant_id, export_id=export_id
    )
    return schemas.ExportOut.of(export).model_dump(mode="json")


@api.get("/exports/<id:export_id>/file")
@operation(
    "Download an export's print file (audited)",
    tag="exports",
    binary="application/octet-stream",
    errors=(409,),
)
@requires("export")
def download_export(export_id: int) -> Response:
    principal = current_principal()
    export, path = exports.open_export_file(
        db_session(),
        runtime=app_runtime(),
        tenant_id=principal.tenant_id,
        export_id=export_id,
        actor=principal.actor,
        ip=client_ip(),
    )
    response = send_file(
        path,
        as_attachment=True,
        download_name=export.file_name,
        conditional=False,
        etag=export.sha256 or False,
    )
    response.headers["X-Content-SHA256"] = export.sha256 or ""
    return response


@api.post("/verify")
@operation(
    "Verify a code offline (token, short URL or GS1 Digital Link)",
    tag="codes",
    body=schemas.VerifyIn,
    response=schemas.VerifyOut,
    errors=(415,),
)
@requires("read")
def verify() -> Any:
    body = parse_body(schemas.VerifyIn)
    result = services.verify(app_runtime(), body.code)
    principal = current_principal()
    if isinstance(result, VerifiedCode) and result.tenant_id == principal.tenant_id:
        return schemas.VerifyOut(
            valid=True,
            format=result.format,
            tenant_id=result.tenant_id,
            batch_id=result.batch_id,
            serial=result.serial,
            key_id=result.key_id,
        ).model_dump(mode="json")
    reason = "unknown_key" if isinstance(result, VerifiedCode) else result.reason
    return schemas.VerifyOut(valid=False, reason=reason).model_dump(mode="json")


def _key_out(key: Any) -> schemas.KeyOut:
    return schemas.KeyOut.model_validate(key, from_attributes=True)


@api.get("/keys")
@operation("List the tenant's code key versions", tag="keys", response=schemas.KeyList)
@requires("keys")
def list_keys() -> Any:
    keys = core_services.list_code_keys(db_session(), tenant_id=current_principal().tenant_id)
    return schemas.KeyList(items=[_key_out(k) for k in keys]).model_dump(mode="json")


@api.post("/keys/rotate")
@operation(
    "Rotate: a new current key for new batches", tag="keys", response=schemas.KeyOut, status=201
)
@requires("keys")
def rotate_key() -> Any:
    principal = current_principal()
    session = db_session()
    key_id = services.rotate_code_key(session, runtime=app_runtime(), tenant_id=principal.tenant_id)
    audit("key.rotate", target_type="key", target_id=key_id)
    key = core_services.get_current_code_key(session, tenant_id=principal.tenant_id)
    return _key_out(key).model_dump(mode="json"), 201


@api.post("/keys/<id:key_id>/retire")
@operation(
    "Retire a key: its codes stop verifying, its batches are revoked",
    tag="keys",
    body=schemas.KeyRetireIn,
    response=schemas.KeyRetireOut,
    errors=(415,),
)
@requires("keys")
def retire_key(key_id: int) -> Any:
    body = parse_body(schemas.KeyRetireIn)
    principal = current_principal()
    session = db_session()
    revoked = services.retire_code_key(
        session,
        runtime=app_runtime(),
        tenant_id=principal.tenant_id,
        key_id=key_id,
        reason=body.reason,
    )
    audit(
        "key.retire",
        target_type="key",
        target_id=key_id,
        detail={"reason": body.reason, "batches_revoked": revoked},
    )
    keys = {k.id: k for k in core_services.list_code_keys(session, tenant_id=principal.tenant_id)}
    return schemas.KeyRetireOut(key=_key_out(keys[key_id]), batches_revoked=revoked).model_dump(
        mode="json"
    )
