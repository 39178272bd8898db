"""Celery tasks of campaigns: thin, idempotent, acknowledged late (run twice or after a crash, a
delivery repeats harmlessly: the ledger key and the merchant order number see to it)."""

from __future__ import annotations

import logging

from core.runtime import get_runtime
from core.tasks import celery_app

logger = logging.getLogger(__name__)


@celery_app.task(name="campaigns.deliver", acks_late=True)
def deliver(fulfilment_id: int) -> str | None:
    """Deliver one prize from the outbox (sent after the draw commits)."""
    from campaigns.fulfilment import deliver as deliver_one

    runtime = get_runtime()
    with runtime.db.unit_of_work() as session:
        return deliver_one(session, runtime, fulfilment_id=fulfilment_id)


@celery_app.task(name="campaigns.deliver_due", acks_late=True)
def deliver_due() -> int:
    """Deliver what is due: lost tasks, crashed workers, retries whose time has come."""
    from campaigns.fulfilment import deliver as deliver_one
    from campaigns.fulfilment import due_deliveries

    runtime = get_runtime()
    with runtime.db.unit_of_work() as session:
        due = due_deliveries(session)
    for fulfilment_id in due:
        try:
            with runtime.db.unit_of_work() as session:
                deliver_one(session, runtime, fulfilment_id=fulfilment_id)
        except Exception:
            # One prize that cannot be delivered now must not hold back the ones after it.
            logger.exception(
                "delivering prize %s failed; it is retried on the next sweep", fulfilment_id
            )
    return len(due)


@celery_app.task(name="campaigns.advance", acks_late=True)
def advance() -> int:
    """Start campaigns whose window began, end (and reveal) those whose window is over."""
    from campaigns.lifecycle import advance_campaigns

    runtime = get_runtime()
    with runtime.db.unit_of_work() as session:
        return advance_campaigns(session, runtime)


@celery_app.task(name="campaigns.refresh_rollups", acks_late=True)
def refresh_rollups() -> int:
    """Count the reward rows not yet in the campaign rollups (safe to run twice: the watermark)."""
    from campaigns.rollups import refresh_campaign_rollups

    return refresh_campaign_rollups(get_runtime()).rewards
