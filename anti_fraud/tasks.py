"""Celery tasks of anti-fraud: thin, idempotent, acknowledged late."""

from __future__ import annotations

from anti_fraud import alerts, diversion, notify, rollups
from anti_fraud.partitions import ensure_partitions
from core.db import utcnow
from core.runtime import get_runtime
from core.tasks import celery_app


@celery_app.task(name="anti_fraud.evaluate_alerts", acks_late=True)
def evaluate_alerts() -> int:
    return alerts.evaluate_alerts(get_runtime())


@celery_app.task(name="anti_fraud.evaluate_diversion", acks_late=True)
def evaluate_diversion() -> int:
    return diversion.evaluate_diversion(get_runtime())


@celery_app.task(name="anti_fraud.ensure_scan_partitions", acks_late=True)
def ensure_scan_partitions() -> int:
    with get_runtime().db.engine.begin() as conn:
        return len(ensure_partitions(conn, around=utcnow(), months_before=0, months_ahead=3))


@celery_app.task(name="anti_fraud.refresh_scan_rollups", acks_late=True)
def refresh_scan_rollups() -> int:
    return rollups.refresh_scan_rollups(get_runtime()).scans


@celery_app.task(name="anti_fraud.notify_alerts", acks_late=True)
def notify_alerts() -> tuple[int, int]:
    """New alerts to the rules' outbox, and what is due sent (idempotent: rows are unique per
    rule and alert, and each is sent under its row lock)."""
    return notify.notify_alerts(get_runtime())
