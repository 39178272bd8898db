from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from anti_fraud.partitions import include_object
from core.db import Base
from core.runtime import Runtime
from tests.conftest import PG_URL


def test_migrations_build_exactly_the_models(runtime: Runtime) -> None:
    """The migrated schema (SQLite and PostgreSQL) has no difference from the models."""
    with runtime.db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(runtime: Runtime) -> None:
    runtime.migrate()
    runtime.migrate()
    runtime.db.ping()


@pytest.mark.skipif(not PG_URL, reason="partitions exist on PostgreSQL only")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_scans_are_partitioned_by_month_on_postgresql(runtime: Runtime) -> None:
    from sqlalchemy import text

    from anti_fraud.partitions import ensure_partitions, partition_name
    from core.db import utcnow

    with runtime.db.engine.begin() as conn:
        now = utcnow()
        ensure_partitions(conn, around=now, months_before=0, months_ahead=6)
        names = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'anti_fraud_scans'"
                )
            ).scalars()
        )
    assert partition_name(now.year, now.month) in names
    assert "anti_fraud_scans_default" in names and len(names) >= 8
