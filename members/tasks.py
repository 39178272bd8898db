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


@celery_app.task(name="members.check_tier", acks_late=True)
def check_tier(tenant_id: int, member_id: int) -> None:
    """Upgrade a member at once when a rewarded scan made them qualify (sent after commit)."""
    from members.tiers import check_upgrade

    with get_runtime().db.unit_of_work() as session:
        check_upgrade(session, get_runtime(), tenant_id=tenant_id, member_id=member_id)


@celery_app.task(name="members.review_tiers", acks_late=True)
def review_tiers() -> int:
    """The tier review: downgrade by the brand's policy those who no longer qualify."""
    from members.tiers import review_all

    return review_all(get_runtime())


@celery_app.task(name="members.grant_birthday_points", acks_late=True)
def grant_birthday_points() -> int:
    """Birthday points for today's birthdays in each brand's timezone (hourly: every local
    day is caught whatever the timezone; once per member per year)."""
    from members.engagement import grant_all_birthday_points

    return grant_all_birthday_points(get_runtime())


@celery_app.task(name="members.purge_codes", acks_late=True)
def purge_codes() -> int:
    """Delete sign-in codes that expired more than a day ago and member tokens expired or
    revoked more than 30 days ago (they can only ever fail)."""
    from members.otp import purge_codes as purge
    from members.sessions import purge_sessions

    with get_runtime().db.unit_of_work() as session:
        return purge(session) + purge_sessions(session)


@celery_app.task(name="members.compute_rfm", acks_late=True)
def compute_rfm() -> int:
    """Score every brand's members by recency, frequency and monetary value, and write each
    brand's summary for the console with its scores (nightly)."""
    from members.rfm import compute_rfm as compute

    return compute(get_runtime()).members


@celery_app.task(name="members.evaluate_tags", acks_late=True)
def evaluate_tags() -> None:
    """Re-apply every automatic tag's rule (set-wise; running it twice changes nothing)."""
    from members.tags import evaluate_tags as evaluate

    with get_runtime().db.unit_of_work() as session:
        evaluate(session)


@celery_app.task(name="members.refresh_member_rollups", acks_late=True)
def refresh_member_rollups() -> int:
    """Count new members, ledger entries and tier moves into the dashboards' figures (each
    once), then recount the points each brand's members hold and will lose within 30 days."""
    from members.rollups import refresh_member_rollups as refresh

    done = refresh(get_runtime())
    return done.members + done.entries + done.tier_members + done.tier_changes
