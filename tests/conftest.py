"""Shared fixtures: every database test runs on SQLite and, when ``YIMA_TEST_DATABASE_URL`` is
set (``.ci/run`` sets it), on PostgreSQL too; ``YIMA_TEST_REDIS_URL`` adds Redis.

Each backend gets a fresh schema migrated once per run (PostgreSQL: a private schema
``yima_test`` so the database's other contents are untouched); after each test every table is
emptied, so tests see real commits (export jobs run their own units of work) and still start clean.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from core.config import Settings
from core.db import Base
from core.runtime import Runtime, set_runtime

PG_URL = os.environ.get("YIMA_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("YIMA_TEST_REDIS_URL")
PG_SCHEMA = f"yima_test_{os.getpid()}"
MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pg_url_with_schema(url: str, schema: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def pytest_report_header(config: Any) -> list[str]:
    return [
        "yima backends: "
        + ", ".join(BACKENDS)
        + (" + redis" if REDIS_URL else " (no YIMA_TEST_REDIS_URL: Redis tests use no Redis)"),
    ]


@pytest.fixture(scope="session")
def _database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'yima.db'}"}
    admin = None
    if PG_URL:
        admin = create_engine(
            pg_url_with_schema(PG_URL, "public"), isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )  # survives the PostgreSQL restart test
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
        urls["postgresql"] = pg_url_with_schema(PG_URL, PG_SCHEMA)
    from core.runtime import upgrade_database

    for url in urls.values():
        upgrade_database(url)
    yield urls
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
        admin.dispose()


def make_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": url,
        "data_dir": data_dir,
        "master_key": MASTER_KEY,
        "task_mode": "inline",
        "scan_host": "yima.example.com",
        "export_chunk_size": 1000,
    }
    values.update(overrides)
    return Settings(**values)


def empty_all_tables(runtime: Runtime) -> None:
    with runtime.db.engine.begin() as conn:
        if runtime.db.engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runtime(backend: str, _database_urls: dict[str, str], tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on one backend, installed as this process's; tables emptied afterwards."""
    rt = Runtime(make_settings(_database_urls[backend], tmp_path / "data"))
    set_runtime(rt)
    try:
        yield rt
    finally:
        set_runtime(None)
        rt.close()  # background writers finish first: nothing lands after the tables empty
        empty_all_tables(rt)
        rt.db.dispose()


@pytest.fixture
def database_url(backend: str, _database_urls: dict[str, str]) -> str:
    return _database_urls[backend]
