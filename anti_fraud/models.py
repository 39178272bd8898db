"""Anti-fraud tables: scans, per-code state, devices seen per code, blacklist, alerts, settings.

Per-code rows exist only for codes that were scanned (issuing stays stateless). The scan table is
partitioned by month on PostgreSQL (see the migration) and a plain table on SQLite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import BigId

VERDICTS = ("genuine", "already_verified", "suspicious", "counterfeit")
IP_MODES = ("full", "truncated", "hashed")
BlacklistReason = Literal[
    "counterfeit_detected",
    "overprint",
    "not_sold",
    "max_scan_count_exceeded",
    "cloned",
    "stolen",
    "misprint",
    "damaged",
    "recalled",
    "key_compromised",
    "other",
]
BLACKLIST_REASONS: tuple[str, ...] = get_args(BlacklistReason)
ALERT_KINDS = ("forged_cluster_ip", "forged_cluster_region", "clone_suspected", "auto_blacklisted")


class TenantSettings(Base):
    """A tenant's anti-fraud thresholds and privacy choices (defaults when absent)."""

    __tablename__ = "anti_fraud_settings"
    __table_args__ = (CheckConstraint(f"ip_storage IN {IP_MODES!r}", name="ip_storage"),)

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("core_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    clone_device_threshold: Mapped[int] = mapped_column(Integer, default=5)
    auto_blacklist_device_threshold: Mapped[int] = mapped_column(Integer, default=20)
    max_travel_speed_kmh: Mapped[float] = mapped_column(Float, default=900.0)
    ip_storage: Mapped[str] = mapped_column(String(16), default="truncated")
    # A diversion alert is raised when the evidence against one shipment scores this much
    # (anti_fraud/diversion.py: a GPS scan to the city scores 1, an IP scan to the country 0.25).
    diversion_alert_score: Mapped[float] = mapped_column(Float, default=1.0)
    forged_cluster_threshold: Mapped[int] = mapped_column(Integer, default=20)
    forged_window_minutes: Mapped[int] = mapped_column(Integer, default=60)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CodeState(Base):
    """What is known of one scanned code: its first scan, counts and last located scan."""

    __tablename__ = "anti_fraud_code_states"
    __table_args__ = (
        Index("ix_anti_fraud_code_states_tenant_first", "tenant_id", "first_scan_at"),
    )

    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tenant_id: Mapped[int] = mapped_column(Integer)
    first_scan_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    first_device: Mapped[str] = mapped_column(String(64))
    first_place: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scan_count: Mapped[int] = mapped_column(Integer, default=1)
    device_count: Mapped[int] = mapped_column(Integer, default=1)
    last_scan_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # The last scan that had coordinates, and the one before it (impossible-travel check).
    last_lat: Mapped[float | None] = mapped_column(Float)
    last_lon: Mapped[float | None] = mapped_column(Float)
    last_located_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    prev_lat: Mapped[float | None] = mapped_column(Float)
    prev_lon: Mapped[float | None] = mapped_column(Float)
    prev_located_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class CodeDevice(Base):
    """One row per (code, device) ever seen: counts distinct sessions exactly, once each."""

    __tablename__ = "anti_fraud_code_devices"

    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    device: Mapped[str] = mapped_column(String(64), primary_key=True)


class Scan(Base):
    """Every scan answered, valid or not. On PostgreSQL: partitioned by month on scanned_at."""

    __tablename__ = "anti_fraud_scans"
    __table_args__ = (
        CheckConstraint(f"verdict IN {VERDICTS!r}", name="verdict"),
        Index("ix_anti_fraud_scans_code", "batch_id", "serial", "scanned_at"),
        Index("ix_anti_fraud_scans_tenant_at", "tenant_id", "scanned_at"),
        Index(
            "ix_anti_fraud_scans_diverted",
            "scanned_at",
            postgresql_where=text("diverted"),
            sqlite_where=text("diverted"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    serial: Mapped[int | None] = mapped_column(BigInteger)
    # For a code that failed verification: a keyed hash of what was scanned, and why.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    invalid_reason: Mapped[str | None] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(20))
    signals: Mapped[list[str]] = mapped_column(JSON, default=list)
    device: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    country: Mapped[str | None] = mapped_column(String(2))
    province: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    place_source: Mapped[str] = mapped_column(String(8), default="none")
    place_precision: Mapped[str] = mapped_column(String(16), default="unknown")
    # Traceability at scan time: the distributor holding the code, the shipment that took it
    # there, and whether the scan was outside that distributor's regions (None: cannot tell).
    distributor_id: Mapped[int | None] = mapped_column(Integer)
    shipment_id: Mapped[int | None] = mapped_column(Integer)
    diverted: Mapped[bool | None] = mapped_column(Boolean)


class BlacklistEntry(Base):
    """A blacklisted code or range of serials of one batch, with its reason; never deleted:
    un-blacklisting records who lifted it, when and why."""

    __tablename__ = "anti_fraud_blacklist"
    __table_args__ = (
        CheckConstraint(f"reason IN {BLACKLIST_REASONS!r}", name="reason"),
        CheckConstraint("first_serial <= last_serial", name="range"),
        Index("ix_anti_fraud_blacklist_batch", "batch_id", "first_serial", "last_serial"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(BigInteger)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual | auto
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    lifted_reason: Mapped[str | None] = mapped_column(String(500))


class Alert(Base):
    """Something the brand should look at. ``dedupe_key`` makes raising an alert idempotent."""

    __tablename__ = "anti_fraud_alerts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dedupe_key"),
        CheckConstraint(f"kind IN {ALERT_KINDS!r}", name="kind"),
        Index("ix_anti_fraud_alerts_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


REVIEW_STATES = ("open", "confirmed", "dismissed")


class DiversionAlert(Base):
    """Evidence that goods of one shipment are sold outside the receiver's regions.

    One row per (distributor, shipment), refreshed by the alert task as evidence grows; the
    review state is the brand's.
    """

    __tablename__ = "anti_fraud_diversion_alerts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "distributor_id", "shipment_id"),
        CheckConstraint(f"status IN {REVIEW_STATES!r}", name="status"),
        Index("ix_anti_fraud_diversion_alerts_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    distributor_id: Mapped[int] = mapped_column(Integer)
    shipment_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    score: Mapped[float] = mapped_column(Float)
    code_count: Mapped[int] = mapped_column(Integer)
    scan_count: Mapped[int] = mapped_column(Integer)
    receipt_count: Mapped[int] = mapped_column(Integer, default=0)
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)
    places: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # "|CN|CN-JS|CN-JS/南京市|": every region the goods turned up in, for filtering by region.
    seen_regions: Mapped[str] = mapped_column(String(2000), default="")
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    review_note: Mapped[str] = mapped_column(String(1000), default="")


# --- rollups for the dashboards (anti_fraud/rollups.py keeps them up to date) ----------------


class ScanHour(Base):
    """Scans per UTC hour, batch, verdict and diversion flag: the time series and verdict mix.

    ``batch_id`` and ``product_id`` are 0 for a code that failed verification; ``diverted`` is 1
    for a scan outside its distributor's regions (0: inside, or cannot tell).
    """

    __tablename__ = "anti_fraud_scan_hours"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    diverted: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(Integer)
    scans: Mapped[int] = mapped_column(BigInteger)


class ScanDay(Base):
    """Scans per brand-local day, batch, verdict and diversion flag: series by day over long
    periods (a quarter is about a thousand rows a batch), and scans per batch."""

    __tablename__ = "anti_fraud_scan_days"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    diverted: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(Integer)
    scans: Mapped[int] = mapped_column(BigInteger)


class ScanPlace(Base):
    """Scans per brand-local day, batch, place (country, ISO 3166-2 province), verdict,
    diversion flag and distributor: the map, every figure filtered by region, and diversion by
    distributor. Unknown places and distributors are stored as "" and 0 (a primary key holds no
    NULL)."""

    __tablename__ = "anti_fraud_scan_places"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    province: Mapped[str] = mapped_column(String(16), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(20), primary_key=True)
    diverted: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    distributor_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(Integer)
    scans: Mapped[int] = mapped_column(BigInteger)


class ScannerSketch(Base):
    """Distinct scanners (devices) per brand-local day and batch as a HyperLogLog sketch:
    ``registers`` holds 2^12 one-byte registers; sketches merge by taking the larger register,
    so any period and set of batches is counted from them (anti_fraud/sketches.py)."""

    __tablename__ = "anti_fraud_scanner_sketches"

    tenant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    registers: Mapped[bytes] = mapped_column(LargeBinary)


class RollupCursor(Base):
    """How far a rollup has counted the scans (core/rollups.py: watermark and gaps)."""

    __tablename__ = "anti_fraud_rollup_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- alert notifications (anti_fraud/notify.py) ------------------------------------------------

NOTIFY_CHANNELS = ("email", "webhook")
NOTIFY_KINDS = (*ALERT_KINDS, "diversion")
NOTIFICATION_STATUSES = ("pending", "retry", "sent", "failed")


class AlertRule(Base):
    """Whom to tell of which alerts: alerts of ``kinds`` at or above the thresholds go to the
    e-mail addresses or the webhook in ``target``."""

    __tablename__ = "anti_fraud_alert_rules"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(f"channel IN {NOTIFY_CHANNELS!r}", name="channel"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    # An alert counting this many codes / scans (forged clusters, clones), or a diversion alert
    # scoring this much, is notified once.
    min_count: Mapped[int] = mapped_column(Integer, default=1)
    min_score: Mapped[float] = mapped_column(Float, default=1.0)
    channel: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(1000))  # addresses, comma-separated; or a URL
    # The webhook's signing secret, sealed under the brand's data key (core.keyring.seal).
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notification(Base):
    """The outbox of alert notifications: one row per (rule, alert), worked until sent or given
    up, never sent twice by two workers (the row is locked while it is sent)."""

    __tablename__ = "anti_fraud_notifications"
    __table_args__ = (
        UniqueConstraint("rule_id", "event_key"),
        CheckConstraint(f"status IN {NOTIFICATION_STATUSES!r}", name="status"),
        Index("ix_anti_fraud_notifications_due", "status", "next_attempt_at"),
        Index("ix_anti_fraud_notifications_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("anti_fraud_alert_rules.id", ondelete="CASCADE")
    )
    event_key: Mapped[str] = mapped_column(String(64))  # alert:<id> | diversion:<id> | test:<n>
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
