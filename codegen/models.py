"""Code generation tables: products, batches and print-file exports.

Issuing is stateless: a batch is one row however many codes it has (a token decodes to its
batch and serial), and an export is one row plus one row per chunk of work (a million codes
by default), never a row per code.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

URL_FORMS = ("short", "gs1", "gs1-digsig")
EXPORT_FORMATS = ("txt", "csv", "png-zip", "svg-zip", "pdf")
EXPORT_STATUSES = ("running", "assembling", "done", "failed")


class Product(Base):
    __tablename__ = "codegen_products"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sku"),
        UniqueConstraint("tenant_id", "gtin"),
        # GS1 Digital Link without a serial (/01/<gtin>) finds the product across brands.
        Index("ix_codegen_products_gtin", "gtin"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("core_tenants.id", ondelete="CASCADE"), index=True
    )
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    gtin: Mapped[str | None] = mapped_column(String(14))
    specification: Mapped[str] = mapped_column(String(500), default="")
    shelf_life_days: Mapped[int | None] = mapped_column(Integer)
    image_url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Batch(Base):
    """A production lot of one product: ``quantity`` codes with serials 1..quantity."""

    __tablename__ = "codegen_batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "product_id", "lot"),
        CheckConstraint("quantity BETWEEN 1 AND 100000000", name="quantity"),
        CheckConstraint(f"url_form IN {URL_FORMS!r}", name="url_form"),
        CheckConstraint("status IN ('active', 'revoked')", name="status"),
        Index("ix_codegen_batches_tenant_created", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("codegen_products.id"), index=True)
    lot: Mapped[str] = mapped_column(String(20))
    production_date: Mapped[dt.date | None] = mapped_column(Date)
    factory: Mapped[str] = mapped_column(String(200), default="")
    line: Mapped[str] = mapped_column(String(100), default="")
    quantity: Mapped[int] = mapped_column(Integer)
    url_form: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[int] = mapped_column(ForeignKey("core_code_keys.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    revoked_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Export(Base):
    """A print file being generated (a job split into chunks) or ready to download."""

    __tablename__ = "codegen_exports"
    __table_args__ = (
        CheckConstraint(f"format IN {EXPORT_FORMATS!r}", name="format"),
        CheckConstraint(f"status IN {EXPORT_STATUSES!r}", name="status"),
        CheckConstraint("chunks_done BETWEEN 0 AND chunks_total", name="chunks"),
        Index("ix_codegen_exports_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("codegen_batches.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="running")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The pack password, wrapped by the master key until the file is sealed, then erased.
    wrapped_password: Mapped[bytes | None] = mapped_column(LargeBinary)
    file_name: Mapped[str | None] = mapped_column(String(200))
    # Where the sealed file lies, relative to the export directory (unique per attempt).
    storage_path: Mapped[str | None] = mapped_column(String(300))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ExportChunk(Base):
    """One idempotent piece of an export: serials first..last written to its own part file."""

    __tablename__ = "codegen_export_chunks"
    __table_args__ = (CheckConstraint("status IN ('pending', 'done')", name="status"),)

    export_id: Mapped[int] = mapped_column(
        ForeignKey("codegen_exports.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
