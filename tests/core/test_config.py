from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import Settings


def test_embedded_default_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'yima.db').resolve()}"
    assert settings.resolved_task_mode == "thread"


def test_postgres_urls_use_psycopg3() -> None:
    settings = Settings(database_url="postgres://u@h/db")
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"


def test_a_broker_sends_tasks_to_celery() -> None:
    assert Settings(broker_url="redis://localhost/0").resolved_task_mode == "celery"


def test_production_refuses_sqlite_and_default_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production")
    text = str(info.value)
    assert "YIMA_DATABASE_URL must name PostgreSQL" in text
    assert "YIMA_SECRET_KEY" in text
    assert "YIMA_MASTER_KEY" in text


def test_production_accepts_a_complete_configuration() -> None:
    settings = Settings(
        env="production",
        database_url="postgresql://db/yima",
        secret_key="s" * 40,
        master_key=base64.b64encode(b"k" * 32).decode(),
    )
    assert settings.master_key_bytes == b"k" * 32


def test_a_short_master_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings(master_key=base64.b64encode(b"short").decode())


def test_embedded_master_key_is_created_once_and_private(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).master_key_bytes
    again = Settings(data_dir=tmp_path).master_key_bytes
    assert first == again and len(first) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0


def test_scan_host_must_be_a_bare_host() -> None:
    with pytest.raises(ValidationError, match="bare host"):
        Settings(scan_host="https://x.example.com/")
