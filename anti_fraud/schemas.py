"""Request and response shapes of the brand-facing anti-fraud API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from anti_fraud.models import Alert, BlacklistEntry, BlacklistReason, DiversionAlert, Scan


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
