"""The points ledger: earn, spend, adjust, reverse, expire, activate — each exactly once.

Every operation first inserts its entry under a business key unique per tenant
(``INSERT ... ON CONFLICT DO NOTHING RETURNING id``): a retried or concurrent request with the same
key finds the entry there and applies nothing (the database decides, not a read in Python). The
entry, its lot or its allocations, and the balance cache change in the caller's transaction, so
they commit together or not at all.

Debits lock the member's spendable lots (``FOR UPDATE``, soonest expiry first, then oldest) and
take from them in that order; two concurrent spends of one member queue on those locks and never
spend a point twice. A spend the active lots cannot cover is refused and changes nothing. A
reversal (clawback of a scan's points found fraudulent) takes the points back from the original
lot first, pending or not, then from the others; what they cannot cover becomes a deficit and the
balance goes negative — by policy, and visibly.

Pending → active: a lot earned by a scan waits ``pending_for`` (fraud checks run meanwhile) and
cannot be spent until :func:`activate_due` moves it; :func:`expire_due` debits what expired lots
still hold. Both work in batches, skip rows another worker holds, and are idempotent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from core.db import dialect_insert, driver_cursor, utcnow
from core.errors import ConflictError, ValidationFailedError
from core.runtime import Runtime
from members.errors import InsufficientPointsError, LedgerKeyConflictError
from members.models import Balance, PointsAllocation, PointsEntry, PointsLot

MAX_POINTS = 100_000_000


# --- expiry policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiry:
    """When earned points expire: ``N`` days after, the end of the month or year they were
    earned in (in the brand's timezone), or never."""

    kind: str  # days | end_of_month | end_of_year | never
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Expiry:
        if text in ("end_of_month", "end_of_year", "never"):
            return cls(text)
        match = re.fullmatch(r"([1-9][0-9]{0,4})d", text)
        if match is None:
            raise ValidationFailedError.field(
                "expiry", "'<N>d' (1-99999 days), 'end_of_month', 'end_of_year' or 'never'"
            )
        return cls("days", int(match.group(1)))

    def at(self, earned_at: dt.datetime, timezone: str) -> dt.datetime | None:
        """The first instant the points are no longer valid (UTC), or None."""
        if self.kind == "never":
            return None
        if self.kind == "days":
            return earned_at + dt.timedelta(days=self.days)
        local = earned_at.astimezone(ZoneInfo(timezone))
        if self.kind == "end_of_month":
            year, month = (
                (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
            )
        else:
            year, month = local.year + 1, 1
        return dt.datetime(year, month, 1, tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)


# --- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """The entry a business key names, and whether this call wrote it (False: it was there)."""

    entry_id: int
    applied: bool


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_POINTS:
        raise ValidationFailedError.field("points", f"a whole number from 1 to {MAX_POINTS}")


def _write_entry(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    kind: str,
    points: int,
    business_key: str,
    reason: str,
    actor: str,
    ref: dict[str, Any],
    now: dt.datetime,
    same_entry: bool = True,
) -> Applied:
    if not business_key or len(business_key) > 200:
        raise ValidationFailedError.field("business_key", "1-200 characters")
    values = {
        "tenant_id": tenant_id,
        "member_id": member_id,
        "kind": kind,
        "points": points,
        "business_key": business_key,
        "reason": reason[:500],
        "actor": actor[:200],
        "ref": ref,
        "created_at": now,
    }
    stmt = (
        dialect_insert(session)(PointsEntry)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
        .returning(PointsEntry.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return Applied(int(new_id), True)
    there = session.execute(
        select(PointsEntry.id, PointsEntry.member_id, PointsEntry.kind, PointsEntry.points).where(
            PointsEntry.tenant_id == tenant_id, PointsEntry.business_key == business_key
        )
    ).one()
    if same_entry and (there.member_id, there.kind, there.points) != (member_id, kind, points):
        raise LedgerKeyConflictError(
            f"business key {business_key!r} was used for another entry",
            errors={"business_key": "already used for a different entry"},
        )
    return Applied(int(there.id), False)


def _bump(
    session: Session, *, tenant_id: int, member_id: int, active: int, pending: int, now: dt.datetime
) -> None:
    stmt = dialect_insert(session)(Balance).values(
        member_id=member_id, tenant_id=tenant_id, active=active, pending=pending, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["member_id"],
        set_={
            "active": Balance.active + stmt.excluded.active,
            "pending": Balance.pending + stmt.excluded.pending,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt)


# --- credits ----------------------------------------------------------------------------------


def earn(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    business_key: str,
    expiry: Expiry,
    timezone: str = "Asia/Shanghai",
    pending_for: dt.timedelta = dt.timedelta(0),
    kind: str = "earn",
    reason: str = "",
    actor: str = "system",
    ref: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    once_per_key: bool = False,
) -> Applied:
    """Credit ``points`` as a new lot, once per business key. Reusing a key for a different
    credit is a conflict, unless ``once_per_key`` (the key names the event, whoever claims it:
    a code's scan earns once, and a second member finds it taken)."""
    _check_points(points)
    now = now or utcnow()
    pending = pending_for > dt.timedelta(0)
    if session.get_bind().dialect.name == "postgresql":
        new_id = _earn_in_one_statement(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            kind=kind,
            points=points,
            business_key=business_key,
            reason=reason,
            actor=actor,
            ref=ref or {},
            now=now,
            pending=pending,
            available_at=now + pending_for,
            expires_at=expiry.at(now, timezone),
        )
        if new_id is not None:
            return Applied(new_id, True)
    done = _write_entry(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        kind=kind,
        points=points,
        business_key=business_key,
        reason=reason,
        actor=actor,
        ref=ref or {},
        now=now,
        same_entry=not once_per_key,
    )
    if not done.applied:
        return done
    session.execute(
        insert(PointsLot).values(
            id=done.entry_id,
            tenant_id=tenant_id,
            member_id=member_id,
            points=points,
            remaining=points,
            status="pending" if pending else "active",
            available_at=now + pending_for,
            expires_at=expiry.at(now, timezone),
        )
    )
    _bump(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        active=0 if pending else points,
        pending=points if pending else 0,
        now=now,
    )
    return done


# The entry, its lot and the balance in one statement, prepared (a scan's credit is on the hot
# path: three statements through SQLAlchemy cost 2.4 ms, bench/bench_members.py). Nothing is
# written when the key exists; the caller then reads the entry that holds it.
_EARN = (
    "WITH e AS (INSERT INTO members_points_entries (tenant_id, member_id, kind, points,"
    " business_key, reason, actor, ref, created_at) VALUES (%(tenant)s, %(member)s, %(kind)s,"
    " %(points)s, %(key)s, %(reason)s, %(actor)s, %(ref)s, %(now)s)"
    " ON CONFLICT (tenant_id, business_key) DO NOTHING RETURNING id),"
    " l AS (INSERT INTO members_points_lots (id, tenant_id, member_id, points, remaining, status,"
    " available_at, expires_at) SELECT id, %(tenant)s, %(member)s, %(points)s, %(points)s,"
    " %(status)s, %(available)s, %(expires)s FROM e RETURNING id),"
    " b AS (INSERT INTO members_balances AS b (member_id, tenant_id, active, pending, updated_at)"
    " SELECT %(member)s, %(tenant)s, %(active)s, %(pending)s, %(now)s FROM e"
    " ON CONFLICT (member_id) DO UPDATE SET active = b.active + excluded.active,"
    " pending = b.pending + excluded.pending, updated_at = excluded.updated_at RETURNING 1)"
    " SELECT id FROM e, (SELECT count(*) FROM l) AS lots, (SELECT count(*) FROM b) AS bal"
)


def _earn_in_one_statement(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    kind: str,
    points: int,
    business_key: str,
    reason: str,
    actor: str,
    ref: dict[str, Any],
    now: dt.datetime,
    pending: bool,
    available_at: dt.datetime,
    expires_at: dt.datetime | None,
) -> int | None:
    from psycopg.types.json import Json

    if not business_key or len(business_key) > 200:
        raise ValidationFailedError.field("business_key", "1-200 characters")
    cursor = driver_cursor(session)
    cursor.execute(
        _EARN,
        {
            "tenant": tenant_id,
            "member": member_id,
            "kind": kind,
            "points": points,
            "key": business_key,
            "reason": reason[:500],
            "actor": actor[:200],
            "ref": Json(ref),
            "now": now,
            "status": "pending" if pending else "active",
            "available": available_at,
            "expires": expires_at,
            "active": 0 if pending else points,
            "pending": points if pending else 0,
        },
        prepare=True,
    )
    row = cursor.fetchone()
    return int(row[0]) if row is not None else None


# --- debits -----------------------------------------------------------------------------------


def _take(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    entry_id: int,
    amount: int,
    now: dt.datetime,
    first_lot: int | None = None,
    allow_deficit: bool = False,
) -> int:
    """Allocate ``amount`` to lots (``first_lot`` first, then active lots soonest-expiry first);
    returns the deficit left (0 unless ``allow_deficit``)."""
    lots = PointsLot
    locked: list[Any] = []
    if first_lot is not None:
        locked += session.execute(
            select(lots.id, lots.remaining, lots.status)
            .where(lots.id == first_lot)
            .with_for_update()
        ).all()
    locked += session.execute(
        select(lots.id, lots.remaining, lots.status)
        .where(
            lots.member_id == member_id,
            lots.status == "active",
            lots.remaining > 0,
            (lots.expires_at.is_(None)) | (lots.expires_at > now),
            lots.id != (first_lot or 0),
        )
        .order_by(lots.expires_at.asc().nulls_last(), lots.id)
        .with_for_update()
    ).all()
    left = amount
    rows: list[dict[str, Any]] = []
    active_taken = pending_taken = 0
    for lot_id, remaining, status in locked:
        if left == 0:
            break
        part = min(left, remaining)
        if part <= 0:
            continue
        session.execute(
            update(lots).where(lots.id == lot_id).values(remaining=lots.remaining - part)
        )
        rows.append({"entry_id": entry_id, "lot_id": lot_id, "points": part})
        if status == "pending":
            pending_taken += part
        else:
            active_taken += part
        left -= part
    if left and not allow_deficit:
        raise InsufficientPointsError(
            f"{amount} points asked, {amount - left} spendable",
            errors={"points": f"only {amount - left} points can be spent now"},
        )
    if left:
        rows.append({"entry_id": entry_id, "lot_id": None, "points": left})
    session.execute(insert(PointsAllocation), rows)
    _bump(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        active=-(active_taken + left),
        pending=-pending_taken,
        now=now,
    )
    return left


def spend(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    business_key: str,
    reason: str = "",
    actor: str = "system",
    ref: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Applied:
    """Debit ``points`` from active lots, soonest expiry first; refused (nothing written) when
    the member does not have them. Pending points cannot be spent."""
    _check_points(points)
    now = now or utcnow()
    done = _write_entry(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        kind="spend",
        points=-points,
        business_key=business_key,
        reason=reason,
        actor=actor,
        ref=ref or {},
        now=now,
    )
    if done.applied:
        _take(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            entry_id=done.entry_id,
            amount=points,
            now=now,
        )
    return done


def adjust(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    business_key: str,
    reason: str,
    actor: str,
    expiry: Expiry = Expiry("never"),
    timezone: str = "Asia/Shanghai",
    now: dt.datetime | None = None,
) -> Applied:
    """A manual correction with a reason: a credit (a lot) or a debit (may go negative)."""
    if not reason.strip():
        raise ValidationFailedError.field("reason", "say why the balance changes")
    if points > 0:
        return earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=points,
            business_key=business_key,
            expiry=expiry,
            timezone=timezone,
            kind="adjust",
            reason=reason,
            actor=actor,
            now=now,
        )
    _check_points(-points)
    now = now or utcnow()
    done = _write_entry(
        session,
        tenant_id=tenant_id,
        member_id=member_id,
        kind="adjust",
        points=points,
        business_key=business_key,
        reason=reason,
        actor=actor,
        ref={},
        now=now,
    )
    if done.applied:
        _take(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            entry_id=done.entry_id,
            amount=-points,
            now=now,
            allow_deficit=True,
        )
    return done


def reverse(
    session: Session,
    *,
    tenant_id: int,
    original_key: str,
    reason: str,
    actor: str = "system",
    now: dt.datetime | None = None,
) -> Applied:
    """Claw back a credit (a scan found fraudulent): its points come back out of its own lot
    first, then out of the member's other lots; what is already spent becomes a deficit."""
    original = session.execute(
        select(PointsEntry.id, PointsEntry.member_id, PointsEntry.points, PointsEntry.kind).where(
            PointsEntry.tenant_id == tenant_id, PointsEntry.business_key == original_key
        )
    ).one_or_none()
    if original is None or original.points <= 0:
        raise ConflictError(
            f"no credit {original_key!r} to reverse", errors={"original_key": "no such credit"}
        )
    now = now or utcnow()
    done = _write_entry(
        session,
        tenant_id=tenant_id,
        member_id=original.member_id,
        kind="reverse",
        points=-original.points,
        business_key=f"reverse:{original_key}"[:200],
        reason=reason,
        actor=actor,
        ref={"entry_id": original.id},
        now=now,
    )
    if done.applied:
        _take(
            session,
            tenant_id=tenant_id,
            member_id=original.member_id,
            entry_id=done.entry_id,
            amount=original.points,
            now=now,
            first_lot=original.id,
            allow_deficit=True,
        )
    return done


# --- scheduled work -----------------------------------------------------------------------------


def refund_spend(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    spend_key: str,
    key_prefix: str,
    reason: str,
    actor: str,
    ref: dict[str, Any],
    now: dt.datetime,
) -> int:
    """Give back what the spend ``spend_key`` took, lot by lot: one credit (``adjust``, key
    ``<key_prefix>:<lot>``) per lot it came from, each a new lot expiring when that lot expires.

    So a refund neither extends nor shortens any point's life: points that expired since the
    spend come back already expired (and are expired at once, as ``expire_due`` would). A plain
    ``adjust`` would make them a fresh lot that never expires. Returns the points given back.
    """
    entry = session.execute(
        select(PointsEntry.id).where(
            PointsEntry.tenant_id == tenant_id, PointsEntry.business_key == spend_key
        )
    ).scalar()
    if entry is None:
        return 0
    parts = session.execute(
        select(PointsAllocation.lot_id, PointsAllocation.points, PointsLot.expires_at)
        .join(PointsLot, PointsLot.id == PointsAllocation.lot_id)
        .where(PointsAllocation.entry_id == entry)
        .order_by(PointsAllocation.id)
    ).all()
    given = 0
    for lot_id, points, expires_at in parts:
        done = _write_entry(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            kind="adjust",
            points=points,
            business_key=f"{key_prefix}:{lot_id}"[:200],
            reason=reason,
            actor=actor,
            ref={**ref, "from_lot": lot_id},
            now=now,
        )
        if not done.applied:
            continue
        given += points
        expired = expires_at is not None and expires_at <= now
        session.execute(
            insert(PointsLot).values(
                id=done.entry_id,
                tenant_id=tenant_id,
                member_id=member_id,
                points=points,
                remaining=0 if expired else points,
                status="active",
                available_at=now,
                expires_at=expires_at,
            )
        )
        if expired:
            gone = _write_entry(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                kind="expire",
                points=-points,
                business_key=f"expire:{done.entry_id}",
                reason="expired",
                actor="system",
                ref={"lot_id": done.entry_id},
                now=now,
            )
            session.execute(
                insert(PointsAllocation).values(
                    entry_id=gone.entry_id, lot_id=done.entry_id, points=points
                )
            )
        else:
            _bump(
                session, tenant_id=tenant_id, member_id=member_id, active=points, pending=0, now=now
            )
    return given


def _skip_locked(stmt: Any, session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def activate_due(session: Session, *, now: dt.datetime | None = None, limit: int = 5_000) -> int:
    """Make pending lots whose window has passed spendable; returns how many moved."""
    now = now or utcnow()
    lots = PointsLot
    due = session.execute(
        _skip_locked(
            select(lots.id, lots.tenant_id, lots.member_id, lots.remaining)
            .where(lots.status == "pending", lots.available_at <= now)
            .order_by(lots.available_at)
            .limit(limit),
            session,
        )
    ).all()
    for lot_id, tenant_id, member_id, remaining in due:
        moved = session.execute(
            update(lots).where(lots.id == lot_id, lots.status == "pending").values(status="active")
        ).rowcount  # type: ignore[attr-defined]
        if moved and remaining:
            _bump(
                session,
                tenant_id=tenant_id,
                member_id=member_id,
                active=remaining,
                pending=-remaining,
                now=now,
            )
    return len(due)


# One batch of expiry in one statement on PostgreSQL: the due lots (locked, skipping those
# another worker holds), their entries (once per lot by business key), the lots emptied, the
# allocations, the balances. Statement by statement a million lots took 150 s.
_EXPIRE = (
    "WITH due AS (SELECT id, tenant_id, member_id, remaining, status FROM members_points_lots"
    " WHERE remaining > 0 AND expires_at <= %(now)s AND member_id %% %(shards)s = %(shard)s"
    " ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " e AS (INSERT INTO members_points_entries (tenant_id, member_id, kind, points, business_key,"
    " reason, actor, ref, created_at) SELECT tenant_id, member_id, 'expire', -remaining,"
    " 'expire:' || id, 'expired', 'system', json_build_object('lot_id', id), %(now)s FROM due"
    " ON CONFLICT (tenant_id, business_key) DO NOTHING RETURNING id, business_key),"
    " d AS (SELECT due.*, e.id AS entry_id FROM due"
    " JOIN e ON e.business_key = 'expire:' || due.id),"
    " u AS (UPDATE members_points_lots l SET remaining = 0 FROM d WHERE l.id = d.id RETURNING 1),"
    " a AS (INSERT INTO members_points_allocations (entry_id, lot_id, points)"
    " SELECT entry_id, id, remaining FROM d RETURNING 1),"
    " b AS (UPDATE members_balances b SET active = b.active - s.a, pending = b.pending - s.p,"
    " updated_at = %(now)s FROM (SELECT member_id,"
    " sum(CASE WHEN status = 'active' THEN remaining ELSE 0 END) AS a,"
    " sum(CASE WHEN status = 'pending' THEN remaining ELSE 0 END) AS p FROM d GROUP BY member_id) s"
    " WHERE b.member_id = s.member_id RETURNING 1)"
    " SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM u), (SELECT count(*) FROM a),"
    " (SELECT count(*) FROM b)"
)


def expire_due(
    session: Session,
    *,
    now: dt.datetime | None = None,
    limit: int = 5_000,
    shard: tuple[int, int] = (0, 1),
) -> int:
    """Debit what expired lots still hold, once per lot (key ``expire:<lot>``); returns how
    many lots were expired. Call again until it returns 0. ``shard`` (k, n) takes only the
    members with ``member_id % n == k``, so n workers never touch the same balance."""
    now = now or utcnow()
    k, n = shard
    if session.get_bind().dialect.name == "postgresql":
        cursor = driver_cursor(session)
        cursor.execute(_EXPIRE, {"now": now, "limit": limit, "shard": k, "shards": n}, prepare=True)
        row = cursor.fetchone()
        return int(row[0]) if row else 0
    lots = PointsLot
    due = session.execute(
        _skip_locked(
            select(lots.id, lots.tenant_id, lots.member_id, lots.remaining, lots.status)
            .where(lots.remaining > 0, lots.expires_at <= now, lots.member_id % n == k)
            .order_by(lots.expires_at)
            .limit(limit),
            session,
        )
    ).all()
    if not due:
        return 0
    entries = session.execute(
        dialect_insert(session)(PointsEntry)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "member_id": member_id,
                    "kind": "expire",
                    "points": -remaining,
                    "business_key": f"expire:{lot_id}",
                    "reason": "expired",
                    "actor": "system",
                    "ref": {"lot_id": lot_id},
                    "created_at": now,
                }
                for lot_id, tenant_id, member_id, remaining, _status in due
            ]
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "business_key"])
        .returning(PointsEntry.id, PointsEntry.business_key)
    ).all()
    by_key = {key: entry_id for entry_id, key in entries}
    allocations = []
    expired: list[int] = []
    per_member: dict[tuple[int, int], list[int]] = {}
    for lot_id, tenant_id, member_id, remaining, status in due:
        entry_id = by_key.get(f"expire:{lot_id}")
        if entry_id is None:
            continue
        expired.append(lot_id)
        allocations.append({"entry_id": entry_id, "lot_id": lot_id, "points": remaining})
        debit = per_member.setdefault((tenant_id, member_id), [0, 0])
        debit[0 if status == "active" else 1] += remaining
    if expired:
        # Set-based: one UPDATE of the lots, one INSERT of allocations, one UPDATE of the
        # balances per batch (a statement per lot made a million lots take a quarter hour).
        session.execute(update(lots).where(lots.id.in_(expired)).values(remaining=0))
        session.execute(insert(PointsAllocation), allocations)
        balances = Balance.__table__.c
        session.connection().execute(
            update(Balance.__table__)  # type: ignore[arg-type]
            .where(balances.member_id == bindparam("m"))
            .values(
                active=balances.active - bindparam("a"),
                pending=balances.pending - bindparam("p"),
                updated_at=bindparam("at"),
            ),
            [{"m": m, "a": a, "p": p, "at": now} for (_t, m), (a, p) in per_member.items()],
        )
    return len(due)


def expire_all(
    runtime: Runtime, *, now: dt.datetime | None = None, workers: int = 2, limit: int = 5_000
) -> int:
    """Expire everything due, ``workers`` shards in parallel (threads, a connection each), each
    batch its own transaction: stopping half way loses nothing, and running it again finishes
    the rest. Returns how many lots were expired."""
    from concurrent.futures import ThreadPoolExecutor

    now = now or utcnow()

    def run(k: int) -> int:
        total = 0
        while True:
            with runtime.db.unit_of_work() as session:
                done = expire_due(session, now=now, limit=limit, shard=(k, workers))
            if not done:
                return total
            total += done

    if workers == 1 or runtime.db.is_sqlite:
        return sum(run(k) for k in range(workers))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yima-expiry") as pool:
        return sum(pool.map(run, range(workers)))


# --- reading and checking ---------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    active: int
    pending: int


def balance_of(session: Session, member_id: int) -> Points:
    row = session.get(Balance, member_id)
    return Points(row.active, row.pending) if row is not None else Points(0, 0)


def open_points(session: Session, *, tenant_id: int) -> Points:
    """The points a brand's members hold, active and pending (the brand's liability). A member's
    deficit (a clawback of spent points) is not netted against other members' points."""
    active, pending = session.execute(
        select(
            func.coalesce(func.sum(case((Balance.active > 0, Balance.active), else_=0)), 0),
            func.coalesce(func.sum(Balance.pending), 0),
        ).where(Balance.tenant_id == tenant_id)
    ).one()
    return Points(int(active), int(pending))


@dataclass(frozen=True)
class Mismatch:
    member_id: int
    cached: Points
    from_ledger: Points


def check_balances(session: Session, *, tenant_id: int | None = None) -> list[Mismatch]:
    """Recompute every balance from entries and allocations alone; the members whose cache
    disagrees (there should be none)."""
    e, lot, a = PointsEntry, PointsLot, PointsAllocation
    taken = (
        select(a.lot_id, func.sum(a.points).label("taken"))
        .where(a.lot_id.is_not(None))
        .group_by(a.lot_id)
    ).subquery()
    held = (
        select(
            lot.member_id,
            lot.status,
            func.sum(e.points - func.coalesce(taken.c.taken, 0)).label("held"),
        )
        .join(e, e.id == lot.id)
        .outerjoin(taken, taken.c.lot_id == lot.id)
        .group_by(lot.member_id, lot.status)
    )
    deficit = (
        select(e.member_id, func.sum(a.points).label("deficit"))
        .join(a, a.entry_id == e.id)
        .where(a.lot_id.is_(None))
        .group_by(e.member_id)
    )
    if tenant_id is not None:
        held = held.where(lot.tenant_id == tenant_id)
        deficit = deficit.where(e.tenant_id == tenant_id)
    ledger: dict[int, list[int]] = {}
    for member_id, status, amount in session.execute(held):
        ledger.setdefault(member_id, [0, 0])[0 if status == "active" else 1] += int(amount)
    for member_id, amount in session.execute(deficit):
        ledger.setdefault(member_id, [0, 0])[0] -= int(amount)
    cached_rows = select(Balance.member_id, Balance.active, Balance.pending)
    if tenant_id is not None:
        cached_rows = cached_rows.where(Balance.tenant_id == tenant_id)
    cached = {m: Points(x, y) for m, x, y in session.execute(cached_rows)}
    out = []
    for member_id in sorted(set(cached) | set(ledger)):
        want = Points(*ledger.get(member_id, [0, 0]))
        have = cached.get(member_id, Points(0, 0))
        if want != have:
            out.append(Mismatch(member_id, have, want))
    return out


def entries_of(
    session: Session, *, member_id: int, after: int = 0, limit: int = 100
) -> Sequence[PointsEntry]:
    """The member's entries, newest first; ``after`` is the last id already seen (keyset)."""
    stmt = select(PointsEntry).where(PointsEntry.member_id == member_id)
    if after:
        stmt = stmt.where(PointsEntry.id < after)
    return session.scalars(stmt.order_by(PointsEntry.id.desc()).limit(limit)).all()
