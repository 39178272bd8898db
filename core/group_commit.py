"""Group commit: the units of work that threads of one process have ready at the same moment share
one transaction and one commit.

A scan's unit of work spends about as much CPU on its connection check-out, ``BEGIN`` and
``COMMIT`` as on its statements (bench/bench_draws.py). On a threaded web worker (gunicorn
``--threads``) several scans are often ready together; the first to arrive *leads*: it runs every
unit waiting at that moment in one transaction, one after the other, commits once and hands each
thread its result. Units arriving meanwhile wait for the next batch, led by the first of them.
Nobody waits for a batch to fill: a lone unit runs at once in a transaction of its own, exactly
as ``Database.unit_of_work`` would, so a single-threaded worker pays nothing for it.

What a caller can rely on:

- ``run(work)`` returns ``work(session)``'s result only after the transaction holding its writes
  has committed: an answered scan is durable (DESIGN §5).
- Each unit commits or fails as its own. When a unit raises, the batch's transaction is rolled
  back; the unit then runs again alone, in a transaction of its own, and that run gives its
  answer (a deadlock between two batches, each holding rows the other's next unit wants, goes
  away; a refusal is refused again); the batch's other units run again together, without it.
  When the commit fails, every unit runs again alone. A unit run alone that PostgreSQL picks to
  break a deadlock between batches is tried again (up to three runs). Only one run of a unit is
  ever committed.

Optimistic, not a savepoint per unit: savepoints cost 0.18 ms of CPU a unit, a quarter of a
draw's whole unit (PostgreSQL assigns each a subtransaction id; bench/bench_draws.py, measured
alternately on the same tables: 2,400 draws/s with them, 3,200/s without), while a unit fails
only on a database fault or a bug. The price is the rerun: a unit may run more than once.

What a unit must respect: ``work(session)`` writes through ``session``, never commits or closes
it, and returns values (returning, not raising, an answer that wrote nothing: a refused scan).
Side effects outside the database must be safe to repeat: the reward-fraud logs record a scan
under its code's key, so a rerun counts once.

This departs from "one unit of work per request" (STYLE.md) on purpose: requests still own their
units; only the transaction around them is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from core.db import Database

T = TypeVar("T")

MAX_BATCH = 32  # units in one transaction: its row locks are held until the batch commits
# A unit run alone may still be the one PostgreSQL picks to break a deadlock between batches:
# while it waits first in line for a row one batch holds, a batch queued behind it for that row
# closes a cycle through it. It is tried again, as a client would.
ALONE_ATTEMPTS = 3
_TRANSIENT = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


def _transient(exc: BaseException) -> bool:
    """A failure that trying again can cure (SQLSTATE class 40), raised by the driver or
    wrapped by SQLAlchemy."""
    return getattr(getattr(exc, "orig", exc), "sqlstate", None) in _TRANSIENT


class _Unit(Generic[T]):
    __slots__ = ("done", "error", "leads", "ready", "value", "work")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        self.ready = threading.Event()
        self.leads = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        if not self.done:
            raise RuntimeError("the unit of work was not run: its batch's leader stopped")
        value: T = self.value
        return value


class GroupCommit:
    """Runs units of work of one process, batching those that are ready together (module
    docstring). One per :class:`core.db.Database`; safe to call from any thread."""

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._database = database
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Unit[Any]] = []
        self._busy = False
        self.batches = 0  # transactions run, alone or shared (for benchmarks and tests)
        self.units = 0  # units committed through them

    @property
    def waiting(self) -> int:
        """Units waiting for the batch being run now."""
        with self._lock:
            return len(self._waiting)

    def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in a transaction (perhaps shared), committed before it returns."""
        unit: _Unit[T] = _Unit(work)
        with self._lock:
            if self._busy:
                self._waiting.append(unit)
            else:
                self._busy = unit.leads = True
        if not unit.leads:
            unit.ready.wait()
            if not unit.leads:  # woken with its result
                return unit.result()
        with self._lock:
            batch: list[_Unit[Any]] = [unit, *self._waiting[: self._max_batch - 1]]
            del self._waiting[: len(batch) - 1]
        try:
            self._run_batch(batch)
        finally:
            with self._lock:
                if self._waiting:  # the first unit that arrived meanwhile leads the next batch
                    following = self._waiting.pop(0)
                    following.leads = True
                    following.ready.set()
                else:
                    self._busy = False
            for other in batch[1:]:
                other.ready.set()
        return unit.result()

    # --- running a batch --------------------------------------------------------------------

    def _alone(self, unit: _Unit[Any]) -> None:
        for attempt in range(1, ALONE_ATTEMPTS + 1):
            try:
                with self._database.unit_of_work() as session:
                    value = unit.work(session)
            except Exception as exc:
                if attempt < ALONE_ATTEMPTS and _transient(exc):
                    continue
                unit.error = exc
                return
            unit.value, unit.error, unit.done = value, None, True
            self._count(1)
            return

    def _count(self, units: int) -> None:
        with self._lock:
            self.batches += 1
            self.units += units

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        failed: _Unit[Any] | None = None
        try:
            with self._database.unit_of_work() as session:
                for unit in batch:
                    failed = unit
                    unit.value = unit.work(session)
                    session.flush()  # a unit's own writes fail on its own turn, not at commit
                failed = None
        except Exception:
            if failed is None:  # the commit: every unit again, alone
                for unit in batch:
                    self._alone(unit)
                return
            self._alone(failed)  # its own answer, in its own transaction
            self._run_batch([u for u in batch if u is not failed])
            return
        for unit in batch:
            unit.done = True
        self._count(len(batch))
