"""Diversion (窜货) evidence: scans and receipts outside a distributor's authorised regions,
grouped per distributor and shipment, scored, and reviewed by the brand.

A scan is flagged ``diverted`` when it is recorded (anti_fraud.services.diversion_of); this
module turns flags into alerts in the alert task, never in a request. Each code of a shipment
counts once, weighed by how sure its best location is:

==============  =====  ========  =======
source          city   province  country
==============  =====  ========  =======
GPS (phone)     0.6    0.5       0.3
IP address      0.3    0.25      0.15
==============  =====  ========  =======

A receipt scanned outside the receiver's regions (a dealer's or warehouse's handheld) weighs
1.0 — a logistics event is an act, not a guess. The score is the sum of the codes' weights times
``1 + ln(number of codes)`` (a cluster says more than its parts) plus the receipts. An alert is
raised when the score reaches the tenant's ``diversion_alert_score`` (1.0 by default): one
code, however precisely located (0.6), or three codes located only by IP to a country (0.94)
never do alone; two codes of the same shipment scanned by phones in the wrong province do
(2.03), and so does one such phone with one IP abroad (1.27).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import traceability
from anti_fraud import geo
from anti_fraud.errors import DiversionAlertNotFoundError
from anti_fraud.models import REVIEW_STATES, DiversionAlert, Scan
from anti_fraud.services import get_thresholds, located
from core.db import insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime

LOOKBACK = dt.timedelta(days=90)
WEIGHTS = {
    ("gps", "city"): 0.6,
    ("gps", "province"): 0.5,
    ("gps", "country"): 0.3,
    ("ip", "city"): 0.3,
    ("ip", "province"): 0.25,
    ("ip", "country"): 0.15,
}
RECEIPT_WEIGHT = 1.0
MAX_PLACES = 20


def locate_point(lat: float, lon: float, accuracy_m: float | None = None) -> traceability.Located:
    """A handheld's GPS fix as a place in sales-region terms (ValueError when impossible)."""
    return located(geo.locate_gps(lat, lon, accuracy_m))


def region_code(country: str | None, province: str | None, city: str | None) -> str | None:
    """Where a scan was, as a region code: CN, CN-ZJ, CN-ZJ/杭州市."""
    if not country:
        return None
    division = traceability.province_iso(country, province)
    if division is None:
        return country
    return f"{division}/{city}" if city and country == "CN" else division


@dataclass
class _Evidence:
    codes: dict[tuple[int, int], float] = field(default_factory=dict)
    scans: int = 0
    receipts: int = 0
    places: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def seen(self, at: dt.datetime) -> None:
        self.first = at if self.first is None or at < self.first else self.first
        self.last = at if self.last is None or at > self.last else self.last

    @property
    def score(self) -> float:
        n = len(self.codes)
        spread = 1 + math.log(n) if n else 0.0
        return sum(self.codes.values()) * spread + RECEIPT_WEIGHT * self.receipts


def evaluate_diversion(runtime: Runtime, *, now: dt.datetime | None = None) -> int:
    """Raise or refresh the diversion alerts the evidence calls for; returns how many are new.

    Idempotent: an alert is one row per (tenant, distributor, shipment), refreshed in place;
    its review state is left as the brand set it.
    """
    now = now or utcnow()
    since = now - LOOKBACK
    groups: dict[tuple[int, int, int], _Evidence] = defaultdict(_Evidence)
    new = 0
    with runtime.db.unit_of_work() as session:
        rows = session.execute(
            select(
                Scan.tenant_id,
                Scan.distributor_id,
                Scan.shipment_id,
                Scan.batch_id,
                Scan.serial,
                Scan.place_source,
                Scan.place_precision,
                Scan.country,
                Scan.province,
                Scan.city,
                Scan.scanned_at,
            ).where(Scan.diverted.is_(True), Scan.scanned_at >= since, Scan.scanned_at <= now)
        ).all()
        for tenant_id, dist, shipment, batch, serial, source, precision, c, p, city, at in rows:
            if tenant_id is None or dist is None or shipment is None:
                continue
            if batch is None or serial is None:
                continue
            ev = groups[(tenant_id, dist, shipment)]
            weight = WEIGHTS.get((source, precision), 0.0)
            key = (batch, serial)
            ev.codes[key] = max(ev.codes.get(key, 0.0), weight)
            ev.scans += 1
            ev.places[(region_code(c, p, city), source, precision)] += 1
            ev.seen(at)
        for receipt in traceability.receipts_outside(session, since=since, until=now):
            if receipt.to_distributor_id is None or receipt.received_at is None:
                continue
            ev = groups[(receipt.tenant_id, receipt.to_distributor_id, receipt.id)]
            ev.receipts += 1
            where = receipt.received_division or receipt.received_country
            if receipt.received_city and receipt.received_division:
                where = f"{receipt.received_division}/{receipt.received_city}"
            ev.places[(where, receipt.received_source or "manual", "receipt")] += 1
            ev.seen(receipt.received_at)
        for (tenant_id, dist, shipment), ev in groups.items():
            threshold = get_thresholds(runtime, tenant_id, session).diversion_alert_score
            if ev.score < threshold or ev.first is None or ev.last is None:
                continue
            _, regions = traceability.authorised_regions(session, dist)
            places = [
                {"region": region, "source": source, "precision": precision, "count": count}
                for (region, source, precision), count in ev.places.most_common(MAX_PLACES)
            ]
            seen = "|" + "|".join(sorted(_prefixes(p["region"] for p in places))) + "|"
            values = {
                "score": round(ev.score, 3),
                "code_count": len(ev.codes),
                "scan_count": ev.scans,
                "receipt_count": ev.receipts,
                "regions": regions,
                "places": places,
                "seen_regions": seen[:2000],
                "first_seen_at": ev.first,
                "last_seen_at": ev.last,
                "updated_at": now,
            }
            new += insert_ignore(
                session,
                DiversionAlert.__table__,
                {
                    "tenant_id": tenant_id,
                    "distributor_id": dist,
                    "shipment_id": shipment,
                    "status": "open",
                    "created_at": now,
                    "review_note": "",
                    **values,
                },
            )
            session.execute(
                update(DiversionAlert)
                .where(
                    DiversionAlert.tenant_id == tenant_id,
                    DiversionAlert.distributor_id == dist,
                    DiversionAlert.shipment_id == shipment,
                )
                .values(**values)
            )
    return new


def _prefixes(regions: Any) -> set[str]:
    out: set[str] = set()
    for region in regions:
        if not region:
            continue
        head, _, city = region.partition("/")
        out.add(head.split("-", 1)[0])
        out.add(head)
        if city:
            out.add(region)
    return out


def list_diversion_alerts(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    distributor_id: int | None = None,
    region: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    status: str | None = None,
) -> Sequence[DiversionAlert]:
    """Alerts per distributor, region where the goods turned up (CN-JS, CN-JS/南京市), period
    (alerts with evidence inside it) and review state, oldest first."""
    stmt = select(DiversionAlert).where(
        DiversionAlert.tenant_id == tenant_id, DiversionAlert.id > after_id
    )
    if distributor_id is not None:
        stmt = stmt.where(DiversionAlert.distributor_id == distributor_id)
    if region:
        code = traceability.parse_region(region, field="region").code
        stmt = stmt.where(DiversionAlert.seen_regions.contains(f"|{code}|", autoescape=True))
    if since is not None:
        stmt = stmt.where(DiversionAlert.last_seen_at >= since)
    if until is not None:
        stmt = stmt.where(DiversionAlert.first_seen_at <= until)
    if status is not None:
        if status not in REVIEW_STATES:
            raise ValidationFailedError.field("status", f"one of {', '.join(REVIEW_STATES)}")
        stmt = stmt.where(DiversionAlert.status == status)
    return session.scalars(stmt.order_by(DiversionAlert.id).limit(limit)).all()


def get_diversion_alert_or_raise(
    session: Session, *, tenant_id: int, alert_id: int, distributor_id: int | None = None
) -> DiversionAlert:
    """The tenant's alert (with ``distributor_id``: only if it names that distributor)."""
    alert = session.get(DiversionAlert, alert_id)
    if (
        alert is None
        or alert.tenant_id != tenant_id
        or (distributor_id is not None and alert.distributor_id != distributor_id)
    ):
        raise DiversionAlertNotFoundError(f"no diversion alert {alert_id}")
    return alert


def review_diversion_alert(
    session: Session, *, tenant_id: int, alert_id: int, status: str, note: str, actor: str
) -> DiversionAlert:
    """The brand's review: confirmed (it is diversion), dismissed (it is not), or open again."""
    if status not in REVIEW_STATES:
        raise ValidationFailedError.field("status", f"one of {', '.join(REVIEW_STATES)}")
    alert = get_diversion_alert_or_raise(session, tenant_id=tenant_id, alert_id=alert_id)
    alert.status = status
    alert.review_note = note[:1000]
    alert.reviewed_by = actor[:200]
    alert.reviewed_at = utcnow()
    session.flush()
    return alert


def diversion_scans(session: Session, alert: DiversionAlert, *, limit: int = 500) -> Sequence[Scan]:
    """The flagged scans behind an alert, newest first (the drill-down to codes and places)."""
    return session.scalars(
        select(Scan)
        .where(
            Scan.tenant_id == alert.tenant_id,
            Scan.distributor_id == alert.distributor_id,
            Scan.shipment_id == alert.shipment_id,
            Scan.diverted.is_(True),
        )
        .order_by(Scan.scanned_at.desc())
        .limit(limit)
    ).all()
