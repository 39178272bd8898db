"""Request and response shapes of the code generation API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codegen.models import Batch, Export, Product


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ProductIn(Strict):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    gtin: str | None = Field(default=None, max_length=14, description="GTIN-8/12/13/14")
    specification: str = Field(default="", max_length=500)
    shelf_life_days: int | None = Field(default=None, ge=1, le=36500)
    image_url: str | None = Field(default=None, max_length=1000)


class ProductOut(BaseModel):
    id: int
    sku: str
    name: str
    gtin: str | None
    specification: str
    shelf_life_days: int | None
    image_url: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls.model_validate(product, from_attributes=True)


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_after: int | None


class BatchIn(Strict):
    product_id: int = Field(ge=1, le=2**31 - 1)
    lot: str = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9._-]+$")
    quantity: int = Field(ge=1, le=100_000_000)
    url_form: Literal["short", "gs1", "gs1-digsig"] = "short"
    production_date: dt.date | None = None
    factory: str = Field(default="", max_length=200)
    line: str = Field(default="", max_length=100)


class BatchOut(BaseModel):
    id: int
    product_id: int
    lot: str
    quantity: int
    url_form: str
    production_date: dt.date | None
    factory: str
    line: str
    key_id: int
    status: str
    created_at: dt.datetime

    @classmethod
    def of(cls, batch: Batch) -> BatchOut:
        return cls.model_validate(batch, from_attributes=True)


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_after: int | None


class ExportIn(Strict):
    format: Literal["txt", "csv", "png-zip", "svg-zip", "pdf"]
    first_serial: int | None = Field(default=None, ge=1, le=100_000_000)
    last_serial: int | None = Field(default=None, ge=1, le=100_000_000)
    password: str | None = Field(default=None, min_length=8, max_length=128)
    options: dict[str, Any] = Field(default_factory=dict)


class ExportOut(BaseModel):
    id: int
    batch_id: int
    format: str
    status: str
    first_serial: int
    last_serial: int
    chunks_done: int
    chunks_total: int
    encrypted: bool
    file_name: str | None
    file_size: int | None
    sha256: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, export: Export) -> ExportOut:
        return cls.model_validate(export, from_attributes=True)


class ExportPage(BaseModel):
    items: list[ExportOut]
    next_after: int | None


class VerifyIn(Strict):
    code: str = Field(min_length=1, max_length=2048, description="token, short URL or GS1 DL")


class VerifyOut(BaseModel):
    valid: bool
    reason: str | None = None
    format: str | None = None
    tenant_id: int | None = None
    batch_id: int | None = None
    serial: int | None = None
    key_id: int | None = None


class KeyOut(BaseModel):
    id: int
    status: str
    created_at: dt.datetime
    retired_at: dt.datetime | None
    retired_reason: str | None


class KeyList(BaseModel):
    items: list[KeyOut]


class KeyRetireIn(Strict):
    reason: str = Field(min_length=1, max_length=200)


class KeyRetireOut(BaseModel):
    key: KeyOut
    batches_revoked: int
