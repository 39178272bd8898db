"""Shipments: goods sent to a distributor, received by it, returned by it.

A shipment names its units (an item, a case, a pallet: one row each, whatever they hold) and
ranges of loose serials. Which codes a unit carried is read from packing *at the time of
shipping*, so unpacking a case later does not rewrite history, and shipping a pallet of 10,000
items writes one row. A code's movements are the shipments of the code itself, of every unit
that held it when that unit was shipped, and of ranges that cover it; the holder of a code is
the receiver of its latest movement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import UTCDateTime, fetch_all, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.activation import SerialRange, inactive_codes
from traceability.codes import CodeRef, by_batch, serial_in
from traceability.distributors import ancestors_of, authorised_regions, get_distributor_or_raise
from traceability.errors import (
    NotActivatedError,
    NotHeldError,
    ShipmentConflictError,
    ShipmentNotFoundError,
)
from traceability.models import Packing, Shipment, ShipmentRange, ShipmentUnit
from traceability.packing import IN_CHUNK, MAX_DEPTH, PackedInto, contents_of
from traceability.regions import Located, region_check, region_of_code
from traceability.settings import get_trace_config, mark_in_use

MAX_UNITS = 10_000
MAX_RANGES = 1_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FOREVER = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Movement:
    """One shipment that moved a code (itself, inside ``via``, or in a range)."""

    shipment_id: int
    reference: str
    kind: str
    from_distributor_id: int | None
    to_distributor_id: int | None
    status: str
    shipped_at: dt.datetime
    received_at: dt.datetime | None
    via: CodeRef | None  # the case or pallet that carried it; None: the code itself or a range


# --- where a code has been ------------------------------------------------------------------

Interval = tuple[dt.datetime, dt.datetime]


def _ancestor_intervals(
    session: Session, codes: Sequence[CodeRef]
) -> dict[CodeRef, dict[CodeRef, list[Interval]]]:
    """For each code: every unit that ever held it, with when it held it."""
    c = Packing.__table__.c
    rows_by_child: dict[CodeRef, list[tuple[CodeRef, dt.datetime, dt.datetime]]] = defaultdict(list)
    known: set[CodeRef] = set()
    frontier = set(codes)
    for _ in range(MAX_DEPTH + 1):
        frontier -= known
        if not frontier:
            break
        known |= frontier
        batches = by_batch(frontier)
        frontier = set()
        for batch_id, serials in batches.items():
            for i in range(0, len(serials), IN_CHUNK * 10):
                rows = session.execute(
                    select(
                        c.child_serial,
                        c.parent_batch_id,
                        c.parent_serial,
                        c.packed_at,
                        c.unpacked_at,
                    ).where(
                        c.child_batch_id == batch_id,
                        serial_in(session, c.child_serial, serials[i : i + IN_CHUNK * 10]),
                    )
                ).all()
                for cs, pb, ps, packed, unpacked in rows:
                    parent = CodeRef(pb, ps)
                    rows_by_child[CodeRef(batch_id, cs)].append(
                        (parent, packed, unpacked or _FOREVER)
                    )
                    frontier.add(parent)
    return {code: _intervals(code, rows_by_child) for code in codes}


def _intervals(
    code: CodeRef, rows_by_child: dict[CodeRef, list[tuple[CodeRef, dt.datetime, dt.datetime]]]
) -> dict[CodeRef, list[Interval]]:
    held: dict[CodeRef, list[Interval]] = {code: [(_EPOCH, _FOREVER)]}
    stack = [(code, _EPOCH, _FOREVER, 0)]
    while stack:
        node, lo, hi, depth = stack.pop()
        if depth >= MAX_DEPTH:
            continue
        for parent, packed, unpacked in rows_by_child.get(node, ()):
            a, b = max(lo, packed), min(hi, unpacked)
            if a < b:
                held.setdefault(parent, []).append((a, b))
                stack.append((parent, a, b, depth + 1))
    return held


def holding_units_from(
    history: Sequence[PackedInto], code: CodeRef
) -> dict[CodeRef, list[Interval]]:
    """Every unit that ever held ``code`` (and the code itself) with when it held it, from the
    code's packing history already read (no query)."""
    rows: dict[CodeRef, list[tuple[CodeRef, dt.datetime, dt.datetime]]] = defaultdict(list)
    for p in history:
        rows[p.child].append((p.parent, p.packed_at, p.unpacked_at or _FOREVER))
    return _intervals(code, rows)


def movements_for(
    session: Session,
    codes: Sequence[CodeRef],
    held: dict[CodeRef, dict[CodeRef, list[Interval]]] | None = None,
) -> dict[CodeRef, list[Movement]]:
    """Every movement of each code, oldest first (``held``: the codes' holding units, when the
    caller has them already)."""
    if held is None:
        held = _ancestor_intervals(session, codes)
    nodes = sorted({n for h in held.values() for n in h})
    s, u = Shipment.__table__.c, ShipmentUnit.__table__.c
    columns = (
        s.id,
        s.reference,
        s.kind,
        s.from_distributor_id,
        s.to_distributor_id,
        s.status,
        s.shipped_at,
        s.received_at,
    )
    by_node: dict[CodeRef, list[Movement]] = defaultdict(list)
    for batch_id, serials in by_batch(nodes).items():
        for i in range(0, len(serials), IN_CHUNK * 10):
            rows = session.execute(
                select(u.batch_id, u.serial, *columns)
                .join(Shipment.__table__, s.id == u.shipment_id)
                .where(
                    u.batch_id == batch_id,
                    serial_in(session, u.serial, serials[i : i + IN_CHUNK * 10]),
                )
            ).all()
            for row in rows:
                node = CodeRef(row[0], row[1])
                by_node[node].append(_movement(row[2:], node))
    r = ShipmentRange.__table__.c
    by_range: dict[CodeRef, list[Movement]] = defaultdict(list)
    for batch_id, group in groupby(sorted(codes), key=lambda k: k.batch_id):
        serials = [k.serial for k in group]
        rows = session.execute(
            select(r.first_serial, r.last_serial, *columns)
            .join(Shipment.__table__, s.id == r.shipment_id)
            .where(
                r.batch_id == batch_id, r.last_serial >= serials[0], r.first_serial <= serials[-1]
            )
        ).all()
        for row in rows:
            for serial in serials:
                if row[0] <= serial <= row[1]:
                    by_range[CodeRef(batch_id, serial)].append(_movement(row[2:], None))
    out: dict[CodeRef, list[Movement]] = {}
    for code in codes:
        found = list(by_range.get(code, ()))
        for node, intervals in held[code].items():
            for m in by_node.get(node, ()):
                if any(lo <= m.shipped_at < hi for lo, hi in intervals):
                    found.append(m if node != code else dataclasses.replace(m, via=None))
        unique = {
            m.shipment_id: m for m in sorted(found, key=lambda m: (m.shipped_at, m.shipment_id))
        }
        out[code] = sorted(unique.values(), key=lambda m: (m.shipped_at, m.shipment_id))
    return out


def _movement(row: Any, via: CodeRef | None) -> Movement:
    sid, reference, kind, sender, receiver, status, shipped_at, received_at = row
    return Movement(sid, reference, kind, sender, receiver, status, shipped_at, received_at, via)


_SHIPMENT_COLUMNS = (
    "s.id, s.reference, s.kind, s.from_distributor_id, s.to_distributor_id, s.status, "
    "s.shipped_at, s.received_at"
)


def movements_of(
    session: Session, code: CodeRef, held: dict[CodeRef, list[Interval]] | None = None
) -> list[Movement]:
    """:func:`movements_for` of one code; with its holding units known, in one statement (the
    scan path)."""
    if held is None:
        return movements_for(session, [code])[code]
    nodes = sorted(held)
    units = " OR ".join(f"(u.batch_id = :b{i} AND u.serial = :s{i})" for i in range(len(nodes)))
    params: dict[str, int] = {"cb": code.batch_id, "cs": code.serial}
    for i, node in enumerate(nodes):
        params[f"b{i}"], params[f"s{i}"] = node.batch_id, node.serial
    statement = text(
        f"SELECT {_SHIPMENT_COLUMNS}, u.batch_id AS vb, u.serial AS vs "
        "FROM trace_shipment_units u JOIN trace_shipments s ON s.id = u.shipment_id "
        f"WHERE {units} "
        f"UNION ALL SELECT {_SHIPMENT_COLUMNS}, NULL, NULL "
        "FROM trace_shipment_ranges r JOIN trace_shipments s ON s.id = r.shipment_id "
        "WHERE r.batch_id = :cb AND r.first_serial <= :cs AND r.last_serial >= :cs"
    ).columns(shipped_at=UTCDateTime(), received_at=UTCDateTime())
    found: dict[int, Movement] = {}
    for *fields, vb, vs in fetch_all(session, statement, params):
        via = CodeRef(vb, vs) if vb is not None else None
        move = _movement(fields, None if via in (None, code) else via)
        if (
            via is None
            or via == code
            or any(lo <= move.shipped_at < hi for lo, hi in held.get(via, ()))
        ):
            found[move.shipment_id] = move
    return sorted(found.values(), key=lambda m: (m.shipped_at, m.shipment_id))


def holder_of(movements: Sequence[Movement]) -> int | None:
    """Who holds a code after these movements: a distributor id, or None for the brand."""
    return movements[-1].to_distributor_id if movements else None


# --- shipping and receiving -----------------------------------------------------------------


def _check_reference(reference: object) -> str:
    if not isinstance(reference, str) or not 1 <= len(reference.strip()) <= 64:
        raise ValidationFailedError.field("reference", "the delivery note number, 1-64 characters")
    return reference.strip()


def ship(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    reference: str,
    to_distributor_id: int | None,
    from_distributor_id: int | None = None,
    kind: str = "shipment",
    units: Sequence[CodeRef] = (),
    ranges: Sequence[SerialRange] = (),
    operator: str,
    at: dt.datetime | None = None,
    note: str = "",
) -> Shipment:
    """Ship units and ranges from one party to another, all or nothing.

    Every code shipped must be active (deactivated codes never ship; never-activated codes do
    not ship when the brand requires activation), and held by the sender.
    """
    reference = _check_reference(reference)
    if kind not in ("shipment", "return"):
        raise ValidationFailedError.field("kind", "shipment or return")
    if not units and not ranges:
        raise ValidationFailedError.field("units", "ship at least one unit or range")
    if len(units) > MAX_UNITS or len(ranges) > MAX_RANGES:
        raise ValidationFailedError.field(
            "units", f"at most {MAX_UNITS} units and {MAX_RANGES} ranges"
        )
    if len(set(units)) != len(units):
        raise ValidationFailedError.field("units", "a unit is listed twice")
    if from_distributor_id is not None:
        get_distributor_or_raise(session, tenant_id=tenant_id, distributor_id=from_distributor_id)
    if to_distributor_id is not None:
        receiver = get_distributor_or_raise(
            session, tenant_id=tenant_id, distributor_id=to_distributor_id
        )
        if not receiver.active:
            raise ValidationFailedError.field("to_distributor_id", "the distributor is deactivated")
    if to_distributor_id == from_distributor_id:
        raise ValidationFailedError.field("to_distributor_id", "sender and receiver are the same")
    if kind == "return":
        if from_distributor_id is None:
            raise ValidationFailedError.field(
                "from_distributor_id", "a return comes from a distributor"
            )
        if to_distributor_id is not None and to_distributor_id not in ancestors_of(
            session, from_distributor_id
        ):
            raise ValidationFailedError.field(
                "to_distributor_id",
                "a return goes to the brand (null) or a distributor above the sender",
            )
    at = at or utcnow()
    require_activation = get_trace_config(runtime, tenant_id, session).require_activation
    inside = contents_of(session, tenant_id=tenant_id, parents=list(units)) if units else []
    for r in ranges:
        if r.count > 10_000_000:
            raise ValidationFailedError.field("ranges", "at most 10,000,000 serials per range")
    bad = inactive_codes(session, [*units, *inside], required=require_activation)
    bad_ranges = [r for r in ranges if _range_inactive(session, r, required=require_activation)]
    if bad or bad_ranges:
        first = bad[0] if bad else CodeRef(bad_ranges[0].batch_id, bad_ranges[0].first)
        raise NotActivatedError(
            f"{len(bad) + len(bad_ranges)} codes or ranges are not active "
            f"(first: batch {first.batch_id} #{first.serial}); nothing was shipped",
            errors={"units": "contains codes the line has not activated or has deactivated"},
        )
    _check_held(session, units=units, ranges=ranges, sender=from_distributor_id)
    code_count = len(units) + len(inside) + sum(r.count for r in ranges)
    shipment = Shipment(
        tenant_id=tenant_id,
        kind=kind,
        reference=reference,
        from_distributor_id=from_distributor_id,
        to_distributor_id=to_distributor_id,
        status="in_transit",
        unit_count=len(units),
        code_count=code_count,
        shipped_at=at,
        shipped_by=operator[:200],
        note=note[:500],
    )
    session.add(shipment)
    mark_in_use(session, runtime, tenant_id=tenant_id)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ShipmentConflictError(
            f"a shipment {reference!r} already exists", errors={"reference": "already used"}
        ) from exc
    if units:
        session.execute(
            insert(ShipmentUnit),
            [
                {"shipment_id": shipment.id, "batch_id": u.batch_id, "serial": u.serial}
                for u in units
            ],
        )
    if ranges:
        session.execute(
            insert(ShipmentRange),
            [
                {
                    "shipment_id": shipment.id,
                    "batch_id": r.batch_id,
                    "first_serial": r.first,
                    "last_serial": r.last,
                }
                for r in ranges
            ],
        )
    return shipment


def _range_inactive(session: Session, r: SerialRange, *, required: bool) -> bool:
    from traceability.models import ActivationSpan

    c = ActivationSpan
    spans = list(
        session.execute(
            select(c.first_serial, c.last_serial, c.active)
            .where(c.batch_id == r.batch_id, c.first_serial <= r.last, c.last_serial >= r.first)
            .order_by(c.first_serial)
        ).all()
    )
    left = (
        select(c.first_serial, c.last_serial, c.active)
        .where(c.batch_id == r.batch_id, c.first_serial < r.first)
        .order_by(c.first_serial.desc())
        .limit(1)
    )
    before = session.execute(left).first()
    if before is not None and before.last_serial >= r.first and before not in spans:
        spans.insert(0, before)
    if any(not s.active for s in spans):
        return True
    if not required:
        return False
    covered = r.first
    for s in spans:
        if s.first_serial > covered:
            return True
        covered = max(covered, s.last_serial + 1)
    return covered <= r.last


def _check_held(
    session: Session, *, units: Sequence[CodeRef], ranges: Sequence[SerialRange], sender: int | None
) -> None:
    probes = list(units) + [CodeRef(r.batch_id, r.first) for r in ranges]
    for code, moves in movements_for(session, probes).items():
        holder = holder_of(moves)
        if holder != sender:
            who = "the brand" if holder is None else f"distributor {holder}"
            raise NotHeldError(
                f"batch {code.batch_id} #{code.serial} is held by {who}, not by the sender",
                errors={"units": f"batch {code.batch_id} #{code.serial} is held by {who}"},
            )


def get_shipment_or_raise(session: Session, *, tenant_id: int, shipment_id: int) -> Shipment:
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.tenant_id != tenant_id:
        raise ShipmentNotFoundError(f"no shipment {shipment_id}")
    return shipment


def receive(
    session: Session,
    *,
    tenant_id: int,
    shipment_id: int,
    operator: str,
    location: Located | None = None,
    location_source: str = "gps",
    acting_distributor_id: int | None = None,
    at: dt.datetime | None = None,
) -> Shipment:
    """The receiver confirms a shipment; where it was scanned is checked against the
    receiver's authorised regions (a receipt outside them is diversion evidence)."""
    shipment = get_shipment_or_raise(session, tenant_id=tenant_id, shipment_id=shipment_id)
    if acting_distributor_id is not None and shipment.to_distributor_id != acting_distributor_id:
        raise ShipmentNotFoundError(f"no shipment {shipment_id}")
    # Guarded: two handhelds receiving at once both see in_transit; one UPDATE wins.
    from sqlalchemy import update

    at = at or utcnow()
    values: dict[str, object] = {
        "status": "received",
        "received_at": at,
        "received_by": operator[:200],
    }
    if location is not None:
        check = None
        if shipment.to_distributor_id is not None:
            _, regions = authorised_regions(session, shipment.to_distributor_id)
            check = (
                region_check([region_of_code(r) for r in regions], location) if regions else None
            )
        values.update(
            received_country=location.country,
            received_division=location.division,
            received_city=location.city,
            received_precision=location.precision,
            received_source=location_source,
            receipt_region_check=check,
        )
    done = session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id, Shipment.status == "in_transit")
        .values(**values)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        raise ShipmentConflictError(
            f"shipment {shipment.reference!r} was already received",
            errors={"shipment": "already received"},
        )
    session.refresh(shipment)
    return shipment


def list_shipments(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    distributor_id: int | None = None,
    status: str | None = None,
) -> Sequence[Shipment]:
    from sqlalchemy import or_

    stmt = select(Shipment).where(Shipment.tenant_id == tenant_id, Shipment.id > after_id)
    if distributor_id is not None:
        stmt = stmt.where(
            or_(
                Shipment.to_distributor_id == distributor_id,
                Shipment.from_distributor_id == distributor_id,
            )
        )
    if status is not None:
        stmt = stmt.where(Shipment.status == status)
    return session.scalars(stmt.order_by(Shipment.id).limit(limit)).all()


def shipment_contents(
    session: Session, shipment: Shipment
) -> tuple[list[CodeRef], list[SerialRange]]:
    units = [
        CodeRef(b, s)
        for b, s in session.execute(
            select(ShipmentUnit.batch_id, ShipmentUnit.serial).where(
                ShipmentUnit.shipment_id == shipment.id
            )
        )
    ]
    ranges = [
        SerialRange(b, f, last)
        for b, f, last in session.execute(
            select(
                ShipmentRange.batch_id, ShipmentRange.first_serial, ShipmentRange.last_serial
            ).where(ShipmentRange.shipment_id == shipment.id)
        )
    ]
    return units, ranges


def receipts_outside(
    session: Session, *, since: dt.datetime, until: dt.datetime
) -> Sequence[Shipment]:
    """Receipts scanned outside the receiver's authorised regions (logistics diversion)."""
    return session.scalars(
        select(Shipment).where(
            Shipment.receipt_region_check == "outside",
            Shipment.received_at >= since,
            Shipment.received_at <= until,
        )
    ).all()
