from __future__ import annotations

import threading

import pytest

import core.tasks
from core.runtime import Runtime


def test_the_embedded_beat_sends_every_periodic_task(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Celery beat, `yima serve` still evaluates alerts and resumes stalled jobs."""
    sent: list[str] = []
    all_sent = threading.Event()
    expected = {e["task"] for e in core.tasks.celery_app.conf.beat_schedule.values()}

    def record(task: object, *args: object) -> None:
        sent.append(task.name)  # type: ignore[attr-defined]
        if expected <= set(sent):
            all_sent.set()

    monkeypatch.setattr(core.tasks, "send_now", record)
    stop = core.tasks.start_in_process_beat()
    try:
        assert all_sent.wait(timeout=30), sent
    finally:
        stop.set()
    assert {
        "anti_fraud.evaluate_alerts",
        "codegen.resume_exports",
        "anti_fraud.ensure_scan_partitions",
        "anti_fraud.evaluate_diversion",
        "members.activate_pending_points",
        "members.expire_points",
    } <= set(sent)


def test_work_after_commit_waits_for_the_real_commit_not_a_savepoint(runtime: Runtime) -> None:
    """A task sent "after commit" must not leave when a SAVEPOINT inside the transaction is
    released (SQLAlchemy reports those as commits too), nor ever for a rolled-back one."""
    from sqlalchemy import text

    from core.db import after_commit

    ran: list[str] = []
    with runtime.db.unit_of_work() as session:
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: ran.append("sent"))
        with session.begin_nested():
            session.execute(text("SELECT 1"))
        assert ran == []  # the savepoint is released; the transaction is not committed
    assert ran == ["sent"]

    with pytest.raises(RuntimeError), runtime.db.unit_of_work() as session:
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: ran.append("rolled back"))
        with session.begin_nested():
            session.execute(text("SELECT 1"))
        raise RuntimeError("the request failed")
    assert ran == ["sent"]
