"""Activation at the line: by serial range, by print roll or by case, and deactivation.

Each act is one ``trace_activations`` row (who, where, when, why). The state of every serial
lives in ``trace_activation_spans``, an interval map per batch whose spans never overlap: an act
paints its ranges over the map (splitting what it overlaps), so activating ten million serials
writes one span, and a code's state is one index probe (the span that starts at or before its
serial). Painting a batch's map is serialised by a per-batch lock (PostgreSQL advisory lock;
SQLite serialises writers anyway), so concurrent acts on one batch cannot interleave their spans.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.codes import CodeRef
from traceability.models import DEACTIVATION_REASONS, Activation, ActivationSpan
from traceability.packing import contents_of
from traceability.settings import mark_in_use

MAX_ROLL_SIZE = 10_000_000


@dataclass(frozen=True)
class SerialRange:
    batch_id: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def compress(refs: Iterable[CodeRef]) -> list[SerialRange]:
    """Codes as the fewest ranges of consecutive serials (packed items usually are)."""
    out: list[SerialRange] = []
    for batch_id, group in groupby(sorted(set(refs)), key=lambda r: r.batch_id):
        serials = [r.serial for r in group]
        start = prev = serials[0]
        for serial in serials[1:]:
            if serial != prev + 1:
                out.append(SerialRange(batch_id, start, prev))
                start = serial
            prev = serial
        out.append(SerialRange(batch_id, start, prev))
    return out


def roll_range(*, roll: object, roll_size: object, quantity: int) -> tuple[int, int]:
    """Serials of print roll ``roll`` (1-based) of ``roll_size`` labels, in print order."""
    if (
        not isinstance(roll_size, int)
        or isinstance(roll_size, bool)
        or not 1 <= roll_size <= MAX_ROLL_SIZE
    ):
        raise ValidationFailedError.field("roll_size", f"an integer from 1 to {MAX_ROLL_SIZE}")
    rolls = -(-quantity // roll_size)
    if not isinstance(roll, int) or isinstance(roll, bool) or not 1 <= roll <= rolls:
        raise ValidationFailedError.field("roll", f"a roll number from 1 to {rolls}")
    first = (roll - 1) * roll_size + 1
    return first, min(roll * roll_size, quantity)


def _lock_batch(session: Session, batch_id: int) -> None:
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(b"trace-spans") << 31 | batch_id
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key % (1 << 63)})


def _paint(session: Session, r: SerialRange, *, activation_id: int, active: bool) -> None:
    c = ActivationSpan
    _lock_batch(session, r.batch_id)
    left = session.execute(
        select(c.first_serial, c.last_serial, c.activation_id, c.active)
        .where(c.batch_id == r.batch_id, c.first_serial < r.first)
        .order_by(c.first_serial.desc())
        .limit(1)
    ).first()
    inside = session.execute(
        select(c.first_serial, c.last_serial, c.activation_id, c.active)
        .where(c.batch_id == r.batch_id, c.first_serial.between(r.first, r.last))
        .order_by(c.first_serial.desc())
        .limit(1)
    ).first()
    rows = [
        {
            "batch_id": r.batch_id,
            "first_serial": r.first,
            "last_serial": r.last,
            "activation_id": activation_id,
            "active": active,
        }
    ]
    if left is not None and left.last_serial >= r.first:
        session.execute(
            update(ActivationSpan)
            .where(c.batch_id == r.batch_id, c.first_serial == left.first_serial)
            .values(last_serial=r.first - 1)
        )
        if left.last_serial > r.last:
            rows.append(
                {
                    "batch_id": r.batch_id,
                    "first_serial": r.last + 1,
                    "last_serial": left.last_serial,
                    "activation_id": left.activation_id,
                    "active": left.active,
                }
            )
    if inside is not None and inside.last_serial > r.last:
        rows.append(
            {
                "batch_id": r.batch_id,
                "first_serial": r.last + 1,
                "last_serial": inside.last_serial,
                "activation_id": inside.activation_id,
                "active": inside.active,
            }
        )
    session.execute(
        delete(ActivationSpan).where(
            c.batch_id == r.batch_id, c.first_serial.between(r.first, r.last)
        )
    )
    session.execute(insert(ActivationSpan), rows)


def record_activation(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    action: str,
    scope: str,
    ranges: Sequence[SerialRange],
    operator: str,
    reason: str | None = None,
    note: str = "",
    line: str = "",
    site: str = "",
    reference: str = "",
    at: dt.datetime | None = None,
) -> Activation:
    """Record one act and paint its ranges; ``ranges`` must be codes of ``tenant_id``."""
    if action == "deactivate":
        if reason not in DEACTIVATION_REASONS:
            raise ValidationFailedError.field("reason", f"one of {', '.join(DEACTIVATION_REASONS)}")
    elif reason is not None:
        raise ValidationFailedError.field("reason", "only a deactivation has a reason")
    if not ranges:
        raise ValidationFailedError.field("codes", "nothing to activate")
    head = ranges[0]
    event = Activation(
        tenant_id=tenant_id,
        action=action,
        scope=scope,
        batch_id=head.batch_id,
        first_serial=min(r.first for r in ranges if r.batch_id == head.batch_id),
        last_serial=max(r.last for r in ranges if r.batch_id == head.batch_id),
        code_count=sum(r.count for r in ranges),
        reason=reason,
        note=note[:500],
        line=line[:100],
        site=site[:200],
        operator=operator[:200],
        reference=reference[:200],
        at=at or utcnow(),
    )
    session.add(event)
    session.flush()
    mark_in_use(session, runtime, tenant_id=tenant_id)
    for r in ranges:
        _paint(session, r, activation_id=event.id, active=action == "activate")
    return event


def activate_case(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    case: CodeRef,
    action: str,
    operator: str,
    reference: str,
    **details: object,
) -> Activation:
    """Activate (or deactivate) a case or pallet with everything packed in it now."""
    inside = contents_of(session, tenant_id=tenant_id, parents=[case])
    ranges = compress([case, *inside])
    return record_activation(
        session,
        runtime,
        tenant_id=tenant_id,
        action=action,
        scope="case",
        ranges=ranges,
        operator=operator,
        reference=reference,
        **details,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class ActivationState:
    """What the line did last to a code: None when it never touched it."""

    active: bool
    activation_id: int
    at: dt.datetime
    reason: str | None
    line: str
    site: str


def activation_state(session: Session, code: CodeRef) -> ActivationState | None:
    """The span holding the code's serial, with the act that set it (one query)."""
    c, a = ActivationSpan, Activation
    row = session.execute(
        select(c.last_serial, c.active, c.activation_id, a.at, a.reason, a.line, a.site)
        .join(a, a.id == c.activation_id)
        .where(c.batch_id == code.batch_id, c.first_serial <= code.serial)
        .order_by(c.first_serial.desc())
        .limit(1)
    ).first()
    if row is None or row.last_serial < code.serial:
        return None
    return ActivationState(
        bool(row.active), int(row.activation_id), row.at, row.reason, row.line, row.site
    )


def inactive_codes(session: Session, refs: Sequence[CodeRef], *, required: bool) -> list[CodeRef]:
    """The codes among ``refs`` that are deactivated, or (``required``) never activated."""
    c = ActivationSpan
    bad: list[CodeRef] = []
    for batch_id, group in groupby(sorted(set(refs)), key=lambda r: r.batch_id):
        serials = [r.serial for r in group]
        spans = session.execute(
            select(c.first_serial, c.last_serial, c.active)
            .where(
                c.batch_id == batch_id,
                c.first_serial <= serials[-1],
                c.last_serial >= serials[0],
            )
            .order_by(c.first_serial)
        ).all()
        i = 0
        for serial in serials:
            while i < len(spans) and spans[i].last_serial < serial:
                i += 1
            covered = i < len(spans) and spans[i].first_serial <= serial
            if (covered and not spans[i].active) or (not covered and required):
                bad.append(CodeRef(batch_id, serial))
    return bad


def list_activations(
    session: Session, *, tenant_id: int, batch_id: int | None, after_id: int, limit: int
) -> Sequence[Activation]:
    stmt = select(Activation).where(Activation.tenant_id == tenant_id, Activation.id > after_id)
    if batch_id is not None:
        stmt = stmt.where(Activation.batch_id == batch_id)
    return session.scalars(stmt.order_by(Activation.id).limit(limit)).all()
