"""alert rules and the notification outbox (e-mail, signed webhooks)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anti_fraud_alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("min_count", sa.Integer(), nullable=False),
        sa.Column("min_score", sa.Float(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=1000), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'webhook')", name=op.f("ck_anti_fraud_alert_rules_channel")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenants.id"],
            name=op.f("fk_anti_fraud_alert_rules_tenant_id_core_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anti_fraud_alert_rules")),
        sa.UniqueConstraint(
            "tenant_id", "name", name=op.f("uq_anti_fraud_alert_rules_tenant_id_name")
        ),
    )
    op.create_table(
        "anti_fraud_notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'retry', 'sent', 'failed')",
            name=op.f("ck_anti_fraud_notifications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["anti_fraud_alert_rules.id"],
            name=op.f("fk_anti_fraud_notifications_rule_id_anti_fraud_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenants.id"],
            name=op.f("fk_anti_fraud_notifications_tenant_id_core_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anti_fraud_notifications")),
        sa.UniqueConstraint(
            "rule_id", "event_key", name=op.f("uq_anti_fraud_notifications_rule_id_event_key")
        ),
    )
    with op.batch_alter_table("anti_fraud_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_anti_fraud_notifications_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_anti_fraud_notifications_tenant", ["tenant_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("anti_fraud_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_anti_fraud_notifications_tenant")
        batch_op.drop_index("ix_anti_fraud_notifications_due")
    op.drop_table("anti_fraud_notifications")
    op.drop_table("anti_fraud_alert_rules")
