"""campaign rollups (issue 7): rewards per campaign, local day, status, outcome and prize;
the members each draw engaged and the winners; the watermark that keeps them up to date

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 21:10:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    cursors = op.create_table(
        "campaigns_rollup_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_campaigns_rollup_cursors")),
    )
    # The one watermark exists from the start: readers lock it (campaigns/rollups.py).
    op.bulk_insert(
        cursors,
        [{"name": "rewards", "last_id": 0, "gaps": [], "updated_at": dt.datetime.now(dt.UTC)}],
    )
    op.create_table(
        "campaigns_reward_days",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("downgrade", sa.String(length=16), nullable=False),
        sa.Column("prize_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rewards", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("valued", sa.BigInteger(), nullable=False),
        sa.Column("value_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "campaign_id",
            "day",
            "status",
            "outcome",
            "downgrade",
            "prize_id",
            name=op.f("pk_campaigns_reward_days"),
        ),
    )
    op.create_table(
        "campaigns_reward_members",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("member_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("won", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint(
            "campaign_id", "member_id", name=op.f("pk_campaigns_reward_members")
        ),
    )
    op.create_table(
        "campaigns_reward_totals",
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("engaged", sa.BigInteger(), nullable=False),
        sa.Column("winners", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaigns_reward_totals")),
    )


def downgrade() -> None:
    op.drop_table("campaigns_reward_totals")
    op.drop_table("campaigns_reward_members")
    op.drop_table("campaigns_reward_days")
    op.drop_table("campaigns_rollup_cursors")
