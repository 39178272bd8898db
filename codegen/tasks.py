"""Celery tasks of code generation: thin wrappers that take IDs and call the export service.

Each is idempotent (chunks and assembly are guarded by status columns) and acknowledged late,
so a task whose worker dies is delivered again.
"""

from __future__ import annotations

from celery.signals import worker_ready
from sqlalchemy.orm import Session

from codegen import exports
from core.runtime import get_runtime
from core.tasks import celery_app, dispatch


@celery_app.task(name="codegen.run_export_chunk", acks_late=True, max_retries=5)
def run_export_chunk(export_id: int, index: int) -> bool:
    return exports.run_chunk(get_runtime(), export_id, index)


@celery_app.task(name="codegen.assemble_export", acks_late=True, max_retries=5)
def assemble_export(export_id: int) -> bool:
    return exports.assemble(get_runtime(), export_id)


@celery_app.task(name="codegen.resume_exports", acks_late=True)
def resume_exports() -> int:
    return exports.resume_exports(get_runtime())


def dispatch_chunk(session: Session, export_id: int, index: int) -> None:
    dispatch(session, run_export_chunk, export_id, index)


def dispatch_assemble(session: Session, export_id: int) -> None:
    dispatch(session, assemble_export, export_id)


@worker_ready.connect
def _resume_on_start(**_kwargs: object) -> None:
    # A worker that starts picks up what a killed one left behind.
    exports.resume_exports(get_runtime())
