"""Aggregation: items packed into cases, cases onto pallets (any depth), and unpacking.

One row per parent/child pair, kept when unpacked (``unpacked_at``) so a journey can tell what
was inside a case when it was shipped. "One parent at a time" is the partial unique index
``uq_trace_packings_current_child``; a concurrent upload that would break it fails on the index
and changes nothing. A bulk upload is all or nothing: its children are looked up batch by batch
on that index (what is packed already: the same pair again is nothing to do, another parent is a
conflict naming the code), the upload is checked for cycles, and the new pairs are written in one
go (PostgreSQL: COPY). Nothing here reads the whole table: the cost follows the upload.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import UTCDateTime, driver_cursor, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.codes import CodeRef, by_batch, serial_in
from traceability.errors import PackingConflictError
from traceability.models import Packing
from traceability.settings import mark_in_use

MAX_DEPTH = 8
MAX_PAIRS = 100_000  # per upload (16 MB of URL pairs); a line uploads as it goes
IN_CHUNK = 2_000


@dataclass(frozen=True)
class PackResult:
    packed: int
    already_packed: int


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _current_parents(session: Session, children: Iterable[CodeRef]) -> dict[CodeRef, CodeRef]:
    c = Packing.__table__.c
    found: dict[CodeRef, CodeRef] = {}
    for batch_id, serials in by_batch(children).items():
        for part in _chunks(serials, IN_CHUNK * 10):
            rows = session.execute(
                select(c.child_serial, c.parent_batch_id, c.parent_serial).where(
                    c.child_batch_id == batch_id,
                    serial_in(session, c.child_serial, part),
                    c.unpacked_at.is_(None),
                )
            ).all()
            for cs, pb, ps in rows:
                found[CodeRef(batch_id, cs)] = CodeRef(pb, ps)
    return found


def _check_pairs(pairs: Sequence[tuple[CodeRef, CodeRef]]) -> dict[CodeRef, CodeRef]:
    if not pairs:
        raise ValidationFailedError.field("pairs", "at least one parent/child pair")
    if len(pairs) > MAX_PAIRS:
        raise ValidationFailedError.field("pairs", f"at most {MAX_PAIRS} pairs per upload")
    wanted: dict[CodeRef, CodeRef] = {}
    for i, (parent, child) in enumerate(pairs):
        if parent == child:
            raise PackingConflictError(
                f"pairs[{i}]: a code cannot be packed into itself",
                errors={f"pairs[{i}].child": "same code as the parent"},
            )
        other = wanted.setdefault(child, parent)
        if other != parent:
            raise PackingConflictError(
                f"pairs[{i}]: the child is packed into two parents in this upload",
                errors={f"pairs[{i}].child": "also packed into another parent in this upload"},
            )
    return wanted


def _check_cycles(session: Session, wanted: dict[CodeRef, CodeRef]) -> None:
    """No parent may end up inside itself, nor nest deeper than MAX_DEPTH."""
    up: dict[CodeRef, CodeRef | None] = dict(wanted)
    frontier = {p for p in wanted.values() if p not in up}
    for _ in range(MAX_DEPTH + 1):
        if not frontier:
            break
        known = _current_parents(session, frontier)
        for node in frontier:
            up[node] = known.get(node)
        frontier = {p for p in known.values() if p not in up}
    for start in set(wanted.values()):
        step: CodeRef | None = start
        seen = {start}
        for _ in range(MAX_DEPTH + 1):
            step = up.get(step) if step is not None else None
            if step is None:
                break
            if step in seen:
                raise PackingConflictError(
                    f"packing would put batch {start.batch_id} #{start.serial} inside itself",
                    errors={"pairs": "a cycle: a parent inside one of its own children"},
                )
            seen.add(step)
        else:
            raise PackingConflictError(
                f"packing nests deeper than {MAX_DEPTH} levels",
                errors={"pairs": f"more than {MAX_DEPTH} levels of packing"},
            )


def pack(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    pairs: Sequence[tuple[CodeRef, CodeRef]],
    operator: str,
    line: str = "",
    at: dt.datetime | None = None,
) -> PackResult:
    """Pack every child into its parent, all or nothing. Pairs already packed so are skipped
    (a line controller may retry); a child packed into another parent is a conflict."""
    wanted = _check_pairs(pairs)
    at = at or utcnow()
    current = _current_parents(session, wanted)
    already = 0
    conflicts: list[str] = []
    for child, parent in current.items():
        if parent == wanted[child]:
            already += 1
        else:
            conflicts.append(
                f"batch {child.batch_id} #{child.serial} is already in "
                f"batch {parent.batch_id} #{parent.serial}"
            )
    if conflicts:
        raise PackingConflictError(
            f"{len(conflicts)} codes are packed elsewhere: {'; '.join(conflicts[:5])}",
            errors={"pairs": "codes already packed into another parent; unpack them first"},
        )
    _check_cycles(session, wanted)
    mark_in_use(session, runtime, tenant_id=tenant_id)
    new = [(child, parent) for child, parent in wanted.items() if child not in current]
    if new:
        _insert(session, tenant_id, new, at=at, line=line[:100], operator=operator[:200])
    return PackResult(packed=len(new), already_packed=already)


_COLUMNS = (
    "tenant_id, parent_batch_id, parent_serial, child_batch_id, child_serial, packed_at, line, "
    "operator"
)


def _insert(
    session: Session,
    tenant_id: int,
    pairs: list[tuple[CodeRef, CodeRef]],
    *,
    at: dt.datetime,
    line: str,
    operator: str,
) -> None:
    conn = session.connection()
    try:
        if conn.dialect.name == "postgresql":
            import psycopg

            cursor = driver_cursor(session)
            try:
                with cursor.copy(f"COPY trace_packings ({_COLUMNS}) FROM STDIN") as copy:
                    for child, parent in pairs:
                        copy.write_row(
                            (
                                tenant_id,
                                parent.batch_id,
                                parent.serial,
                                child.batch_id,
                                child.serial,
                                at,
                                line,
                                operator,
                            )
                        )
            except psycopg.errors.UniqueViolation as exc:
                raise IntegrityError("COPY trace_packings", None, exc) from exc
        else:
            when = _db_time(conn, at)
            conn.exec_driver_sql(
                f"INSERT INTO trace_packings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (tenant_id, p.batch_id, p.serial, c.batch_id, c.serial, when, line, operator)
                    for c, p in pairs
                ],
            )
    except IntegrityError as exc:
        # Another upload packed some of these children after we looked: the index decided.
        raise PackingConflictError(
            "another upload packed some of these codes at the same time; nothing was changed",
            errors={"pairs": "packed concurrently elsewhere"},
        ) from exc


def _db_time(conn: Connection, at: dt.datetime) -> Any:
    # Text statements bypass UTCDateTime; store what the column type would have stored.
    processor = UTCDateTime().bind_processor(conn.dialect)
    return processor(at) if processor else at


def unpack(
    session: Session,
    *,
    tenant_id: int,
    parent: CodeRef | None = None,
    children: Sequence[CodeRef] = (),
    at: dt.datetime | None = None,
) -> int:
    """Take everything out of ``parent``, or ``children`` out of whatever holds them; returns
    how many codes were unpacked. A child that is not packed is a conflict."""
    at = at or utcnow()
    c = Packing.__table__.c
    if parent is not None:
        result = session.execute(
            update(Packing)
            .where(
                c.tenant_id == tenant_id,
                c.parent_batch_id == parent.batch_id,
                c.parent_serial == parent.serial,
                c.unpacked_at.is_(None),
            )
            .values(unpacked_at=at)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise PackingConflictError(
                "nothing is packed in this code", errors={"parent": "holds nothing"}
            )
        return int(result.rowcount)  # type: ignore[attr-defined]
    held = _current_parents(session, children)
    loose = [ch for ch in children if ch not in held]
    if loose:
        raise PackingConflictError(
            f"{len(loose)} codes are not packed in anything",
            errors={"children": f"batch {loose[0].batch_id} #{loose[0].serial} is not packed"},
        )
    done = 0
    for batch_id, serials in by_batch(children).items():
        for part in _chunks(serials, IN_CHUNK * 10):
            result = session.execute(
                update(Packing)
                .where(
                    c.tenant_id == tenant_id,
                    c.child_batch_id == batch_id,
                    serial_in(session, c.child_serial, part),
                    c.unpacked_at.is_(None),
                )
                .values(unpacked_at=at)
            )
            done += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return done


def contents_of(
    session: Session, *, tenant_id: int, parents: Sequence[CodeRef], at: dt.datetime | None = None
) -> list[CodeRef]:
    """Everything inside ``parents`` (all levels), now or at time ``at``."""
    c = Packing.__table__.c
    found: list[CodeRef] = []
    seen = set(parents)
    frontier = list(seen)
    for _ in range(MAX_DEPTH + 1):
        if not frontier:
            break
        nxt: list[CodeRef] = []
        when = (
            c.unpacked_at.is_(None)
            if at is None
            else and_(c.packed_at <= at, or_(c.unpacked_at.is_(None), c.unpacked_at > at))
        )
        for batch_id, serials in by_batch(frontier).items():
            for part in _chunks(serials, IN_CHUNK * 10):
                rows = session.execute(
                    select(c.child_batch_id, c.child_serial).where(
                        c.tenant_id == tenant_id,
                        c.parent_batch_id == batch_id,
                        serial_in(session, c.parent_serial, part),
                        when,
                    )
                ).all()
                for cb, cs in rows:
                    ref = CodeRef(cb, cs)
                    if ref not in seen:
                        seen.add(ref)
                        nxt.append(ref)
        found.extend(nxt)
        frontier = nxt
    return found


@dataclass(frozen=True)
class PackedInto:
    """One packing of a code (or of a unit holding it): into ``parent`` from ``packed_at``."""

    child: CodeRef
    parent: CodeRef
    packed_at: dt.datetime
    unpacked_at: dt.datetime | None
    line: str
    depth: int  # 1: the code itself was packed; 2: its case was packed; ...
    # (read for a scan by traceability.journey in one statement with the code's activation)


def current_parent(session: Session, code: CodeRef) -> CodeRef | None:
    return _current_parents(session, [code]).get(code)
