"""The process-wide runtime: settings, database and the optional Redis client.

Web apps, Celery tasks and CLI commands all reach the database through one :class:`Runtime`,
built once per process from :class:`~core.config.Settings`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings, load_settings
from core.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


_serials = itertools.count(1)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # What per-process caches key on: unlike id(), never reused by a later runtime.
        self.key = next(_serials)
        self._closers: list[Callable[[], None]] = []
        self.db = Database(settings.resolved_database_url)
        self._redis: Any = None
        self._redis_lock = threading.Lock()

    @property
    def redis(self) -> Any:
        """A Redis client when ``YIMA_REDIS_URL`` is set, else None (in-process fallbacks)."""
        if not self.settings.redis_url:
            return None
        with self._redis_lock:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(
                    self.settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
                )
            return self._redis

    def migrate(self) -> None:
        """Bring the database schema to the newest migration."""
        upgrade_database(self.settings.resolved_database_url)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the runtime closes, before its database goes (background
        writers finish their work and stop)."""
        self._closers.append(callback)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for callback in reversed(closers):
            try:
                callback()
            except Exception:
                logging.getLogger("yima").exception("closing %r failed", callback)
        self.db.dispose()
        if self._redis is not None:
            self._redis.close()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    from alembic import command

    from core.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            connection.commit()
    finally:
        engine.dispose()


_current: Runtime | None = None
_current_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime(load_settings())
        return _current


def close_runtime() -> None:
    """Close this process's runtime, if it has one (a server process stopping)."""
    global _current
    with _current_lock:
        runtime, _current = _current, None
    if runtime is not None:
        runtime.close()


def set_runtime(runtime: Runtime | None) -> None:
    """Install ``runtime`` as this process's (apps and tests built with explicit settings)."""
    global _current
    with _current_lock:
        _current = runtime
