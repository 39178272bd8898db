"""Incremental rollups: a watermark over an append-only table's ids that misses nothing.

A rollup task reads the rows whose id is above its watermark, adds them to its counters and moves
the watermark, all in one transaction that holds the watermark row's lock: two refreshes running
at once take turns, and a refresh that dies moves nothing. Ids are handed out when a row is
inserted, not when its transaction commits, so a row may become visible after a higher id was
already counted (a slow transaction, a bulk COPY of the invalid-scan spool). The ids skipped over
are kept as *gaps* beside the watermark and looked up again on every run until they appear (and
are counted then) or have stayed missing for :data:`GAP_GRACE` (a rolled-back insert leaves a
hole for ever; no scan's transaction stays open that long).

Each domain keeps its own cursor table with the columns ``name``, ``last_id``, ``gaps`` (JSON
list of ``[first, last, seen_epoch]`` ranges) and ``updated_at``; the functions here take it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, or_, select, update
from sqlalchemy.orm import Session

from core.db import insert_ignore
from core.runtime import Runtime

GAP_GRACE = dt.timedelta(minutes=10)
MAX_GAP_RANGES = 10_000  # beyond this the oldest are forgotten (a runaway of rollbacks)


@dataclass
class Cursor:
    """A claimed watermark: rows with ids above ``last_id`` or inside ``gaps`` are not counted."""

    name: str
    last_id: int
    gaps: list[list[int]] = field(default_factory=list)

    def pending(self, id_column: Any) -> ColumnElement[bool]:
        """The rows of gaps (to look up again)."""
        if not self.gaps:
            return false()
        return or_(*(and_(id_column >= a, id_column <= b) for a, b, _seen in self.gaps))


def claim_cursor(
    session: Session, table: Table, name: str, *, now: dt.datetime, shared: bool = False
) -> Cursor:
    """The watermark ``name``, locked until the transaction ends (created at 0 the first time).
    ``shared``: in share mode, for a writer that must not run while a refresh moves it (other
    share holders go on; a refresh waits for them all)."""
    insert_ignore(session, table, {"name": name, "last_id": 0, "gaps": [], "updated_at": now})
    stmt = select(table.c.last_id, table.c.gaps).where(table.c.name == name)
    if session.get_bind().dialect.name == "postgresql":
        # SQLite's writers are serialised by BEGIN IMMEDIATE already.
        stmt = stmt.with_for_update(read=shared)
    last_id, gaps = session.execute(stmt).one()
    return Cursor(name, int(last_id), [list(map(int, g)) for g in gaps or ()])


def advance(
    cursor: Cursor, *, new_ids: Iterable[int], found_in_gaps: Iterable[int], now: dt.datetime
) -> None:
    """Move ``cursor`` past ``new_ids`` (ascending, all above ``last_id``), recording the ids
    it skipped as gaps and dropping the gap ids that turned up or outlived the grace."""
    seen_at = int(now.timestamp())
    expire_before = int((now - GAP_GRACE).timestamp())
    found = sorted(set(found_in_gaps))
    gaps: list[list[int]] = []
    for first, last, seen in cursor.gaps:
        if seen < expire_before:
            continue
        start = first
        for i in found:
            if i < start or i > last:
                continue
            if i > start:
                gaps.append([start, i - 1, seen])
            start = i + 1
        if start <= last:
            gaps.append([start, last, seen])
    expected = cursor.last_id + 1
    for i in new_ids:
        if i > expected:
            gaps.append([expected, i - 1, seen_at])
        expected = max(expected, i + 1)
    cursor.last_id = expected - 1
    cursor.gaps = sorted(gaps)[-MAX_GAP_RANGES:]


def save_cursor(session: Session, table: Table, cursor: Cursor, *, now: dt.datetime) -> None:
    session.execute(
        update(table)
        .where(table.c.name == cursor.name)
        .values(last_id=cursor.last_id, gaps=cursor.gaps, updated_at=now)
    )


def cursor_lag(session: Session, table: Table, name: str) -> tuple[int, int, dt.datetime | None]:
    """(last id counted, open gap ranges, when it last moved) of watermark ``name``."""
    row = session.execute(
        select(table.c.last_id, table.c.gaps, table.c.updated_at).where(table.c.name == name)
    ).first()
    if row is None:
        return 0, 0, None
    return int(row[0]), len(row[1] or ()), row[2]


def refresh_in_batches(
    runtime: Runtime,
    refresh_batch: Callable[[Session, int], int],
    *,
    batch_size: int,
    max_batches: int | None = None,
) -> tuple[int, int, float]:
    """Run ``refresh_batch(session, limit)`` (rows read) one transaction at a time until a batch
    comes back short (caught up) or ``max_batches`` ran: (rows read, batches, seconds)."""
    started = time.perf_counter()
    read = batches = 0
    while max_batches is None or batches < max_batches:
        with runtime.db.unit_of_work() as session:
            got = refresh_batch(session, batch_size)
        read += got
        batches += 1
        if got < batch_size:
            break
    return read, batches, time.perf_counter() - started
