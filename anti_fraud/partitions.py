"""Monthly partitions of ``anti_fraud_scans`` on PostgreSQL.

The table is ``PARTITION BY RANGE (scanned_at)`` with one partition per calendar month (UTC)
and a default partition, so a scan is never refused for want of a partition. A daily task creates
the months ahead; old months can be detached or dropped as the retention policy says.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.engine import Connection


def partition_name(year: int, month: int) -> str:
    return f"anti_fraud_scans_y{year:04d}m{month:02d}"


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=dt.UTC)


def ensure_partitions(
    conn: Connection, *, around: dt.datetime, months_before: int = 1, months_ahead: int = 3
) -> list[str]:
    """Create the monthly partitions from ``months_before`` to ``months_ahead`` around a date;
    returns the names created. Does nothing on SQLite (a plain table)."""
    if conn.dialect.name != "postgresql":
        return []
    created = []
    for offset in range(-months_before, months_ahead + 1):
        start = _month_start(around.year, around.month + offset)
        end = _month_start(start.year, start.month + 1)
        name = partition_name(start.year, start.month)
        exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
        if exists:
            continue
        conn.execute(
            text(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF anti_fraud_scans '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        created.append(name)
    return created


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic filter: the monthly partitions (and their indexes) are not in the models."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (reflected and compare_to is None and str(table).startswith("anti_fraud_scans_"))
