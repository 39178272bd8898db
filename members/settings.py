"""A brand's member programme: what a scan earns, how long points last, engagement rewards.

Stored as one JSON row per tenant (``members_settings``), validated as a whole on save by
:class:`Programme` (pydantic), read at most every 30 s per process like the other per-brand
settings; a change made in another process takes effect within that time.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.db import after_commit, insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from members.ledger import Expiry
from members.models import MemberSettings

SETTINGS_TTL = 30.0
_cache: dict[tuple[int, int], tuple[float, Programme]] = {}
_lock = threading.Lock()


class Programme(BaseModel):
    """The brand's programme; every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scan_points: int = Field(10, ge=0, le=1_000_000, description="points per rewarded scan")
    growth_per_scan: int = Field(10, ge=0, le=1_000_000, description="成长值 per rewarded scan")
    points_expiry: str = Field("365d", description="'<N>d', 'end_of_month', 'end_of_year', 'never'")
    pending_hours: int = Field(24, ge=0, le=24 * 90, description="scan points pending this long")
    checkin_points: int = Field(1, ge=0, le=100_000, description="points per daily check-in")
    checkin_streak_bonus: dict[int, int] = Field(
        default_factory=lambda: {7: 20, 30: 100},
        description="extra points on reaching a streak of N consecutive days",
    )
    birthday_points: int = Field(100, ge=0, le=1_000_000)
    referral_points: tuple[int, int] = Field(
        (50, 20), description="points to the referrer and to the referrer's referrer"
    )
    tier_review_days: int = Field(365, ge=1, le=3660, description="tier qualification window")
    downgrade: Literal["one_step", "to_qualified", "never"] = "one_step"
    sleeping_days: int = Field(90, ge=1, le=3660, description="no scan for this long: sleeping")

    @field_validator("points_expiry")
    @classmethod
    def _expiry(cls, value: str) -> str:
        try:
            Expiry.parse(value)
        except ValidationFailedError as exc:
            raise ValueError(exc.detail) from None
        return value

    @field_validator("checkin_streak_bonus")
    @classmethod
    def _bonus(cls, value: dict[int, int]) -> dict[int, int]:
        if len(value) > 20 or any(
            not 1 <= k <= 3660 or not 0 <= v <= 1_000_000 for k, v in value.items()
        ):
            raise ValueError("at most 20 streaks of 1-3660 days, each 0-1,000,000 points")
        return value

    @field_validator("referral_points")
    @classmethod
    def _referral(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(not 0 <= v <= 1_000_000 for v in value):
            raise ValueError("two amounts of 0-1,000,000 points")
        return value

    @property
    def expiry(self) -> Expiry:
        return Expiry.parse(self.points_expiry)

    @property
    def pending_for(self) -> dt.timedelta:
        return dt.timedelta(hours=self.pending_hours)


def load_programme(session: Any, tenant_id: int) -> Programme:
    """The brand's programme read now (scheduled jobs, which have no process-wide cache)."""
    row = session.get(MemberSettings, tenant_id)
    return Programme.model_validate(row.values if row is not None else {})


def get_programme(runtime: Runtime, session: Any, tenant_id: int) -> Programme:
    """The brand's programme (cached per process for ``SETTINGS_TTL`` seconds)."""
    key = (runtime.key, tenant_id)
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < SETTINGS_TTL:
        return hit[1]
    programme = load_programme(session, tenant_id)
    with _lock:
        _cache[key] = (time.monotonic(), programme)
    return programme


def _forget(runtime: Runtime, tenant_id: int) -> None:
    with _lock:
        _cache.pop((runtime.key, tenant_id), None)


def update_programme(
    session: Any, runtime: Runtime, *, tenant_id: int, changes: dict[str, Any]
) -> Programme:
    """Merge ``changes`` into the brand's programme; the whole is validated (422 names fields)."""
    current = get_programme(runtime, session, tenant_id).model_dump()
    try:
        programme = Programme.model_validate({**current, **changes})
    except ValidationError as exc:
        raise ValidationFailedError(
            "the programme is not valid",
            errors={".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()},
        ) from None
    insert_ignore(
        session,
        MemberSettings.__table__,
        {"tenant_id": tenant_id, "values": {}, "updated_at": utcnow()},
    )
    row = session.get(MemberSettings, tenant_id, populate_existing=True)
    assert row is not None
    row.values = programme.model_dump(mode="json")
    row.updated_at = utcnow()
    session.flush()
    # Forgotten once committed: a rolled-back change is never cached.
    after_commit(session, lambda: _forget(runtime, tenant_id))
    return programme
