"""dashboard rollups (issue 7): scans per hour, per day and per place, scanner sketches,
members per day, and the watermarks that keep them up to date

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _cursors(name: str) -> None:
    op.create_table(
        name,
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    _cursors("anti_fraud_rollup_cursors")
    op.create_table(
        "anti_fraud_scan_hours",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hour", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("diverted", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "hour",
            "batch_id",
            "verdict",
            "diverted",
            name=op.f("pk_anti_fraud_scan_hours"),
        ),
    )
    op.create_table(
        "anti_fraud_scan_days",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("diverted", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "day",
            "batch_id",
            "verdict",
            "diverted",
            name=op.f("pk_anti_fraud_scan_days"),
        ),
    )
    op.create_table(
        "anti_fraud_scan_places",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("province", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("diverted", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("distributor_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("scans", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "day",
            "batch_id",
            "country",
            "province",
            "verdict",
            "diverted",
            "distributor_id",
            name=op.f("pk_anti_fraud_scan_places"),
        ),
    )
    op.create_table(
        "anti_fraud_scanner_sketches",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("registers", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "day", "batch_id", name=op.f("pk_anti_fraud_scanner_sketches")
        ),
    )
    _cursors("members_rollup_cursors")
    op.create_table(
        "members_days",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_members", sa.Integer(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_spent", sa.BigInteger(), nullable=False),
        sa.Column("points_expired", sa.BigInteger(), nullable=False),
        sa.Column("points_adjusted", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", name=op.f("pk_members_days")),
    )
    # The rollups start from nothing: the first refresh counts every scan and entry there is.


def downgrade() -> None:
    for name in (
        "members_days",
        "members_rollup_cursors",
        "anti_fraud_scanner_sketches",
        "anti_fraud_scan_places",
        "anti_fraud_scan_days",
        "anti_fraud_scan_hours",
        "anti_fraud_rollup_cursors",
    ):
        op.drop_table(name)
