"""Request and response shapes of the brand-facing anti-fraud API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anti_fraud.models import (
    NOTIFY_CHANNELS,
    NOTIFY_KINDS,
    Alert,
    AlertRule,
    BlacklistEntry,
    BlacklistReason,
    DiversionAlert,
    Notification,
    Scan,
)


class BlacklistIn(BaseModel):
    """A code (its URL or token) or a range of serials of one batch."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(default=None, min_length=1, max_length=2048)
    batch_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    first_serial: int | None = Field(default=None, ge=1, le=2**31 - 1)
    last_serial: int | None = Field(default=None, ge=1, le=2**31 - 1)
    reason: BlacklistReason
    note: str = Field(default="", max_length=500)


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class BlacklistOut(BaseModel):
    id: int
    batch_id: int
    first_serial: int
    last_serial: int
    reason: str
    note: str
    source: str
    created_by: str
    created_at: dt.datetime
    lifted_at: dt.datetime | None
    lifted_by: str | None
    lifted_reason: str | None

    @classmethod
    def of(cls, entry: BlacklistEntry) -> BlacklistOut:
        return cls.model_validate(entry, from_attributes=True)


class BlacklistPage(BaseModel):
    items: list[BlacklistOut]
    next_after: int | None


class AlertOut(BaseModel):
    id: int
    kind: str
    subject: str
    count: int
    detail: dict[str, Any]
    status: str
    created_at: dt.datetime

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(alert, from_attributes=True)


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_after: int | None


class SettingsIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clone_device_threshold: int | None = Field(default=None, ge=1, le=1_000_000)
    auto_blacklist_device_threshold: int | None = Field(default=None, ge=1, le=1_000_000)
    max_travel_speed_kmh: float | None = Field(default=None, ge=10, le=100_000)
    ip_storage: Literal["full", "truncated", "hashed"] | None = None
    forged_cluster_threshold: int | None = Field(default=None, ge=1, le=1_000_000)
    forged_window_minutes: int | None = Field(default=None, ge=1, le=1_000_000)
    diversion_alert_score: float | None = Field(default=None, ge=0.1, le=1000)


class ScanRecordOut(BaseModel):
    scanned_at: dt.datetime
    verdict: str
    signals: list[str]
    country: str | None
    province: str | None
    city: str | None
    place_source: str
    place_precision: str
    ip: str | None
    distributor_id: int | None = None
    shipment_id: int | None = None
    diverted: bool | None = None

    @classmethod
    def of(cls, scan: Scan) -> ScanRecordOut:
        return cls.model_validate(scan, from_attributes=True)


class CodeScansOut(BaseModel):
    batch_id: int
    serial: int
    items: list[ScanRecordOut]


class DiversionPlaceOut(BaseModel):
    region: str | None = Field(description="where the goods turned up: CN, CN-JS, CN-JS/南京市")
    source: str = Field(description="gps, ip, or the receipt's source")
    precision: str = Field(description="city, province, country, or receipt")
    count: int


class DiversionAlertOut(BaseModel):
    id: int
    distributor_id: int
    shipment_id: int
    status: str
    score: float
    code_count: int
    scan_count: int
    receipt_count: int
    regions: list[str] = Field(description="the distributor's authorised regions")
    places: list[DiversionPlaceOut]
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    review_note: str

    @classmethod
    def of(cls, alert: DiversionAlert) -> DiversionAlertOut:
        return cls.model_validate(alert, from_attributes=True)


class DiversionAlertPage(BaseModel):
    items: list[DiversionAlertOut]
    next_after: int | None


class DiversionScanOut(BaseModel):
    batch_id: int | None
    serial: int | None
    scanned_at: dt.datetime
    verdict: str
    country: str | None
    province: str | None
    city: str | None
    place_source: str
    place_precision: str

    @classmethod
    def of(cls, scan: Scan) -> DiversionScanOut:
        return cls.model_validate(scan, from_attributes=True)


class DiversionAlertDetailOut(DiversionAlertOut):
    scans: list[DiversionScanOut]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "confirmed", "dismissed"]
    note: str = Field(default="", max_length=1000)


# --- alert rules and notifications ------------------------------------------------------------


class AlertRuleIn(BaseModel):
    """A rule as the brand writes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    kinds: list[str] = Field(min_length=1, max_length=len(NOTIFY_KINDS))
    min_count: int = Field(default=1, ge=1, le=1_000_000)
    min_score: float = Field(default=1.0, ge=0.0, le=1_000_000.0)
    channel: str
    target: str = Field(min_length=3, max_length=1000)
    enabled: bool = True

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(NOTIFY_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; one of {list(NOTIFY_KINDS)}")
        return sorted(set(value))

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in NOTIFY_CHANNELS:
            raise ValueError(f"must be one of {list(NOTIFY_CHANNELS)}")
        return value


class AlertRuleOut(BaseModel):
    id: int
    name: str
    kinds: list[str]
    min_count: int
    min_score: float
    channel: str
    target: str
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    # The webhook's signing secret: only in the answer that made (or rotated) it.
    secret: str | None = None

    @classmethod
    def of(cls, rule: AlertRule, secret: str | None = None) -> AlertRuleOut:
        out = cls.model_validate(rule, from_attributes=True)
        return out.model_copy(update={"secret": secret})


class AlertRuleList(BaseModel):
    items: list[AlertRuleOut]


class NotificationOut(BaseModel):
    id: int
    rule_id: int
    event_key: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None

    @classmethod
    def of(cls, row: Notification) -> NotificationOut:
        return cls.model_validate(row, from_attributes=True)


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_after: int | None
