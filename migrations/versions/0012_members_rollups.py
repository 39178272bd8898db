"""members dashboard rollups (issue 7): RFM summaries and segment counts written by the RFM
computation, live members per tier kept by the rollup task, points held and expiring soon

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "members_rfm_summaries",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("computed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("churn_before", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("not_scored", sa.Integer(), nullable=False),
        sa.Column("sleeping", sa.Integer(), nullable=False),
        sa.Column("churn_risk", sa.Integer(), nullable=False),
        sa.Column("sum_r", sa.BigInteger(), nullable=False),
        sa.Column("sum_f", sa.BigInteger(), nullable=False),
        sa.Column("sum_m", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_members_rfm_summaries")),
    )
    op.create_table(
        "members_segment_counts",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segment", sa.String(length=24), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "segment", name=op.f("pk_members_segment_counts")),
    )
    op.create_table(
        "members_tier_counts",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tier_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "tier_key", name=op.f("pk_members_tier_counts")),
    )
    op.create_table(
        "members_points_held",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("active", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("expiring_points", sa.BigInteger(), nullable=False),
        sa.Column("expiring_members", sa.Integer(), nullable=False),
        sa.Column("within_days", sa.Integer(), nullable=False),
        sa.Column("counted_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_members_points_held")),
    )
    # Tier counts start from nothing (their own watermarks at 0: the first refresh counts every
    # member and tier move there is); RFM summaries appear with the next computation.


def downgrade() -> None:
    for name in (
        "members_points_held",
        "members_tier_counts",
        "members_segment_counts",
        "members_rfm_summaries",
    ):
        op.drop_table(name)
