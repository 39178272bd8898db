"""The Celery app and how work is handed to it.

With ``YIMA_BROKER_URL`` set, tasks go to Celery workers (Redis or RabbitMQ). Without a broker
(the embedded default) the same task functions run in-process: on a small background thread
pool for the web server, or inline (``task_mode=inline``) for the CLI and tests. Either way a
task is dispatched only after the transaction that created its work has committed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from core.db import after_commit
from core.runtime import get_runtime

log = logging.getLogger("yima.tasks")

celery_app = Celery("yima")
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    imports=["codegen.tasks", "anti_fraud.tasks", "members.tasks", "campaigns.tasks"],
    beat_schedule={
        "resume-stalled-exports": {"task": "codegen.resume_exports", "schedule": 60.0},
        "evaluate-alerts": {"task": "anti_fraud.evaluate_alerts", "schedule": 60.0},
        "notify-alerts": {"task": "anti_fraud.notify_alerts", "schedule": 60.0},
        "evaluate-diversion": {"task": "anti_fraud.evaluate_diversion", "schedule": 300.0},
        "refresh-scan-rollups": {"task": "anti_fraud.refresh_scan_rollups", "schedule": 60.0},
        "refresh-member-rollups": {"task": "members.refresh_member_rollups", "schedule": 60.0},
        "refresh-campaign-rollups": {"task": "campaigns.refresh_rollups", "schedule": 60.0},
        "activate-pending-points": {"task": "members.activate_pending_points", "schedule": 60.0},
        "expire-points": {"task": "members.expire_points", "schedule": 3600.0},
        "review-tiers": {"task": "members.review_tiers", "schedule": 86400.0},
        "birthday-points": {"task": "members.grant_birthday_points", "schedule": 3600.0},
        "purge-sign-in-codes": {"task": "members.purge_codes", "schedule": 3600.0},
        "purge-console-sessions": {"task": "core.purge_console_sessions", "schedule": 3600.0},
        "compute-rfm": {"task": "members.compute_rfm", "schedule": 86400.0},
        "evaluate-tags": {"task": "members.evaluate_tags", "schedule": 3600.0},
        "advance-campaigns": {"task": "campaigns.advance", "schedule": 60.0},
        "deliver-due-prizes": {"task": "campaigns.deliver_due", "schedule": 60.0},
        "ensure-scan-partitions": {
            "task": "anti_fraud.ensure_scan_partitions",
            "schedule": 6 * 3600.0,
        },
    },
    timezone="UTC",
)


def configure_celery() -> Celery:
    """Point the Celery app at this process's broker (called by worker and dispatch)."""
    settings = get_runtime().settings
    if settings.broker_url and celery_app.conf.broker_url != settings.broker_url:
        celery_app.conf.broker_url = settings.broker_url
        if settings.broker_url.startswith(("redis://", "rediss://")):
            # An unacknowledged task comes back after this long; resume_exports does not wait.
            celery_app.conf.broker_transport_options = {"visibility_timeout": 3600}
    return celery_app


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_pending: set[Future[None]] = set()


def _submit(task: Any, args: tuple[Any, ...]) -> None:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="yima-task")
        future = _pool.submit(_run_logged, task, args)
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _pool_lock:
        _pending.discard(future)


def _run_logged(task: Any, args: tuple[Any, ...]) -> None:
    try:
        task.run(*args)
    except Exception:
        log.exception("in-process task %s%r failed", task.name, args)


def send_now(task: Any, *args: Any) -> None:
    """Hand ``task(*args)`` to whatever runs tasks in this process, right away."""
    mode = get_runtime().settings.resolved_task_mode
    if mode == "celery":
        configure_celery()
        task.apply_async(args=args)
    elif mode == "thread":
        _submit(task, args)
    else:
        task.run(*args)


def dispatch(session: Session, task: Any, *args: Any) -> None:
    """Send ``task(*args)`` once ``session`` commits (never for rolled-back work)."""
    after_commit(session, lambda: send_now(task, *args))


def start_in_process_beat() -> threading.Event:
    """Without Celery beat (the embedded default), send the periodic tasks from a thread.

    Each task is sent at once, then every ``schedule`` seconds; set the returned event to stop.
    """
    stop = threading.Event()

    def loop() -> None:
        import time

        celery_app.loader.import_default_modules()
        due = {name: 0.0 for name in celery_app.conf.beat_schedule}
        while not stop.is_set():
            now = time.monotonic()
            for name, entry in celery_app.conf.beat_schedule.items():
                if now >= due[name]:
                    due[name] = now + float(entry["schedule"])
                    send_now(celery_app.tasks[entry["task"]])
            stop.wait(1.0)

    threading.Thread(target=loop, name="yima-beat", daemon=True).start()
    return stop


def wait_for_in_process_tasks() -> None:
    """Block until in-process tasks, and the tasks they send, are all done."""
    while True:
        with _pool_lock:
            pending = set(_pending)
        if not pending:
            return
        wait(pending)


@celery_app.task(name="core.purge_console_sessions", acks_late=True)
def purge_console_sessions() -> int:
    """Delete console sessions and sign-in failure counts that ended 30 days ago or more."""
    from core.accounts import purge_sessions

    with get_runtime().db.unit_of_work() as session:
        return purge_sessions(session)
