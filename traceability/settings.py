"""A brand's traceability settings: whether its codes must be activated at the line.

``require_activation``: codes are inactive until activated (a scan of one is ``suspicious``,
shipping one is refused). ``in_use`` is set by the brand's first activation, packing or
shipment; until then a scan skips the trace lookups entirely (nothing could be found). Both are
read at most every 30 s per process, like the anti-fraud thresholds; a change made in another
process takes effect within that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.db import after_commit, insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.models import TraceSettings

SETTINGS_TTL = 30.0
_cache: dict[tuple[int, int], tuple[float, TraceConfig]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TraceConfig:
    require_activation: bool = False
    in_use: bool = False


def get_trace_config(runtime: Runtime, tenant_id: int, session: Session) -> TraceConfig:
    key = (runtime.key, tenant_id)
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < SETTINGS_TTL:
        return hit[1]
    row = session.get(TraceSettings, tenant_id)
    config = TraceConfig(row.require_activation, row.in_use) if row else TraceConfig()
    with _lock:
        _cache[key] = (time.monotonic(), config)
    return config


def _forget(runtime: Runtime, tenant_id: int) -> None:
    with _lock:
        _cache.pop((runtime.key, tenant_id), None)


def _row(session: Session, tenant_id: int) -> TraceSettings:
    insert_ignore(
        session,
        TraceSettings.__table__,
        {
            "tenant_id": tenant_id,
            "require_activation": False,
            "in_use": False,
            "updated_at": utcnow(),
        },
    )
    row = session.get(TraceSettings, tenant_id, populate_existing=True)
    assert row is not None
    return row


def mark_in_use(session: Session, runtime: Runtime, *, tenant_id: int) -> None:
    """Called by every trace write: from now on, scans of this brand look its codes up."""
    if get_trace_config(runtime, tenant_id, session).in_use:
        return
    row = _row(session, tenant_id)
    if not row.in_use:
        row.in_use = True
        row.updated_at = utcnow()
        session.flush()
    after_commit(session, lambda: _forget(runtime, tenant_id))


def update_trace_settings(
    session: Session, runtime: Runtime, *, tenant_id: int, require_activation: object
) -> TraceConfig:
    if not isinstance(require_activation, bool):
        raise ValidationFailedError.field("require_activation", "true or false")
    row = _row(session, tenant_id)
    row.require_activation = require_activation
    row.updated_at = utcnow()
    session.flush()
    after_commit(session, lambda: _forget(runtime, tenant_id))
    _forget(runtime, tenant_id)
    return TraceConfig(row.require_activation, row.in_use)
