"""Traceability tables: activation, packing, distributors, shipments.

Storage grows with what is moved, not with what is printed (DESIGN §4):

* activation is an event row plus the serial ranges it covers; the *current* state of every
  serial lives in an interval map (``trace_activation_spans``) whose spans never overlap, so a
  code's state is one index probe and a 10,000,000-code range is one row;
* packing is one row per parent/child pair, kept after unpacking (``unpacked_at``) so that a
  journey can say where an item was when its case was shipped; a partial unique index lets a
  code be in one parent at a time;
* a shipment names the units it carries (a pallet is one row, whatever it holds) or ranges of
  loose serials; what is inside a unit is read from packing at the time of shipping.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow
from core.models import BigId

DEACTIVATION_REASONS = (
    "misprint",
    "overprint",
    "damaged",
    "not_sold",
    "stolen",
    "recalled",
    "expired",
    "other",
)
DISTRIBUTOR_LEVELS = ("national", "provincial", "city", "dealer", "retailer")
CHANNELS = ("general", "retail", "wholesale", "ecommerce", "horeca", "export", "group_buying")
SHIPMENT_KINDS = ("shipment", "return")
SHIPMENT_STATUSES = ("in_transit", "received")


class Distributor(Base):
    """A party goods are shipped to: national / provincial distributor, dealer, retailer."""

    __tablename__ = "trace_distributors"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint(f"level IN {DISTRIBUTOR_LEVELS!r}", name="level"),
        CheckConstraint(f"channel IN {CHANNELS!r}", name="channel"),
        Index("ix_trace_distributors_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("trace_distributors.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16), default="general")
    contact: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DistributorRegion(Base):
    """One authorised sales region of a distributor: CN, CN-ZJ, CN-ZJ/杭州市 (regions.py)."""

    __tablename__ = "trace_distributor_regions"

    distributor_id: Mapped[int] = mapped_column(
        ForeignKey("trace_distributors.id", ondelete="CASCADE"), primary_key=True
    )
    region: Mapped[str] = mapped_column(String(80), primary_key=True)


class DistributorKey(Base):
    """An API key that acts for one distributor (a dealer's handheld, a warehouse phone)."""

    __tablename__ = "trace_distributor_keys"

    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("core_api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    distributor_id: Mapped[int] = mapped_column(
        ForeignKey("trace_distributors.id", ondelete="CASCADE"), index=True
    )


class Activation(Base):
    """One activation or deactivation at the line: by range, roll or case."""

    __tablename__ = "trace_activations"
    __table_args__ = (
        CheckConstraint("action IN ('activate', 'deactivate')", name="action"),
        CheckConstraint("scope IN ('range', 'roll', 'case')", name="scope"),
        Index("ix_trace_activations_tenant", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(8))
    batch_id: Mapped[int] = mapped_column(ForeignKey("codegen_batches.id"), index=True)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    code_count: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(500), default="")
    line: Mapped[str] = mapped_column(String(100), default="")
    site: Mapped[str] = mapped_column(String(200), default="")
    operator: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(200), default="")  # roll number, case code
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ActivationSpan(Base):
    """The current state of serials first..last of a batch: spans of one batch never overlap."""

    __tablename__ = "trace_activation_spans"
    __table_args__ = (CheckConstraint("first_serial <= last_serial", name="range"),)

    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    activation_id: Mapped[int] = mapped_column(
        ForeignKey("trace_activations.id", ondelete="CASCADE"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean)


class Packing(Base):
    """A child code packed into a parent code (item → case, case → pallet, any depth)."""

    __tablename__ = "trace_packings"
    __table_args__ = (
        CheckConstraint(
            "NOT (parent_batch_id = child_batch_id AND parent_serial = child_serial)",
            name="not_self",
        ),
        # A code is in one parent at a time: the database says so, not a check in Python.
        Index(
            "uq_trace_packings_current_child",
            "child_batch_id",
            "child_serial",
            unique=True,
            postgresql_where=text("unpacked_at IS NULL"),
            sqlite_where=text("unpacked_at IS NULL"),
        ),
        Index("ix_trace_packings_child", "child_batch_id", "child_serial", "packed_at"),
        Index("ix_trace_packings_parent", "parent_batch_id", "parent_serial", "packed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(Integer, index=True)
    parent_batch_id: Mapped[int] = mapped_column(BigInteger)
    parent_serial: Mapped[int] = mapped_column(BigInteger)
    child_batch_id: Mapped[int] = mapped_column(BigInteger)
    child_serial: Mapped[int] = mapped_column(BigInteger)
    packed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    unpacked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    line: Mapped[str] = mapped_column(String(100), default="")
    operator: Mapped[str] = mapped_column(String(200), default="")


class Shipment(Base):
    """Goods sent to a distributor (or returned by one), and their receipt."""

    __tablename__ = "trace_shipments"
    __table_args__ = (
        CheckConstraint(f"kind IN {SHIPMENT_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {SHIPMENT_STATUSES!r}", name="status"),
        UniqueConstraint("tenant_id", "reference"),
        Index("ix_trace_shipments_tenant", "tenant_id", "id"),
        Index("ix_trace_shipments_to", "to_distributor_id", "shipped_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("core_tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="shipment")
    reference: Mapped[str] = mapped_column(String(64))  # the delivery note number
    # None on either side is the brand itself (its factory or warehouse).
    from_distributor_id: Mapped[int | None] = mapped_column(ForeignKey("trace_distributors.id"))
    to_distributor_id: Mapped[int | None] = mapped_column(ForeignKey("trace_distributors.id"))
    status: Mapped[str] = mapped_column(String(16), default="in_transit")
    unit_count: Mapped[int] = mapped_column(Integer, default=0)
    code_count: Mapped[int] = mapped_column(BigInteger, default=0)
    shipped_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    shipped_by: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    received_by: Mapped[str | None] = mapped_column(String(200))
    # Where the receipt was scanned, checked against the receiver's regions.
    received_country: Mapped[str | None] = mapped_column(String(2))
    received_division: Mapped[str | None] = mapped_column(String(16))
    received_city: Mapped[str | None] = mapped_column(String(64))
    received_precision: Mapped[str | None] = mapped_column(String(16))
    received_source: Mapped[str | None] = mapped_column(String(8))
    receipt_region_check: Mapped[str | None] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(String(500), default="")


class ShipmentUnit(Base):
    """A code shipped as a unit: an item, or a case or pallet with everything packed inside."""

    __tablename__ = "trace_shipment_units"
    __table_args__ = (Index("ix_trace_shipment_units_code", "batch_id", "serial"),)

    shipment_id: Mapped[int] = mapped_column(
        ForeignKey("trace_shipments.id", ondelete="CASCADE"), primary_key=True
    )
    batch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class ShipmentRange(Base):
    """Loose serials shipped as a range (codes not packed into a unit)."""

    __tablename__ = "trace_shipment_ranges"
    __table_args__ = (
        CheckConstraint("first_serial <= last_serial", name="range"),
        Index("ix_trace_shipment_ranges_batch", "batch_id", "last_serial"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shipment_id: Mapped[int] = mapped_column(
        ForeignKey("trace_shipments.id", ondelete="CASCADE"), index=True
    )
    batch_id: Mapped[int] = mapped_column(BigInteger)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)


class TraceSettings(Base):
    """A brand's traceability settings (traceability/settings.py)."""

    __tablename__ = "trace_settings"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("core_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    require_activation: Mapped[bool] = mapped_column(Boolean, default=False)
    in_use: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
