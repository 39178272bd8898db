"""Request and response shapes of the traceability API."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from traceability.models import (
    CHANNELS,
    DEACTIVATION_REASONS,
    DISTRIBUTOR_LEVELS,
    Activation,
    Shipment,
)

Code = str  # a token, a short URL or a GS1 Digital Link, as the scanner read it
MAX_INT = 2**31 - 1
MAX_SERIAL = 100_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettingsIO(Strict):
    require_activation: bool


class ActivationIn(Strict):
    """One of: a serial range of a batch; the first and last code of a range (or print roll);
    a roll number of a batch; a case or pallet with everything packed in it."""

    action: Literal["activate", "deactivate"] = "activate"
    batch_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    first_serial: int | None = Field(default=None, ge=1, le=MAX_SERIAL)
    last_serial: int | None = Field(default=None, ge=1, le=MAX_SERIAL)
    from_code: Code | None = Field(default=None, max_length=300)
    to_code: Code | None = Field(default=None, max_length=300)
    roll: int | None = Field(default=None, ge=1, le=MAX_SERIAL)
    roll_size: int | None = Field(default=None, ge=1, le=10_000_000)
    case: Code | None = Field(default=None, max_length=300)
    reason: Literal[DEACTIVATION_REASONS] | None = None  # type: ignore[valid-type]
    note: str = Field(default="", max_length=500)
    line: str = Field(default="", max_length=100)
    site: str = Field(default="", max_length=200)
    at: dt.datetime | None = None


class ActivationOut(BaseModel):
    id: int
    action: str
    scope: str
    batch_id: int
    first_serial: int
    last_serial: int
    code_count: int
    reason: str | None
    note: str
    line: str
    site: str
    operator: str
    reference: str
    at: dt.datetime
    recorded_at: dt.datetime

    @classmethod
    def of(cls, a: Activation) -> ActivationOut:
        return cls.model_validate(a, from_attributes=True)


class ActivationPage(BaseModel):
    items: list[ActivationOut]
    next_after: int | None


class PairIn(Strict):
    parent: Code = Field(min_length=1, max_length=300)
    child: Code = Field(min_length=1, max_length=300)


class PackingsIn(Strict):
    pairs: list[PairIn] = Field(min_length=1, max_length=100_000)
    line: str = Field(default="", max_length=100)
    at: dt.datetime | None = None


class CaseIn(Strict):
    """What a line controller sends for one case: the case label and what went into it."""

    parent: Code = Field(min_length=1, max_length=300)
    children: list[Code] = Field(min_length=1, max_length=10_000)
    line: str = Field(default="", max_length=100)
    at: dt.datetime | None = None


class PackOut(BaseModel):
    packed: int
    already_packed: int


class UnpackIn(Strict):
    parent: Code | None = Field(default=None, max_length=300)
    children: list[Code] = Field(default_factory=list, max_length=10_000)


class RepackIn(Strict):
    parent: Code = Field(min_length=1, max_length=300)
    children: list[Code] = Field(min_length=1, max_length=10_000)
    line: str = Field(default="", max_length=100)


class UnpackOut(BaseModel):
    unpacked: int


class DistributorIn(Strict):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    level: Literal[DISTRIBUTOR_LEVELS]  # type: ignore[valid-type]
    channel: Literal[CHANNELS] = "general"  # type: ignore[valid-type]
    parent_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    regions: list[str] = Field(default_factory=list, max_length=500)
    contact: str = Field(default="", max_length=200)


class DistributorPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    level: Literal[DISTRIBUTOR_LEVELS] | None = None  # type: ignore[valid-type]
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    parent_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    regions: list[str] | None = Field(default=None, max_length=500)
    contact: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class DistributorOut(BaseModel):
    id: int
    code: str
    name: str
    level: str
    channel: str
    parent_id: int | None
    regions: list[str]
    authorised_regions: list[str]
    contact: str
    active: bool
    created_at: dt.datetime


class DistributorPage(BaseModel):
    items: list[DistributorOut]
    next_after: int | None


class DistributorKeyIn(Strict):
    name: str = Field(min_length=1, max_length=100)


class DistributorKeyOut(BaseModel):
    id: int
    distributor_id: int
    name: str
    token: str = Field(description="shown once")


class RangeIn(Strict):
    batch_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    first_serial: int | None = Field(default=None, ge=1, le=MAX_SERIAL)
    last_serial: int | None = Field(default=None, ge=1, le=MAX_SERIAL)
    from_code: Code | None = Field(default=None, max_length=300)
    to_code: Code | None = Field(default=None, max_length=300)


class ShipmentIn(Strict):
    reference: str = Field(min_length=1, max_length=64, description="delivery note number")
    kind: Literal["shipment", "return"] = "shipment"
    from_distributor_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    to_distributor_id: int | None = Field(default=None, ge=1, le=MAX_INT)
    units: list[Code] = Field(default_factory=list, max_length=10_000)
    ranges: list[RangeIn] = Field(default_factory=list, max_length=1_000)
    note: str = Field(default="", max_length=500)
    at: dt.datetime | None = None


class LocationIn(Strict):
    """Where the receipt was scanned: the handheld's GPS, or a region the user picked."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=1_000_000)
    region: str | None = Field(default=None, max_length=80)


class ReceiveIn(Strict):
    location: LocationIn | None = None
    at: dt.datetime | None = None


class RangeOut(BaseModel):
    batch_id: int
    first_serial: int
    last_serial: int


class UnitOut(BaseModel):
    batch_id: int
    serial: int


class ShipmentOut(BaseModel):
    id: int
    reference: str
    kind: str
    status: str
    from_distributor_id: int | None
    to_distributor_id: int | None
    unit_count: int
    code_count: int
    shipped_at: dt.datetime
    shipped_by: str
    received_at: dt.datetime | None
    received_by: str | None
    receipt_region_check: str | None
    note: str

    @classmethod
    def of(cls, s: Shipment) -> ShipmentOut:
        return cls.model_validate(s, from_attributes=True)


class ShipmentDetailOut(ShipmentOut):
    units: list[UnitOut]
    ranges: list[RangeOut]


class ShipmentPage(BaseModel):
    items: list[ShipmentOut]
    next_after: int | None


class StepOut(BaseModel):
    kind: str
    at: dt.datetime
    text: str
    line: str
    site: str
    reason: str | None
    distributor_id: int | None
    distributor: str | None
    shipment_id: int | None
    reference: str | None
    parent: UnitOut | None


class CodeOut(BaseModel):
    """Everything traceability knows of one code (for the brand)."""

    batch_id: int
    serial: int
    active: bool
    deactivated_reason: str | None
    parent: UnitOut | None
    contents: int
    holder_id: int | None
    holder_name: str | None
    authorised_regions: list[str]
    journey: list[StepOut]
