"""Codes as the line and the warehouse send them, resolved to (batch, serial) of one brand.

Handhelds and line controllers send what they scanned: a bare token, a short URL or a GS1
Digital Link URL. Each is verified offline (:func:`codegen.verify_many`, vectorised for bare
tokens) and must be a live code of the caller's brand: a forged code, another brand's code and a
serial beyond its batch are all ``code_unknown``, named by the field that carried it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

import codegen
from core.runtime import Runtime
from traceability.errors import CodeUnknownError

MAX_CODE_LENGTH = 300
MAX_ERRORS_NAMED = 20


class CodeRef(NamedTuple):
    """One code of a brand: its batch and serial (a tuple: hashing and ordering hundreds of
    thousands of them in an upload stay in C)."""

    batch_id: int
    serial: int


def resolve_codes(
    runtime: Runtime,
    session: Session,
    *,
    tenant_id: int,
    texts: Sequence[object],
    fields: Sequence[str],
) -> list[CodeRef]:
    """Every text as a code of ``tenant_id``, in order; :class:`CodeUnknownError` naming the
    fields (``fields[i]`` for ``texts[i]``) of the first bad ones otherwise."""
    errors: dict[str, str] = {}
    strings = [t.strip() if isinstance(t, str) else "" for t in texts]
    for i, text in enumerate(strings):
        if not text or len(text) > MAX_CODE_LENGTH:
            errors[fields[i]] = "expected a code: a token, a short URL or a GS1 Digital Link"
    if errors:
        raise CodeUnknownError(_summary(errors), errors=_first(errors))
    verified = codegen.verify_many(runtime, strings)
    refs: list[CodeRef] = []
    quantities: dict[int, int | None] = {}
    for i, result in enumerate(verified):
        if isinstance(result, codegen.InvalidToken) or result.tenant_id != tenant_id:
            errors[fields[i]] = "not a code of this brand"
            continue
        if result.batch_id not in quantities:
            context = codegen.load_code_context(runtime, session, result.batch_id)
            ok = context is not None and context.tenant_id == tenant_id
            quantities[result.batch_id] = context.quantity if ok and context else None
        quantity = quantities[result.batch_id]
        if quantity is None or result.serial > quantity:
            errors[fields[i]] = "not a code of this brand"
            continue
        refs.append(CodeRef(result.batch_id, result.serial))
    if errors:
        raise CodeUnknownError(_summary(errors), errors=_first(errors))
    return refs


def resolve_code(
    runtime: Runtime, session: Session, *, tenant_id: int, text: object, field: str
) -> CodeRef:
    return resolve_codes(runtime, session, tenant_id=tenant_id, texts=[text], fields=[field])[0]


def by_batch(refs: Iterable[CodeRef]) -> dict[int, list[int]]:
    """Serials per batch, sorted: queries go batch by batch (``batch_id = :b AND serial =
    ANY(:serials)`` plans in a millisecond; a list of row values of thousands does not)."""
    out: dict[int, set[int]] = {}
    for batch_id, serial in refs:
        out.setdefault(batch_id, set()).add(serial)
    return {batch_id: sorted(serials) for batch_id, serials in out.items()}


def serial_in(session: Session, column: Any, serials: Sequence[int]) -> Any:
    """``column = ANY(:serials)`` on PostgreSQL (one array parameter), ``IN (...)`` elsewhere."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import BigInteger, any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(serials), type_=ARRAY(BigInteger())))
    return column.in_(list(serials))


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector for an upload: it makes about ten objects a pair and
    no cycles, and the collector's passes over them cost a quarter of the upload (measured in
    bench/bench_trace.py); reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _summary(errors: dict[str, str]) -> str:
    names = list(errors)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"unknown or foreign codes in {', '.join(names[:3])}{more}"


def _first(errors: dict[str, str]) -> dict[str, str]:
    return dict(islice(errors.items(), MAX_ERRORS_NAMED))
