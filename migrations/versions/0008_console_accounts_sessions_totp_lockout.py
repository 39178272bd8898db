"""console accounts sessions totp lockout (issue 7)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_sign_in_throttles',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenants.id'], name=op.f('fk_core_sign_in_throttles_tenant_id_core_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'email_hash', name=op.f('pk_core_sign_in_throttles'))
    )
    op.create_table('core_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=8), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    sa.CheckConstraint("stage IN ('totp', 'active')", name=op.f('ck_core_sessions_stage')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenants.id'], name=op.f('fk_core_sessions_tenant_id_core_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_users.id'], name=op.f('fk_core_sessions_user_id_core_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_core_sessions_token_hash'))
    )
    with op.batch_alter_table('core_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_sessions_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('core_audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_core_audit_log_tenant_action', ['tenant_id', 'action', 'id'], unique=False)

    with op.batch_alter_table('core_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('distributor_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('password_changed_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_sign_in_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('core_users', schema=None) as batch_op:
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('last_sign_in_at')
        batch_op.drop_column('password_changed_at')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('distributor_id')

    with op.batch_alter_table('core_audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_core_audit_log_tenant_action')

    with op.batch_alter_table('core_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_sessions_user_id'))

    op.drop_table('core_sessions')
    op.drop_table('core_sign_in_throttles')
