"""Members per day for the dashboards: who joined and what the ledger moved, kept up to date by a
task every minute.

``members_days`` holds, per brand-local day, new members and the points earned, spent, expired,
adjusted and reversed. :func:`refresh_member_rollups` reads members and ledger entries above their
watermarks (core/rollups.py: ids skipped by transactions still in flight are looked up again) and
adds them with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` in the transaction that
moves the watermarks, under their row locks: re-runs and concurrent runs count everything once.
The ledger is append-only, so a day's figures never need recounting.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from core import rollups
from core.db import dialect_insert, fetch_all, utcnow
from core.runtime import Runtime
from core.services import tenant_timezone
from members.models import MemberDay, PointsLot, RollupCursor

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


@dataclass(frozen=True)
class Refreshed:
    members: int
    entries: int
    seconds: float


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


def refresh_member_rollups(
    runtime: Runtime, *, batch_size: int | None = None, max_batches: int | None = None
) -> Refreshed:
    """Count every member and ledger entry not yet counted, a transaction per batch (smaller on
    SQLite, where a batch holds the one write lock)."""
    batch_size = batch_size or (SQLITE_BATCH_SIZE if runtime.db.is_sqlite else BATCH_SIZE)
    started = time.perf_counter()
    joined = entries = batches = 0
    while max_batches is None or batches < max_batches:
        with runtime.db.unit_of_work() as session:
            a, b = refresh_batch(session, limit=batch_size)
        joined, entries, batches = joined + a, entries + b, batches + 1
        if a < batch_size and b < batch_size:
            break
    return Refreshed(joined, entries, time.perf_counter() - started)


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
