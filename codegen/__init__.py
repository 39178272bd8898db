"""Code generation: products, batches, signed code tokens, key versions and print files.

Other packages use these names only.
"""

from flask import Blueprint

from codegen.exports import (
    create_export,
    export_progress,
    get_export_or_raise,
    list_exports,
    open_export_file,
    resume_exports,
    run_chunk,
    scan_host_for,
    write_codes,
)
from codegen.services import (
    CodeContext,
    IssuedCode,
    code_for_serial,
    create_batch,
    create_product,
    get_batch,
    get_batch_or_raise,
    get_product,
    get_product_by_gtin,
    get_product_by_sku_or_raise,
    get_product_or_raise,
    key_ring_cache,
    list_batches,
    list_products,
    load_code_context,
    retire_code_key,
    rotate_code_key,
    verify,
    verify_many,
)
from codegen.tokens import (
    InvalidToken,
    Verification,
    VerifiedCode,
    key_id_of,
    parse_code,
)
from core.runtime import Runtime


def tenant_of_code(runtime: Runtime, text: str) -> int | None:
    """The tenant whose key a (possibly forged) code names, if that key exists; no database."""
    key_id = key_id_of(text)
    if key_id is None:
        return None
    material = key_ring_cache(runtime).ring().get(key_id)
    return material.tenant_id if material is not None else None


def api_blueprint() -> Blueprint:
    """The management API blueprint (mounted under /api/v1 by the console)."""
    from codegen.views import api

    return api


def public_keys(runtime: Runtime) -> dict[str, object]:
    """The published Ed25519 keys that verify gs1-digsig codes without asking Yima."""
    from codegen.services import published_keys

    return published_keys(runtime)


__all__ = [
    "CodeContext",
    "InvalidToken",
    "IssuedCode",
    "Verification",
    "VerifiedCode",
    "api_blueprint",
    "code_for_serial",
    "create_batch",
    "create_export",
    "create_product",
    "export_progress",
    "get_batch",
    "get_batch_or_raise",
    "get_export_or_raise",
    "get_product",
    "get_product_by_gtin",
    "get_product_by_sku_or_raise",
    "get_product_or_raise",
    "key_id_of",
    "key_ring_cache",
    "list_batches",
    "list_exports",
    "list_products",
    "load_code_context",
    "open_export_file",
    "parse_code",
    "public_keys",
    "resume_exports",
    "retire_code_key",
    "rotate_code_key",
    "run_chunk",
    "scan_host_for",
    "tenant_of_code",
    "verify",
    "verify_many",
    "write_codes",
]
