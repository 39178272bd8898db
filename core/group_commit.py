"""Group commit: the units of work that threads of one process have ready at the same moment share
one transaction and one commit.

A scan's unit of work spends about as much CPU on its connection check-out, ``BEGIN`` and
``COMMIT`` as on its statements (bench/bench_draws.py). On a threaded web worker (gunicorn
``--threads``) several scans are often ready together; the first to arrive *leads*: it runs every
unit waiting at that moment in one transaction, one after the other, each under a savepoint of its
own, commits once and hands each thread its result. Units arriving meanwhile wait for the next
batch, led by the first of them. Nobody waits for a batch to fill: a lone unit runs at once in a
transaction of its own, exactly as ``Database.unit_of_work`` would, so a single-threaded worker
pays nothing for it.

What a caller can rely on:

- ``run(work)`` returns ``work(session)``'s result only after the transaction holding its writes
  has committed: an answered scan is durable (DESIGN §5).
- A unit that raises is rolled back to its savepoint, its after-commit callbacks are dropped and
  its exception is raised in its own thread; the batch's other units go on and commit.
- A unit that failed *in the database* inside a batch (a deadlock between two batches, each holding
  rows the other's next unit wants) is run again after its batch, alone, in its own transaction.
- When the batch's transaction is lost as a whole (a failed commit, or an ORM flush error, which
  rolls the whole transaction back), each of its units that had not failed on its own is run again
  alone. Only the last run of a unit is ever committed.

What a unit must respect: ``work(session)`` writes through ``session``, never commits or closes
it, and returns values (ORM objects it returns are detached: other units' savepoints may be rolled
back after it ran). It may be run more than once (above), so side effects outside the database
should be ones that can repeat, such as velocity counters, which may then count a scan twice.

This departs from "one unit of work per request" (STYLE.md) on purpose: requests still own their
units; only the transaction around them is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from core.db import Database

T = TypeVar("T")

_SAVEPOINT = "yima_unit"
_AFTER_COMMIT_KEY = "yima.after_commit"  # core.db's list of after-commit callbacks
MAX_BATCH = 32  # a batch's savepoints stay within PostgreSQL's cache of 64 subtransactions


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


class _BatchLost(Exception):
    """The batch's transaction cannot go on: every unit still pending runs again alone."""


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
        try:
            with self._database.unit_of_work() as session:
                value = unit.work(session)
        except Exception as exc:
            unit.error = exc
        else:
            unit.value, unit.error, unit.done = value, None, True
            self._count(1)

    def _count(self, units: int) -> None:
        with self._lock:
            self.batches += 1
            self.units += units

    def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        again: list[_Unit[Any]] = []  # failed in the database: run alone after the batch
        try:
            with self._database.unit_of_work() as session:
                savepoint = _Savepoints(session)
                for unit in batch:
                    savepoint.mark()
                    callbacks = len(session.info.get(_AFTER_COMMIT_KEY, ()))
                    try:
                        unit.value = unit.work(session)
                        session.flush()
                    except Exception as exc:
                        if not savepoint.undo():
                            raise _BatchLost from exc
                        session.expunge_all()
                        del session.info.get(_AFTER_COMMIT_KEY, [])[callbacks:]
                        if savepoint.in_database(exc):
                            again.append(unit)
                        else:
                            unit.error = exc
            committed = [u for u in batch if u.error is None and u not in again]
            for unit in committed:
                unit.done = True
            self._count(len(committed))
        except Exception:
            # The shared transaction is gone: whatever did not fail on its own runs alone.
            again = [u for u in batch if u.error is None]
            for unit in again:
                unit.done = False
        for unit in again:
            self._alone(unit)


class _Savepoints:
    """One savepoint at a time on the session's connection, sent through the driver (a
    SQLAlchemy ``begin_nested`` cost 0.3 ms of CPU a unit, as much as a unit's own statements)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        driver: Any = session.connection().connection.driver_connection
        self._driver = driver.cursor()  # one for the batch: a cursor a statement costs CPU
        dialect = session.get_bind().dialect
        self._postgres = dialect.name == "postgresql"
        # Hot paths send statements through the driver (core.db.fetch_all): its own errors
        # arrive unwrapped.
        dbapi: Any = dialect.dbapi
        self._errors: tuple[type[BaseException], ...] = (DBAPIError, dbapi.Error)
        self._set = False

    def in_database(self, exc: BaseException) -> bool:
        """True for an error the database raised (a deadlock, a lock timeout, a constraint)."""
        return isinstance(exc, self._errors)

    def mark(self) -> None:
        """A fresh savepoint for the next unit (the previous one released)."""
        if not self._set:
            self._driver.execute(f"SAVEPOINT {_SAVEPOINT}")
            self._set = True
        elif self._postgres:  # one round trip: both in the simple-query protocol
            self._driver.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}; SAVEPOINT {_SAVEPOINT}")
        else:
            self._driver.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            self._driver.execute(f"SAVEPOINT {_SAVEPOINT}")

    def undo(self) -> bool:
        """Roll back to the savepoint; False when the transaction itself is gone."""
        transaction = self._session.get_transaction()
        if transaction is None or not transaction.is_active:
            return False
        try:
            self._driver.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        except Exception:
            return False
        return True
