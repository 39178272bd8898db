from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db import Base
from core.runtime import Runtime


def test_migrations_build_exactly_the_models(runtime: Runtime) -> None:
    """The migrated schema (SQLite and PostgreSQL) has no difference from the models."""
    with runtime.db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(runtime: Runtime) -> None:
    runtime.migrate()
    runtime.migrate()
    runtime.db.ping()
