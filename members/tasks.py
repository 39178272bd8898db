"""Celery tasks of the points ledger: thin, idempotent, acknowledged late (a task run twice, or
re-delivered after its worker died, changes nothing: every entry has its business key)."""

from __future__ import annotations

from core.runtime import get_runtime
from core.tasks import celery_app
from members import ledger


@celery_app.task(name="members.activate_pending_points", acks_late=True)
def activate_pending_points() -> int:
    """Make scan points whose pending window has passed spendable."""
    runtime = get_runtime()
    moved = 0
    while True:
        with runtime.db.unit_of_work() as session:
            done = ledger.activate_due(session)
        moved += done
        if not done:
            return moved


@celery_app.task(name="members.expire_points", acks_late=True)
def expire_points() -> int:
    """Debit what expired lots still hold."""
    return ledger.expire_all(get_runtime())
