"""Settings: the only place that reads the environment.

Every knob is a ``YIMA_*`` environment variable read once into one typed, validated
:class:`Settings` object. ``create_app(settings=...)`` and the CLI accept an override so tests
never touch ``os.environ``. The embedded default (no variables at all) is a SQLite file under
``./var``, no Redis and tasks run in-process; ``YIMA_ENV=production`` refuses that.
"""

from __future__ import annotations

import base64
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "yima-development-secret-change-me"
MAX_BATCH_QUANTITY = 100_000_000


class Settings(BaseSettings):
    """Typed configuration of one Yima process."""

    model_config = SettingsConfigDict(env_prefix="YIMA_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = Field(
        default=None, description="Celery broker (redis:// or amqp://); none runs tasks in-process"
    )
    secret_key: str = DEFAULT_SECRET
    master_key: str | None = Field(
        default=None, description="base64 of 32 random bytes; wraps every tenant key"
    )
    scan_host: str = "yima.example.com"
    export_chunk_size: int = Field(default=1_000_000, ge=1_000, le=10_000_000)
    keyring_refresh_seconds: float = Field(default=30.0, ge=0.0)
    task_mode: Literal["auto", "celery", "thread", "inline"] = "auto"
    # Floods of codes that fail verification: per client, per minute, then 429 / a calm page.
    invalid_scans_per_ip_per_minute: int = Field(default=30, ge=1, le=1_000_000)
    invalid_scans_per_device_per_minute: int = Field(default=20, ge=1, le=1_000_000)
    # Member sign-in by phone: who sends the one-time codes, how long they live, how often.
    # Cash prizes (red envelopes): who pays them, as which merchant.
    payout_provider: Literal["recording"] = Field(
        default="recording",
        description="'recording': envelopes are recorded in <data_dir>/payouts.sqlite, not paid",
    )
    payout_merchant_id: str = Field(default="1900000109", pattern=r"^[0-9]{10}$")
    sms_sender: Literal["log"] = Field(
        default="log", description="'log': codes go to the 'yima.sms' log (development)"
    )
    otp_ttl_seconds: int = Field(default=300, ge=60, le=3600)
    otp_max_attempts: int = Field(default=5, ge=1, le=20)
    otp_per_phone_per_minute: int = Field(default=1, ge=1, le=1_000)
    otp_per_phone_per_hour: int = Field(default=5, ge=1, le=10_000)
    otp_per_phone_per_day: int = Field(default=10, ge=1, le=100_000)
    otp_per_ip_per_hour: int = Field(default=20, ge=1, le=1_000_000)
    otp_checks_per_phone_per_hour: int = Field(default=20, ge=1, le=100_000)
    # E-mail (alert notifications): none sends to the 'yima.mail' log (core/mail.py).
    smtp_url: str | None = Field(
        default=None, description="smtp://user:password@host:587 (or smtps://, smtp+starttls://)"
    )
    mail_from: str = "Yima <alerts@yima.example.com>"

    # Console sign-in: sessions end after an idle spell or at an absolute limit; an e-mail is
    # locked for a while after too many failed sign-ins (docs/console-access.md).
    console_session_idle_minutes: int = Field(default=60, ge=5, le=24 * 60)
    console_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    sign_in_max_failures: int = Field(default=5, ge=3, le=100)
    sign_in_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)

    @field_validator("scan_host")
    @classmethod
    def _host(cls, value: str) -> str:
        host = value.strip().lower()
        if not host or "/" in host or " " in host:
            raise ValueError("scan_host must be a bare host name such as yima.example.com")
        return host

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.env == "production":
            problems = []
            if self.resolved_database_url.startswith("sqlite"):
                problems.append("YIMA_DATABASE_URL must name PostgreSQL in production")
            if self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                problems.append("YIMA_SECRET_KEY must be set to a random value of 32+ characters")
            if not self.master_key:
                problems.append("YIMA_MASTER_KEY must be set in production")
            if problems:
                raise ValueError("; ".join(problems))
        if self.master_key is not None:
            _decode_master_key(self.master_key)
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the common postgres:// spellings and use psycopg 3.
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.data_dir / 'yima.db').resolve()}"

    @property
    def resolved_task_mode(self) -> Literal["celery", "thread", "inline"]:
        if self.task_mode != "auto":
            return self.task_mode
        return "celery" if self.broker_url else "thread"

    @property
    def export_dir(self) -> Path:
        return self.data_dir / "exports"

    @cached_property
    def master_key_bytes(self) -> bytes:
        """The 32-byte master key; on the embedded default a key file is created once."""
        if self.master_key:
            return _decode_master_key(self.master_key)
        path = self.data_dir / "master.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
        return _decode_master_key(path.read_text().strip())


def _decode_master_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("YIMA_MASTER_KEY must be base64") from exc
    if len(raw) != 32:
        raise ValueError("YIMA_MASTER_KEY must decode to 32 bytes")
    return raw


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides) into a validated Settings."""
    return Settings(**overrides)  # type: ignore[arg-type]
