"""Members per day for the dashboards: who joined and what the ledger moved, kept up to date by a
task every minute.

``members_days`` holds, per brand-local day, new members and the points earned, spent, expired,
adjusted and reversed. :func:`refresh_member_rollups` reads members and ledger entries above their
watermarks (core/rollups.py: ids skipped by transactions still in flight are looked up again) and
adds them with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` in the transaction that
moves the watermarks, under their row locks: re-runs and concurrent runs count everything once.
The ledger is append-only, so a day's figures never need recounting.

``members_tier_counts`` holds each brand's live members per tier, so the members page never
counts the members table. Two more watermarks feed it: ``member_tiers`` over members (a new
member adds one to the tier it joined with: the ``from`` of its first tier move if it has moved
already, else its tier; one found already erased also takes one from its tier) and
``tier_changes`` over ``members_tier_changes``, the append-only history every move writes with
it (one from ``from``, one to ``to``). An erasure takes its member out in its own transaction
(:func:`forget_member_tier`, under the ``member_tiers`` lock, only if the member was counted).
So a brand's counts equal a recount once the task has run.

``members_points_held`` holds each brand's liability (the balances' positive active points and
pending points) and the points expiring within 30 days: balances and lots are caches that
change with every spend and activation, and "within 30 days" moves with the clock, so the task
recounts them (one grouped statement each, for every brand) after counting the rest.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, case, func, literal, select, text, true
from sqlalchemy.orm import Session

from core import rollups
from core.db import dialect_insert, fetch_all, utcnow
from core.runtime import Runtime
from core.services import tenant_timezone
from members.models import (
    Balance,
    Member,
    MemberDay,
    PointsHeld,
    PointsLot,
    RollupCursor,
    TierCount,
)

BATCH_SIZE = 20_000
SQLITE_BATCH_SIZE = 5_000
_FIGURES = (
    "new_members",
    "points_earned",
    "points_spent",
    "points_expired",
    "points_adjusted",
    "points_reversed",
)
_BY_KIND = {
    "earn": "points_earned",
    "spend": "points_spent",
    "expire": "points_expired",
    "adjust": "points_adjusted",
    "reverse": "points_reversed",
}
_EPOCH = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM created_at) AS BIGINT)",
    "sqlite": "CAST(strftime('%s', created_at) AS INTEGER)",
}
_SOURCES = {
    "members": "SELECT id, {epoch}, tenant_id, 'join', 1 FROM members_members",
    "entries": "SELECT id, {epoch}, tenant_id, kind, points FROM members_points_entries",
}


EXPIRING_WITHIN_DAYS = 30
# A member's tier when it joined: the ``from`` of its first move (0: none), else its tier now.
_MEMBER_TIERS = (
    "SELECT m.id, m.tenant_id, m.status, m.tier_id,"
    " (SELECT COALESCE(c.from_tier_id, 0) FROM members_tier_changes c"
    "  WHERE c.member_id = m.id ORDER BY c.id LIMIT 1)"
    " FROM members_members m"
)
_TIER_CHANGES = "SELECT id, tenant_id, from_tier_id, to_tier_id FROM members_tier_changes"


@dataclass(frozen=True)
class Refreshed:
    members: int
    entries: int
    seconds: float
    tier_members: int = 0
    tier_changes: int = 0


def _read(
    session: Session, name: str, cursor: rollups.Cursor, limit: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    base = _SOURCES[name].format(epoch=_EPOCH[session.get_bind().dialect.name])
    rows = fetch_all(
        session,
        text(f"{base} WHERE id > :after ORDER BY id LIMIT :n"),
        {"after": cursor.last_id, "n": limit},
    )
    late: list[tuple[Any, ...]] = []
    if cursor.gaps:
        where = " OR ".join(f"(id BETWEEN {int(a)} AND {int(b)})" for a, b, _s in cursor.gaps)
        late = fetch_all(session, text(f"{base} WHERE {where}"), {})
    return rows, late


def refresh_batch(
    session: Session, *, limit: int = BATCH_SIZE, now: dt.datetime | None = None
) -> tuple[int, int]:
    """Count up to ``limit`` new members and ``limit`` new ledger entries into the daily rollup
    and move both watermarks, in the session's transaction; returns how many of each were read."""
    now = now or utcnow()
    table: Table = RollupCursor.__table__  # type: ignore[assignment]
    zones: dict[int, ZoneInfo] = {}
    days: dict[tuple[int, int], dt.date] = {}
    figures: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(_FIGURES, 0)
    )
    read = []
    for name in ("members", "entries"):
        cursor = rollups.claim_cursor(session, table, name, now=now)
        rows, late = _read(session, name, cursor, limit)
        for _id, epoch, tenant_id, kind, points in (*rows, *late):
            quarter = epoch - epoch % 900  # offsets are multiples of a quarter hour
            day = days.get((tenant_id, quarter))
            if day is None:
                zone = zones.get(tenant_id)
                if zone is None:
                    zone = zones[tenant_id] = ZoneInfo(tenant_timezone(session, tenant_id))
                day = days[(tenant_id, quarter)] = dt.datetime.fromtimestamp(quarter, zone).date()
            row = figures[(tenant_id, day)]
            if kind == "join":
                row["new_members"] += 1
            elif kind in ("spend", "expire"):
                row[_BY_KIND[kind]] -= int(points)  # debits are negative in the ledger
            else:
                row[_BY_KIND[kind]] += int(points)
        rollups.advance(
            cursor, new_ids=[r[0] for r in rows], found_in_gaps=[r[0] for r in late], now=now
        )
        rollups.save_cursor(session, table, cursor, now=now)
        read.append(len(rows))
    if figures:
        t = MemberDay.__table__
        insert = dialect_insert(session)(t)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["tenant_id", "day"],
                set_={f: t.c[f] + insert.excluded[f] for f in _FIGURES},
            ),
            [{"tenant_id": k[0], "day": k[1], **v} for k, v in figures.items()],
        )
    return read[0], read[1]


def _read_since(
    session: Session, base: str, id_column: str, cursor: rollups.Cursor, limit: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows = fetch_all(
        session,
        text(f"{base} WHERE {id_column} > :after ORDER BY {id_column} LIMIT :n"),
        {"after": cursor.last_id, "n": limit},
    )
    late: list[tuple[Any, ...]] = []
    if cursor.gaps:
        where = " OR ".join(
            f"({id_column} BETWEEN {int(a)} AND {int(b)})" for a, b, _s in cursor.gaps
        )
        late = fetch_all(session, text(f"{base} WHERE {where}"), {})
    return rows, late


def _add_to_tiers(session: Session, deltas: dict[tuple[int, int], int]) -> None:
    changed = [
        {"tenant_id": t, "tier_key": k, "members": n} for (t, k), n in sorted(deltas.items()) if n
    ]
    if not changed:
        return
    table = TierCount.__table__
    insert = dialect_insert(session)(table)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "tier_key"],
            set_={"members": table.c.members + insert.excluded.members},
        ),
        changed,
    )


def refresh_tier_batch(
    session: Session, *, limit: int = BATCH_SIZE, now: dt.datetime | None = None
) -> tuple[int, int]:
    """Count up to ``limit`` new members and ``limit`` new tier moves into the live members per
    tier and move both watermarks, in the session's transaction; returns how many were read."""
    now = now or utcnow()
    table: Table = RollupCursor.__table__  # type: ignore[assignment]
    deltas: dict[tuple[int, int], int] = defaultdict(int)
    cursor = rollups.claim_cursor(session, table, "member_tiers", now=now)
    rows, late = _read_since(session, _MEMBER_TIERS, "m.id", cursor, limit)
    for _id, tenant_id, status, tier_id, joined in (*rows, *late):
        deltas[(tenant_id, joined if joined is not None else tier_id or 0)] += 1
        if status == "erased":  # erased before it was counted: in and out at once
            deltas[(tenant_id, tier_id or 0)] -= 1
    rollups.advance(
        cursor, new_ids=[r[0] for r in rows], found_in_gaps=[r[0] for r in late], now=now
    )
    rollups.save_cursor(session, table, cursor, now=now)
    moves = rollups.claim_cursor(session, table, "tier_changes", now=now)
    changes, late_changes = _read_since(session, _TIER_CHANGES, "id", moves, limit)
    for _id, tenant_id, from_tier, to_tier in (*changes, *late_changes):
        deltas[(tenant_id, from_tier or 0)] -= 1
        deltas[(tenant_id, to_tier or 0)] += 1
    rollups.advance(
        moves,
        new_ids=[r[0] for r in changes],
        found_in_gaps=[r[0] for r in late_changes],
        now=now,
    )
    rollups.save_cursor(session, table, moves, now=now)
    _add_to_tiers(session, deltas)
    return len(rows), len(changes)


def forget_member_tier(session: Session, *, tenant_id: int, member_id: int) -> None:
    """Take an erased member out of its tier's count, if the rollup has counted it (else the
    rollup, finding it erased, never counts it): in the erasure's transaction, under the
    ``member_tiers`` watermark's lock, so a refresh cannot count it in between."""
    table: Table = RollupCursor.__table__  # type: ignore[assignment]
    cursor = rollups.claim_cursor(session, table, "member_tiers", now=utcnow())
    in_gap = any(a <= member_id <= b for a, b, _seen in cursor.gaps)
    if member_id > cursor.last_id or in_gap:
        return
    tier_id = session.scalar(select(Member.tier_id).where(Member.id == member_id))
    _add_to_tiers(session, {(tenant_id, tier_id or 0): -1})


def count_points_held(
    session: Session, *, now: dt.datetime | None = None, within_days: int = EXPIRING_WITHIN_DAYS
) -> int:
    """Recount every brand's liability and points expiring within ``within_days`` into
    ``members_points_held``; returns the brands written."""
    now = now or utcnow()
    liability = {
        t: (int(a), int(p))
        for t, a, p in session.execute(
            select(
                Balance.tenant_id,
                func.coalesce(func.sum(case((Balance.active > 0, Balance.active), else_=0)), 0),
                func.coalesce(func.sum(Balance.pending), 0),
            ).group_by(Balance.tenant_id)
        )
    }
    lot = PointsLot
    expiring = {
        t: (int(p), int(n))
        for t, p, n in session.execute(
            select(lot.tenant_id, func.sum(lot.remaining), func.count(func.distinct(lot.member_id)))
            .where(
                lot.remaining > 0,
                lot.expires_at >= now,
                lot.expires_at < now + dt.timedelta(days=within_days),
            )
            .group_by(lot.tenant_id)
        )
    }
    known = set(session.scalars(select(PointsHeld.tenant_id)))
    rows = [
        {
            "tenant_id": t,
            "active": liability.get(t, (0, 0))[0],
            "pending": liability.get(t, (0, 0))[1],
            "expiring_points": expiring.get(t, (0, 0))[0],
            "expiring_members": expiring.get(t, (0, 0))[1],
            "within_days": within_days,
            "counted_at": now,
        }
        for t in sorted(known | set(liability) | set(expiring))
    ]
    if rows:
        table = PointsHeld.__table__
        insert = dialect_insert(session)(table)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["tenant_id"],
                set_={c: insert.excluded[c] for c in rows[0] if c != "tenant_id"},
            ),
            rows,
        )
    return len(rows)


def refresh_member_rollups(
    runtime: Runtime, *, batch_size: int | None = None, max_batches: int | None = None
) -> Refreshed:
    """Count every member, ledger entry and tier move not yet counted, a transaction per batch
    (smaller on SQLite, where a batch holds the one write lock); then recount points held."""
    batch_size = batch_size or (SQLITE_BATCH_SIZE if runtime.db.is_sqlite else BATCH_SIZE)
    started = time.perf_counter()
    joined = entries = tiered = moved = batches = 0
    while max_batches is None or batches < max_batches:
        with runtime.db.unit_of_work() as session:
            a, b = refresh_batch(session, limit=batch_size)
            c, d = refresh_tier_batch(session, limit=batch_size)
        joined, entries, batches = joined + a, entries + b, batches + 1
        tiered, moved = tiered + c, moved + d
        if max(a, b, c, d) < batch_size:
            break
    with runtime.db.unit_of_work() as session:
        count_points_held(session)
    from members.rfm import summarise_scored_brands  # (rfm builds on this module)

    with runtime.db.unit_of_work() as session:
        summarise_scored_brands(session)
    return Refreshed(joined, entries, time.perf_counter() - started, tiered, moved)


def member_days(
    session: Session, *, tenant_id: int, first_day: dt.date, last_day: dt.date
) -> dict[str, Any]:
    """Every local day of the period (zeros included) with new members and points moved, and the
    period's totals."""
    d = MemberDay
    found = {
        row.day: row
        for row in session.scalars(
            select(d).where(d.tenant_id == tenant_id, d.day >= first_day, d.day <= last_day)
        )
    }
    points = []
    totals = dict.fromkeys(_FIGURES, 0)
    day = first_day
    while day <= last_day:
        row = found.get(day)
        values = {f: int(getattr(row, f)) if row is not None else 0 for f in _FIGURES}
        for f, n in values.items():
            totals[f] += n
        points.append({"day": day.isoformat(), **values})
        day += dt.timedelta(days=1)
    return {"days": points, "totals": totals}


def expiring_points(
    session: Session, *, tenant_id: int, now: dt.datetime | None = None, within_days: int = 30
) -> dict[str, int]:
    """Points still held in lots that expire within ``within_days`` from now, and the members
    holding them (what the brand's liability sheds, or members should be reminded of)."""
    now = now or utcnow()
    lot = PointsLot
    points, holders = session.execute(
        select(
            func.coalesce(func.sum(lot.remaining), 0), func.count(func.distinct(lot.member_id))
        ).where(
            lot.remaining > 0,
            lot.expires_at >= now,
            lot.expires_at < now + dt.timedelta(days=within_days),
            lot.tenant_id == tenant_id,
        )
    ).one()
    return {"points": int(points), "members": int(holders), "within_days": within_days}


def tier_counts(session: Session, *, tenant_id: int) -> dict[int | None, int]:
    """Live members per tier id (None: no tier): the rollup plus what its watermarks have not
    reached yet (members and moves above them or in their gaps: about a minute's worth, found
    by index), so the figure is exact at once and costs O(that minute)."""
    c = RollupCursor
    joins = select(c.last_id, c.gaps).where(c.name == "member_tiers").subquery()
    moves = select(c.last_id, c.gaps).where(c.name == "tier_changes").subquery()
    one = select(literal(1).label("one")).subquery()
    # One statement: the counts and the watermarks they stand for from one snapshot.
    rows = session.execute(
        select(
            joins.c.last_id, joins.c.gaps, moves.c.last_id, moves.c.gaps,
            TierCount.tier_key, TierCount.members,
        ).select_from(
            one.outerjoin(joins, true())
            .outerjoin(moves, true())
            .outerjoin(TierCount, TierCount.tenant_id == tenant_id)
        )
    ).all()  # fmt: skip
    counts: dict[int, int] = defaultdict(int)
    for *_, key, n in rows:
        if key is not None:
            counts[key] += int(n)
    first = rows[0]
    joined = rollups.Cursor("member_tiers", int(first[0] or 0), first[1] or [])
    moved = rollups.Cursor("tier_changes", int(first[2] or 0), first[3] or [])
    tenant = {"tenant": tenant_id}
    for _id, _t, status, tier_id, was in _tail(
        session, _MEMBER_TIERS + " WHERE m.tenant_id = :tenant AND", "m.id", joined, tenant
    ):
        counts[was if was is not None else tier_id or 0] += 1
        if status == "erased":
            counts[tier_id or 0] -= 1
    for _id, _t, from_tier, to_tier in _tail(
        session, _TIER_CHANGES + " WHERE tenant_id = :tenant AND", "id", moved, tenant
    ):
        counts[from_tier or 0] -= 1
        counts[to_tier or 0] += 1
    return {(key or None): n for key, n in counts.items()}


def _tail(
    session: Session, base: str, id_column: str, cursor: rollups.Cursor, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    ranges = [f"{id_column} > {int(cursor.last_id)}"]
    ranges += [f"({id_column} BETWEEN {int(a)} AND {int(b)})" for a, b, _s in cursor.gaps]
    return fetch_all(session, text(f"{base} ({' OR '.join(ranges)})"), params)


def points_held(session: Session, *, tenant_id: int) -> dict[str, Any]:
    """The brand's liability and points expiring soon as last counted (zeros: never)."""
    row = session.get(PointsHeld, tenant_id)
    if row is None:
        return {
            "active": 0,
            "pending": 0,
            "expiring": {"points": 0, "members": 0, "within_days": EXPIRING_WITHIN_DAYS},
            "counted_at": None,
        }
    return {
        "active": int(row.active),
        "pending": int(row.pending),
        "expiring": {
            "points": int(row.expiring_points),
            "members": int(row.expiring_members),
            "within_days": int(row.within_days),
        },
        "counted_at": row.counted_at,
    }
