"""The group commit: units of work that threads have ready together share one transaction, and
each still commits or fails as its own (core/group_commit.py): a unit that raises rolls its batch
back, runs again alone for its own answer, and the others run again together.

Batches are formed deterministically: a first unit holds the leader's seat until the others are
queued behind it, so they make up the next batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database, after_commit
from core.group_commit import GroupCommit
from core.models import Tenant
from core.runtime import Runtime
from tests.conftest import PG_URL

WAIT = 30.0  # seconds: only reached when a test is broken


def add_tenant(slug: str) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        session.add(Tenant(slug=slug, name=slug.upper()))
        session.flush()
        return slug

    return work


def slugs(runtime: Runtime) -> list[str]:
    with runtime.db.unit_of_work() as session:
        return sorted(session.scalars(select(Tenant.slug)))


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the condition never held")


class Threads:
    """Runs ``group.run(work)`` in threads; keeps each thread's result or exception."""

    def __init__(self, group: GroupCommit) -> None:
        self.group = group
        self.results: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[Session], Any]) -> None:
        def target() -> None:
            try:
                self.results[name] = self.group.run(work)
            except Exception as exc:
                self.results[name] = exc

        thread = threading.Thread(target=target, name=name)
        self._threads.append(thread)
        thread.start()

    def join(self) -> dict[str, Any]:
        for thread in self._threads:
            thread.join(WAIT)
            assert not thread.is_alive(), f"{thread.name} never got its answer"
        return self.results


def in_one_batch(group: GroupCommit, units: dict[str, Callable[[Session], Any]]) -> Threads:
    """Start ``units`` so that they run as one batch: a first unit leads (alone) until every one
    of them waits behind it; the first of them then leads them all."""
    threads = Threads(group)
    entered, release = threading.Event(), threading.Event()

    def gate(session: Session) -> str:
        entered.set()
        assert release.wait(WAIT)
        return "gate"

    threads.start("gate", gate)
    assert entered.wait(WAIT)
    for queued, (name, work) in enumerate(units.items(), 1):
        threads.start(name, work)
        wait_until(lambda queued=queued: group.waiting == queued)  # queued in this order
    release.set()
    return threads


def test_units_ready_together_share_one_commit_and_each_gets_its_own_answer(
    runtime: Runtime,
) -> None:
    group = runtime.db.group_commit
    names = [f"brand-{i}" for i in range(6)]
    results = in_one_batch(group, {n: add_tenant(n) for n in names}).join()

    assert results == {"gate": "gate", **{n: n for n in names}}
    assert slugs(runtime) == names
    assert (group.batches, group.units) == (2, 7)  # the gate alone, then six in one commit


def test_a_unit_that_raises_fails_alone_and_the_others_commit(runtime: Runtime) -> None:
    ran: list[str] = []

    def refused(session: Session) -> str:
        session.add(Tenant(slug="refused", name="R"))
        session.flush()
        after_commit(session, lambda: ran.append("refused"))
        raise ValueError("the unit's own refusal")

    def accepted(slug: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            after_commit(session, lambda: ran.append(slug))
            return add_tenant(slug)(session)

        return work

    group = runtime.db.group_commit
    results = in_one_batch(
        group, {"a": accepted("a"), "refused": refused, "b": accepted("b")}
    ).join()

    assert isinstance(results["refused"], ValueError)
    assert (results["a"], results["b"]) == ("a", "b")
    assert slugs(runtime) == ["a", "b"]
    assert sorted(ran) == ["a", "b"]  # follow-ups of committed runs only
    assert (group.batches, group.units) == (2, 3)


def test_a_unit_that_failed_in_the_database_gets_the_answer_of_its_run_alone(
    runtime: Runtime,
) -> None:
    attempts: list[int] = []

    def flaky(session: Session) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            session.execute(text("SELECT * FROM no_such_table"))
        return add_tenant("flaky")(session)

    def duplicate(session: Session) -> str:
        session.execute(
            text("INSERT INTO core_tenants (slug, name, timezone) VALUES ('a', 'A', 'UTC')")
        )
        return "duplicate"

    group = runtime.db.group_commit
    results = in_one_batch(
        group, {"a": add_tenant("a"), "flaky": flaky, "duplicate": duplicate}
    ).join()

    assert results["flaky"] == "flaky" and len(attempts) == 2  # failed in the batch, then ran
    assert isinstance(results["duplicate"], IntegrityError)  # failed again alone: its answer
    assert results["a"] == "a"
    assert slugs(runtime) == ["a", "flaky"]


def test_a_flush_error_fails_its_own_unit_and_the_others_run_again(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        add_tenant("taken")(session)
    runs: list[str] = []

    def counted(slug: str) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            runs.append(slug)
            return add_tenant(slug)(session)

        return work

    group = runtime.db.group_commit
    # The ORM's flush error rolls the shared transaction back; "a" ran before it, so again.
    results = in_one_batch(
        group, {"a": counted("a"), "taken": counted("taken"), "b": counted("b")}
    ).join()

    assert isinstance(results["taken"], IntegrityError)
    assert (results["a"], results["b"]) == ("a", "b")
    assert slugs(runtime) == ["a", "b", "taken"]  # each once, though "a" ran twice
    assert sorted(runs) == ["a", "a", "b", "taken", "taken"]


def test_a_unit_alone_picked_to_break_a_deadlock_is_tried_again(runtime: Runtime) -> None:
    attempts: list[int] = []

    def unlucky(session: Session) -> str:
        attempts.append(1)
        add_tenant(f"try-{len(attempts)}")(session)
        if len(attempts) < 3:  # as PostgreSQL reports a deadlock it broke by failing us
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "third time"

    def hopeless(session: Session) -> str:
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    group = runtime.db.group_commit
    assert group.run(unlucky) == "third time"
    assert slugs(runtime) == ["try-3"]  # the failed runs' writes were rolled back
    with pytest.raises(psycopg.errors.DeadlockDetected):
        group.run(hopeless)
    with pytest.raises(ValueError):  # not a deadlock: not tried again
        group.run(lambda session: int("x"))


def test_a_lone_unit_runs_in_its_own_transaction(runtime: Runtime) -> None:
    def refused(session: Session) -> str:
        add_tenant("refused")(session)
        raise ValueError("no")

    group = runtime.db.group_commit
    assert group.run(add_tenant("alone")) == "alone"
    with pytest.raises(ValueError, match="no"):
        group.run(refused)
    assert slugs(runtime) == ["alone"]
    assert (group.batches, group.units) == (1, 1)


@pytest.mark.skipif(not PG_URL, reason="row locks and deadlock detection: PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_batches_that_deadlock_both_commit_every_unit_once(
    runtime: Runtime, database_url: str
) -> None:
    """Two processes' batches (two group commits), each holding a row the other's next unit
    wants: PostgreSQL breaks the deadlock by failing one unit; its batch rolls back, the unit
    runs again alone once the other batch has committed, and so does its batch's other unit."""
    with runtime.db.unit_of_work() as session:
        add_tenant("x")(session)
        add_tenant("y")(session)
    other = Database(database_url)
    locked = {"a1": threading.Event(), "b1": threading.Event()}

    def append(slug: str, mark: str, after: str | None = None) -> Callable[[Session], str]:
        def work(session: Session) -> str:
            if after is not None:
                assert locked[after].wait(WAIT)
            session.execute(
                text("UPDATE core_tenants SET name = name || :m WHERE slug = :s"),
                {"m": f" {mark}", "s": slug},
            )
            if mark in locked:
                locked[mark].set()
            return mark

        return work

    try:
        first = in_one_batch(
            runtime.db.group_commit, {"a1": append("x", "a1"), "a2": append("y", "a2", "b1")}
        )
        second = in_one_batch(
            other.group_commit, {"b1": append("y", "b1"), "b2": append("x", "b2", "a1")}
        )
        results = {**first.join(), **second.join()}
    finally:
        other.dispose()

    assert results == {"gate": "gate", "a1": "a1", "a2": "a2", "b1": "b1", "b2": "b2"}
    # two gates, the batch that won, and the two units of the other batch, each alone
    assert runtime.db.group_commit.batches + other.group_commit.batches == 5
    with runtime.db.unit_of_work() as session:
        names = dict(session.execute(text("SELECT slug, name FROM core_tenants")).all())
    assert sorted(names["x"].split()[1:]) == ["a1", "b2"]
    assert sorted(names["y"].split()[1:]) == ["a2", "b1"]
