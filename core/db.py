"""Database engine, sessions and the unit of work.

One unit of work per request, task or CLI command: :meth:`Database.unit_of_work` yields a
session, commits when the block ends cleanly and rolls back otherwise. Services only flush.
Work that must follow a commit (sending a Celery task) is queued with :func:`after_commit`
and runs only once the data it refers to is durable.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    MetaData,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.group_commit import GroupCommit

log = logging.getLogger("yima.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use utcnow()")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 40)
        kwargs.setdefault("pool_timeout", 60)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when a transaction begins.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL is a property of the file: switch once (switching takes a lock).
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: concurrent writers queue on the busy
            # timeout instead of failing with "database is locked" on lock upgrade. Read-only
            # work (Database.read_only) begins deferred and never waits for a writer (WAL).
            if conn.get_execution_options().get("yima_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No ping per checkout (it costs a round trip on every request): a connection found dead is
    # reported as a 503 and invalidates the pool, which then reconnects.
    kwargs.setdefault("pool_pre_ping", False)
    # A sync worker needs one or two connections; threads beyond that queue for one rather
    # than exhaust the server's max_connections.
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


_AFTER_COMMIT_KEY = "yima.after_commit"


def flush_unique(session: Session) -> IntegrityError | None:
    """Flush inside a savepoint: the unique-key violation a concurrent writer caused (the
    transaction goes on), or None. The caller turns it into a 4xx naming the field."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        return exc
    return None


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` after ``session``'s transaction commits; dropped on rollback."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy fires after_commit on releasing a SAVEPOINT too: the transaction goes on,
        # and what waits for its commit must go on waiting.
        return
    callbacks = session.info.pop(_AFTER_COMMIT_KEY, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The transaction is committed: a failed follow-up (a broker hiccup) must not undo
            # the answer. Follow-ups are resumable (see codegen.exports.resume_exports).
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, _previous: Any) -> None:
    if session.in_transaction():
        return
    session.info.pop(_AFTER_COMMIT_KEY, None)


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # Units of work that threads of this process have ready together share a commit
        # (core/group_commit.py): the scan service runs each scan through it.
        self.group_commit = GroupCommit(self)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session whose work is committed at the end of the block, or rolled back."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        """A session for reads only, which never waits on (or blocks) a writer."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(yima_read_only=True)
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
            finally:
                session.close()
                conn.rollback()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(yima_read_only=True).execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def dialect_insert(session: Session) -> Any:
    """The ``insert`` of the session's dialect: it has ON CONFLICT (SQLite and PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def insert_ignore(session: Session, table: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; True when a row was added.

    The database's unique key decides, so concurrent callers add exactly one row.
    """
    stmt = dialect_insert(session)(table).values(**values).on_conflict_do_nothing()
    # RETURNING says whether a row went in (rowcount is -1 when the driver returns rows).
    return session.execute(stmt.returning(literal_column("1"))).first() is not None


# --- the driver itself, for the hot paths -------------------------------------------------------
#
# A few statements run on every scan or on every row of a bulk job. On PostgreSQL they go to
# psycopg directly, prepared on the server, inside the session's transaction: SQLAlchemy's
# execution and result machinery cost more CPU than those statements (bench/bench_scan.py,
# bench/bench_trace.py, bench/bench_members.py). Elsewhere everything goes through SQLAlchemy.

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def pyformat(clause: Any) -> str:
    """A ``text()`` statement (or its ``.columns()`` form) with psycopg's ``%(name)s`` markers."""
    return _pyformat(getattr(clause, "element", clause).text)


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    # Converted once per statement: the regex cost 0.07 ms a call on every hot-path statement.
    return _NAMED.sub(r"%(\1)s", sql)


_DRIVER_KEY = "yima.driver"


def driver_cursor(session: Session) -> Any:
    """A psycopg cursor of its own on the session's connection (its transaction): PostgreSQL
    only."""
    return _driver(session)[1].cursor()


def _driver(session: Session) -> tuple[Any, Any, Any]:
    """(transaction, driver connection, cursor) of the session's transaction.

    Kept for the transaction: asking SQLAlchemy for the connection (``session.connection()``)
    and making a cursor cost 0.1 ms of CPU a statement together, a sixth of a draw's Python
    (bench/bench_draws.py). A new transaction may hold another pooled connection, so the copy
    is checked against it. The kept cursor serves :func:`fetch_all` and :func:`execute` only,
    which read their rows at once."""
    transaction = session.get_transaction()
    kept: tuple[Any, Any, Any] | None = session.info.get(_DRIVER_KEY)
    if kept is None or transaction is None or kept[0] is not transaction:
        driver = session.connection().connection.driver_connection
        assert driver is not None
        kept = session.info[_DRIVER_KEY] = (session.get_transaction(), driver, driver.cursor())
    return kept


def fetch_all(session: Session, clause: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of a text statement: on PostgreSQL prepared through psycopg, times in UTC as
    ``UTCDateTime`` gives them; elsewhere through the session."""
    if session.get_bind().dialect.name != "postgresql":
        return [tuple(row) for row in session.execute(clause, params).all()]
    cursor = _driver(session)[2]
    cursor.execute(pyformat(clause), params, prepare=True)
    return [
        tuple(v.astimezone(dt.UTC) if isinstance(v, dt.datetime) else v for v in row)
        for row in cursor.fetchall()
    ]


def execute(session: Session, clause: Any, params: dict[str, Any]) -> None:
    """Run a text statement with no result: on PostgreSQL prepared through psycopg, elsewhere
    through the session (:func:`fetch_all` for statements that return rows)."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(clause, params)
        return
    _driver(session)[2].execute(pyformat(clause), params, prepare=True)
