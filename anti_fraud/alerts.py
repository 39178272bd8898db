"""Alerts for the brand, evaluated by a Celery task (never in a request).

* ``forged_cluster_ip`` / ``forged_cluster_region``: at least the tenant's threshold of codes that
  failed verification from one IP, or one province, within its window;
* ``clone_suspected``: a valid code judged suspicious for many devices or impossible travel;
* ``auto_blacklisted``: a code blacklisted automatically after too many devices.

Each alert has a ``dedupe_key`` unique per tenant (IP or region and window, code, blacklist
entry), inserted with ON CONFLICT DO NOTHING, so evaluating twice never raises an alert twice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anti_fraud.models import Alert, BlacklistEntry, Scan
from anti_fraud.services import get_thresholds
from core.db import insert_ignore, utcnow
from core.runtime import Runtime

CLONE_SIGNALS = ("many_devices", "impossible_travel")
LOOKBACK = dt.timedelta(hours=24)


def _raise(
    session: Session,
    *,
    tenant_id: int,
    kind: str,
    dedupe_key: str,
    subject: str,
    count: int,
    detail: dict[str, Any],
    now: dt.datetime,
) -> bool:
    return insert_ignore(
        session,
        Alert.__table__,
        {
            "tenant_id": tenant_id,
            "kind": kind,
            "dedupe_key": dedupe_key[:200],
            "subject": subject[:200],
            "count": count,
            "detail": detail,
            "status": "open",
            "created_at": now,
        },
    )


def evaluate_alerts(runtime: Runtime, *, now: dt.datetime | None = None) -> int:
    """Raise the alerts the recent scans call for; returns how many are new."""
    now = now or utcnow()
    raised = 0
    with runtime.db.unit_of_work() as session:
        since = now - LOOKBACK
        # Forged-code clusters, per tenant window.
        by_ip = session.execute(
            select(Scan.tenant_id, Scan.ip, Scan.scanned_at).where(
                Scan.verdict == "counterfeit",
                Scan.tenant_id.is_not(None),
                Scan.scanned_at >= since,
                Scan.scanned_at <= now,
            )
        ).all()
        groups: dict[tuple[str, int, str, int], list[dt.datetime]] = defaultdict(list)
        regions = session.execute(
            select(Scan.tenant_id, Scan.country, Scan.province, Scan.scanned_at).where(
                Scan.verdict == "counterfeit",
                Scan.tenant_id.is_not(None),
                Scan.country.is_not(None),
                Scan.scanned_at >= since,
                Scan.scanned_at <= now,
            )
        ).all()
        for tenant_id, ip, at in by_ip:
            if ip and tenant_id is not None:
                window = get_thresholds(runtime, tenant_id).forged_window_minutes * 60
                groups[("ip", tenant_id, ip, int(at.timestamp()) // window)].append(at)
        for tenant_id, country, province, at in regions:
            if tenant_id is None:
                continue
            window = get_thresholds(runtime, tenant_id).forged_window_minutes * 60
            region = f"{country}/{province or '-'}"
            groups[("region", tenant_id, region, int(at.timestamp()) // window)].append(at)
        for (scope, tenant_id, subject, bucket), times in groups.items():
            if len(times) < get_thresholds(runtime, tenant_id).forged_cluster_threshold:
                continue
            kind = "forged_cluster_ip" if scope == "ip" else "forged_cluster_region"
            raised += _raise(
                session,
                tenant_id=tenant_id,
                kind=kind,
                dedupe_key=f"{scope}:{subject}:{bucket}",
                subject=subject,
                count=len(times),
                detail={"first": min(times).isoformat(), "last": max(times).isoformat()},
                now=now,
            )
        # Clone suspicions.
        suspicious = session.execute(
            select(Scan.tenant_id, Scan.batch_id, Scan.serial, Scan.signals, Scan.scanned_at).where(
                Scan.verdict == "suspicious", Scan.scanned_at >= since, Scan.scanned_at <= now
            )
        ).all()
        for tenant_id, batch_id, serial, signals, at in suspicious:
            reasons = [s for s in (signals or []) if s in CLONE_SIGNALS]
            if not reasons or tenant_id is None:
                continue
            raised += _raise(
                session,
                tenant_id=tenant_id,
                kind="clone_suspected",
                dedupe_key=f"clone:{batch_id}:{serial}",
                subject=f"batch {batch_id} #{serial}",
                count=1,
                detail={
                    "signals": reasons,
                    "at": at.isoformat(),
                    "batch_id": batch_id,
                    "serial": serial,
                },
                now=now,
            )
        # Automatic blacklisting.
        entries = session.scalars(
            select(BlacklistEntry).where(
                BlacklistEntry.source == "auto", BlacklistEntry.created_at >= since
            )
        ).all()
        for entry in entries:
            raised += _raise(
                session,
                tenant_id=entry.tenant_id,
                kind="auto_blacklisted",
                dedupe_key=f"auto-blacklist:{entry.id}",
                subject=f"batch {entry.batch_id} #{entry.first_serial}",
                count=1,
                detail={"reason": entry.reason, "note": entry.note, "entry_id": entry.id},
                now=now,
            )
    return raised


def list_alerts(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    kind: str | None = None,
    status: str | None = None,
) -> Sequence[Alert]:
    stmt = select(Alert).where(Alert.tenant_id == tenant_id, Alert.id > after_id)
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    if status:
        stmt = stmt.where(Alert.status == status)
    return session.scalars(stmt.order_by(Alert.id).limit(limit)).all()


def count_alerts(session: Session, *, tenant_id: int) -> int:
    return int(session.scalar(select(func.count()).where(Alert.tenant_id == tenant_id)) or 0)
