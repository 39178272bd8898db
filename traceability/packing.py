"""Aggregation: items packed into cases, cases onto pallets (any depth), and unpacking.

One row per parent/child pair, kept when unpacked (``unpacked_at``) so a journey can tell what
was inside a case when it was shipped. "One parent at a time" is the partial unique index
``uq_trace_packings_current_child``; a concurrent upload that would break it fails on the index
and changes nothing. A bulk upload is all or nothing: it is loaded into a temporary table
(PostgreSQL: COPY), checked against what is packed already (same pair again: nothing to do;
another parent: a conflict naming the code), checked for cycles, then inserted in one
statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.codes import CodeRef
from traceability.errors import PackingConflictError
from traceability.models import Packing
from traceability.settings import mark_in_use

MAX_DEPTH = 8
MAX_PAIRS = 500_000
IN_CHUNK = 2_000

_TMP = "trace_tmp_pairs"


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
    keys = sorted(set(children))
    for part in _chunks(keys):
        rows = session.execute(
            select(c.child_batch_id, c.child_serial, c.parent_batch_id, c.parent_serial).where(
                tuple_(c.child_batch_id, c.child_serial).in_(
                    [(k.batch_id, k.serial) for k in part]
                ),
                c.unpacked_at.is_(None),
            )
        ).all()
        for cb, cs, pb, ps in rows:
            found[CodeRef(cb, cs)] = CodeRef(pb, ps)
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


def _load_tmp(conn: Connection, rows: list[tuple[int, int, int, int]]) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                f"CREATE TEMP TABLE IF NOT EXISTS {_TMP} (p_b bigint, p_s bigint, c_b bigint, "
                "c_s bigint) ON COMMIT DROP"
            )
        )
        # The table lives until the transaction ends: a second upload in it starts empty.
        conn.execute(text(f"TRUNCATE {_TMP}"))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {_TMP} (p_b, p_s, c_b, c_s) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {_TMP} (p_b, p_s, c_b, c_s)"))
        conn.execute(text(f"DELETE FROM {_TMP}"))
        conn.exec_driver_sql(f"INSERT INTO {_TMP} VALUES (?, ?, ?, ?)", rows)


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
    conn = session.connection()
    _load_tmp(conn, [(p.batch_id, p.serial, ch.batch_id, ch.serial) for ch, p in wanted.items()])
    clash = conn.execute(
        text(
            f"SELECT t.c_b, t.c_s, p.parent_batch_id, p.parent_serial, t.p_b, t.p_s FROM {_TMP} t "
            "JOIN trace_packings p ON p.child_batch_id = t.c_b AND p.child_serial = t.c_s "
            "AND p.unpacked_at IS NULL"
        )
    ).all()
    already = 0
    conflicts: list[str] = []
    for cb, cs, pb, ps, want_b, want_s in clash:
        if (pb, ps) == (want_b, want_s):
            already += 1
        else:
            conflicts.append(f"batch {cb} #{cs} is already in batch {pb} #{ps}")
    if conflicts:
        raise PackingConflictError(
            f"{len(conflicts)} codes are packed elsewhere: {'; '.join(conflicts[:5])}",
            errors={"pairs": "codes already packed into another parent; unpack them first"},
        )
    _check_cycles(session, wanted)
    mark_in_use(session, runtime, tenant_id=tenant_id)
    try:
        result = conn.execute(
            text(
                "INSERT INTO trace_packings (tenant_id, parent_batch_id, parent_serial, "
                "child_batch_id, child_serial, packed_at, line, operator) "
                f"SELECT :tenant, t.p_b, t.p_s, t.c_b, t.c_s, :at, :line, :operator FROM {_TMP} t "
                "WHERE NOT EXISTS (SELECT 1 FROM trace_packings p WHERE p.child_batch_id = t.c_b "
                "AND p.child_serial = t.c_s AND p.unpacked_at IS NULL)"
            ),
            {
                "tenant": tenant_id,
                "at": _db_time(conn, at),
                "line": line[:100],
                "operator": operator[:200],
            },
        )
    except IntegrityError as exc:
        raise PackingConflictError(
            "another upload packed some of these codes at the same time; nothing was changed",
            errors={"pairs": "packed concurrently elsewhere"},
        ) from exc
    if conn.dialect.name != "postgresql":
        conn.execute(text(f"DELETE FROM {_TMP}"))
    return PackResult(packed=int(result.rowcount or 0), already_packed=already)


def _db_time(conn: Connection, at: dt.datetime) -> Any:
    # Text statements bypass UTCDateTime; store what the column type would have stored.
    from core.db import UTCDateTime

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
    for part in _chunks(sorted(set(children))):
        result = session.execute(
            update(Packing)
            .where(
                c.tenant_id == tenant_id,
                tuple_(c.child_batch_id, c.child_serial).in_(
                    [(k.batch_id, k.serial) for k in part]
                ),
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
        for part in _chunks(frontier):
            when = (
                c.unpacked_at.is_(None)
                if at is None
                else and_(c.packed_at <= at, or_(c.unpacked_at.is_(None), c.unpacked_at > at))
            )
            rows = session.execute(
                select(c.child_batch_id, c.child_serial).where(
                    c.tenant_id == tenant_id,
                    tuple_(c.parent_batch_id, c.parent_serial).in_(
                        [(k.batch_id, k.serial) for k in part]
                    ),
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


def count_contents(session: Session, *, tenant_id: int, parent: CodeRef) -> int:
    return len(contents_of(session, tenant_id=tenant_id, parents=[parent]))


@dataclass(frozen=True)
class PackedInto:
    """One packing of a code (or of a unit holding it): into ``parent`` from ``packed_at``."""

    child: CodeRef
    parent: CodeRef
    packed_at: dt.datetime
    unpacked_at: dt.datetime | None
    line: str
    depth: int  # 1: the code itself was packed; 2: its case was packed; ...


def packing_history(session: Session, code: CodeRef) -> list[PackedInto]:
    """Every packing of the code and of what held it, oldest first (for journeys)."""
    c = Packing.__table__.c
    out: list[PackedInto] = []
    frontier = {code}
    seen = {code}
    for depth in range(1, MAX_DEPTH + 1):
        if not frontier:
            break
        rows = session.execute(
            select(
                c.child_batch_id,
                c.child_serial,
                c.parent_batch_id,
                c.parent_serial,
                c.packed_at,
                c.unpacked_at,
                c.line,
            ).where(
                or_(
                    *(
                        and_(c.child_batch_id == k.batch_id, c.child_serial == k.serial)
                        for k in frontier
                    )
                )
            )
        ).all()
        nxt: set[CodeRef] = set()
        for cb, cs, pb, ps, packed_at, unpacked_at, line in rows:
            parent = CodeRef(pb, ps)
            out.append(PackedInto(CodeRef(cb, cs), parent, packed_at, unpacked_at, line, depth))
            if parent not in seen:
                seen.add(parent)
                nxt.add(parent)
        frontier = nxt
    out.sort(key=lambda p: (p.packed_at, p.depth))
    return out


def current_parent(session: Session, code: CodeRef) -> CodeRef | None:
    return _current_parents(session, [code]).get(code)


def count_packed(session: Session, *, tenant_id: int) -> int:
    c = Packing.__table__.c
    return int(
        session.scalar(
            select(func.count()).where(c.tenant_id == tenant_id, c.unpacked_at.is_(None))
        )
        or 0
    )
