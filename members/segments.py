"""What tags and RFM segments share: their errors, the segments' labels, the brand's calendar
and the one definition of a *rewarded scan*.

The services themselves live in :mod:`members.tags` (manual and automatic tags) and
:mod:`members.rfm` (RFM scores, the 8 segments, sleeping members, the console's queries and the
CSV export).

A rewarded scan is a ledger entry of kind ``earn`` whose business key starts with ``scan:`` (one
per code, ever: :func:`members.services.scan_key`). A scan whose points were clawed back
(``reverse:scan:...``, fraud) is netted out where scans are counted. ``members`` may not read
another domain's tables (the scans themselves belong to ``scan_service`` / ``anti_fraud``), and
a scan that earned nothing (a code someone else had already claimed) is not this member's
purchase: the ledger is the one source that says both who bought and what it was worth.

Days are the brand's local calendar days (``core.models.Tenant.timezone``): "the last N days"
are N local days ending today, and "N days since" counts local midnights passed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import Session

from core.services import tenant_timezone
from members.models import RFM_SEGMENTS, PointsEntry

# --- labels -------------------------------------------------------------------------------------

SEGMENT_LABELS: dict[str, tuple[str, str]] = {
    "important_value": ("重要价值", "Important value"),
    "important_keep": ("重要保持", "Important to keep"),
    "important_develop": ("重要发展", "Important to develop"),
    "important_retain": ("重要挽留", "Important to win back"),
    "general_value": ("一般价值", "General value"),
    "general_keep": ("一般保持", "General to keep"),
    "general_develop": ("一般发展", "General to develop"),
    "general_retain": ("一般挽留", "General to win back"),
}
assert tuple(SEGMENT_LABELS) == RFM_SEGMENTS


# --- the brand's calendar -------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """``now`` seen from the brand's timezone."""

    now: dt.datetime
    timezone: str

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(ZoneInfo(self.timezone)).date()

    def midnight(self, day: dt.date) -> dt.datetime:
        """The UTC instant the local ``day`` begins."""
        local = dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(self.timezone))
        return local.astimezone(dt.UTC)

    def since(self, days: int) -> dt.datetime:
        """The start of "the last ``days`` days" (today included): ``t >= since(n)`` is within
        them, and ``t < since(n)`` is at least ``n`` local days ago."""
        return self.midnight(self.today - dt.timedelta(days=days - 1))

    def years_ago(self, years: int) -> dt.date:
        """Today's date ``years`` years back (29 February becomes 28 February)."""
        today = self.today
        try:
            return today.replace(year=today.year - years)
        except ValueError:
            return today.replace(year=today.year - years, day=28)


def calendar_of(session: Session, tenant_id: int, now: dt.datetime) -> Calendar:
    return Calendar(now, tenant_timezone(session, tenant_id))


# --- rewarded scans -----------------------------------------------------------------------------

SCAN_KEY_PREFIX = "scan:"
REVERSED_SCAN_PREFIX = "reverse:scan:"


def scan_entries(tenant_id: int) -> ColumnElement[bool]:
    """Ledger entries that are rewarded scans, or the clawback of one."""
    e = PointsEntry
    return and_(
        e.tenant_id == tenant_id,
        or_(
            and_(e.kind == "earn", e.business_key.like(SCAN_KEY_PREFIX + "%")),
            and_(e.kind == "reverse", e.business_key.like(REVERSED_SCAN_PREFIX + "%")),
        ),
    )
