"""RFM scores, the 8 classic segments and sleeping members; the console's queries and exports.

Source: each member's rewarded scans (see :mod:`members.segments`): every ledger ``earn`` entry
under a ``scan:`` business key is one purchase proved by a scan, and the points it earned are
its value. The ledger is the source because ``members`` may not read another domain's tables,
and because a scan that earned nothing (someone else's code) is not this member's purchase.
A scan clawed back as fraud is netted out (its ``reverse:scan:`` entry counts -1 and its
negative points).

Over the last 365 local days: **R**ecency = local days since the last rewarded scan,
**F**requency = how many, **M**onetary = the points they earned. Each is scored 1-5 by
quintiles within the brand: the score is ``1 + floor(5 * percent_rank)`` (capped at 5), i.e.
``NTILE(5)`` except that equal values share one score — with ``NTILE`` two members with the same
frequency could land in different quintiles, and a rerun on unchanged data could move them.
Recency is ranked by days, so scans on the same local day tie. The segment compares each score
with the brand's mean score (high when ``>=`` the mean): R↑F↑M↑ important_value, R↓F↑M↑
important_keep, R↑F↓M↑ important_develop, R↓F↓M↑ important_retain, and the same four
``general_*`` with M↓.

Members without a rewarded scan in the window are not scored: their row has R = F = M = 0,
score 0 and segment ``general_retain`` (一般挽留: the ones to win back), and they take no part
in the quintiles or the means. ``sleeping``: no rewarded scan for ``Programme.sleeping_days``
local days (a member who never scanned counts from joining); the *churn-risk* band is the half
before that: idle for at least ``ceil(sleeping_days / 2)`` days but not yet sleeping.

Everything is computed in one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` per brand (window
functions on PostgreSQL and SQLite >= 3.25 alike); erased members' rows are deleted.

The console reads the brand's figures (:func:`segment_summary`) from rollups, never by counting
members: the computation writes, in its own transaction, the brand's summary (scored, sleeping,
churn risk, score sums for the means) and its members per segment, which change only when it
runs; an erasure takes its member out of them at once (:func:`forget_erased`, registered with
:func:`members.erasure.on_erasure`); members per tier and points held come from
members/rollups.py. :func:`recount_summary` is the direct count they equal.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, delete, func, select, text, update
from sqlalchemy.orm import Session

from core.db import UTCDateTime, dialect_insert, insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.models import Tenant
from core.runtime import Runtime
from core.services import tenant_timezone
from members import rollups
from members.erasure import on_erasure
from members.errors import TagNotFoundError, TierNotFoundError
from members.models import (
    RFM_SEGMENTS,
    Member,
    MemberTag,
    RfmScore,
    RfmSummary,
    SegmentCount,
    Tag,
    Tier,
)
from members.segments import (
    SEGMENT_LABELS,
    calendar_of,
)
from members.settings import load_programme

WINDOW_DAYS = 365

# ceil(seconds from the last scan to today's local midnight): two spellings of one quantity.
_SECONDS = {
    "postgresql": "CAST(ceil(extract(epoch FROM (:today - s.last_scan_at))) AS BIGINT)",
    "sqlite": "(CAST(strftime('%s', :today) AS INTEGER)"
    " - CAST(strftime('%s', s.last_scan_at) AS INTEGER))",
}

_QUINTILE = "CASE WHEN {p} >= 0.8 THEN 5 WHEN {p} >= 0.6 THEN 4 WHEN {p} >= 0.4 THEN 3 WHEN {p} >= 0.2 THEN 2 ELSE 1 END"  # noqa: E501

_RFM = """
WITH scans AS (
  SELECT e.member_id AS member_id,
         MAX(CASE WHEN e.kind = 'earn' THEN e.created_at END) AS last_scan_at,
         SUM(CASE WHEN e.created_at >= :since
                  THEN (CASE WHEN e.kind = 'earn' THEN 1 ELSE -1 END) ELSE 0 END) AS frequency,
         SUM(CASE WHEN e.created_at >= :since THEN e.points ELSE 0 END) AS monetary
  FROM members_points_entries e
  WHERE e.tenant_id = :tenant
    AND ((e.kind = 'earn' AND e.business_key LIKE 'scan:%')
         OR (e.kind = 'reverse' AND e.business_key LIKE 'reverse:scan:%'))
  GROUP BY e.member_id
),
base AS (
  SELECT m.id AS member_id, m.created_at AS joined_at, s.last_scan_at AS last_scan_at,
         CASE WHEN s.frequency > 0 THEN s.frequency ELSE 0 END AS frequency,
         CASE WHEN s.frequency > 0 AND s.monetary > 0 THEN s.monetary ELSE 0 END AS monetary,
         CASE WHEN s.last_scan_at IS NULL THEN NULL
              WHEN s.last_scan_at >= :today THEN 0
              ELSE ({seconds} + 86399) / 86400 END AS recency_days
  FROM members_members m LEFT JOIN scans s ON s.member_id = m.id
  WHERE m.tenant_id = :tenant AND m.status <> 'erased'
),
ranked AS (
  SELECT member_id,
         PERCENT_RANK() OVER (ORDER BY recency_days DESC) AS pr,
         PERCENT_RANK() OVER (ORDER BY frequency) AS pf,
         PERCENT_RANK() OVER (ORDER BY monetary) AS pm
  FROM base WHERE frequency > 0
),
scored AS (
  SELECT member_id, {qr} AS r, {qf} AS f, {qm} AS m FROM ranked
),
judged AS (
  SELECT member_id, r, f, m,
         AVG(r) OVER () AS ar, AVG(f) OVER () AS af, AVG(m) OVER () AS am
  FROM scored
)
INSERT INTO members_rfm (member_id, tenant_id, last_scan_at, recency_days, frequency, monetary,
                         r, f, m, score, segment, sleeping, computed_at)
SELECT b.member_id, :tenant, b.last_scan_at, b.recency_days, b.frequency, b.monetary,
       COALESCE(j.r, 0), COALESCE(j.f, 0), COALESCE(j.m, 0),
       COALESCE((j.r + j.f + j.m) / 3.0, 0),
       CASE WHEN j.member_id IS NULL THEN 'general_retain'
            WHEN j.r >= j.ar AND j.f >= j.af AND j.m >= j.am THEN 'important_value'
            WHEN j.r <  j.ar AND j.f >= j.af AND j.m >= j.am THEN 'important_keep'
            WHEN j.r >= j.ar AND j.f <  j.af AND j.m >= j.am THEN 'important_develop'
            WHEN j.r <  j.ar AND j.f <  j.af AND j.m >= j.am THEN 'important_retain'
            WHEN j.r >= j.ar AND j.f >= j.af THEN 'general_value'
            WHEN j.r <  j.ar AND j.f >= j.af THEN 'general_keep'
            WHEN j.r >= j.ar THEN 'general_develop'
            ELSE 'general_retain' END,
       CASE WHEN COALESCE(b.last_scan_at, b.joined_at) < :sleeping_cut THEN TRUE ELSE FALSE END,
       :now
FROM base b LEFT JOIN judged j ON j.member_id = b.member_id
WHERE TRUE
ON CONFLICT (member_id) DO UPDATE SET
  tenant_id = excluded.tenant_id, last_scan_at = excluded.last_scan_at,
  recency_days = excluded.recency_days, frequency = excluded.frequency,
  monetary = excluded.monetary, r = excluded.r, f = excluded.f, m = excluded.m,
  score = excluded.score, segment = excluded.segment, sleeping = excluded.sleeping,
  computed_at = excluded.computed_at
"""


def _rfm_statement(dialect: str) -> Any:
    sql = _RFM.format(
        seconds=_SECONDS[dialect],
        qr=_QUINTILE.format(p="pr"),
        qf=_QUINTILE.format(p="pf"),
        qm=_QUINTILE.format(p="pm"),
    )
    return text(sql).bindparams(
        bindparam("since", type_=UTCDateTime()),
        bindparam("today", type_=UTCDateTime()),
        bindparam("sleeping_cut", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
    )


@dataclass(frozen=True)
class RfmRun:
    """What one computation did: brands, member rows written, seconds."""

    tenants: int
    members: int
    seconds: float


def compute_tenant_rfm(session: Session, *, tenant_id: int, now: dt.datetime) -> int:
    """Recompute one brand's RFM rows in one statement; returns the rows written."""
    # The summary's row lock first: an erasure (forget_erased) waits for this computation, or
    # this computation for the erasure, and neither's change to the figures is lost.
    _lock_summary(session, tenant_id)
    cal = calendar_of(session, tenant_id, now)
    programme = load_programme(session, tenant_id)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # One brand's aggregation of millions of entries hashes in memory, not on disk.
        session.execute(text("SET LOCAL work_mem = '256MB'"))
    session.execute(
        delete(RfmScore).where(
            RfmScore.tenant_id == tenant_id,
            RfmScore.member_id.in_(
                select(Member.id).where(Member.tenant_id == tenant_id, Member.status == "erased")
            ),
        )
    )
    result = session.execute(
        _rfm_statement(dialect),
        {
            "tenant": tenant_id,
            "since": cal.since(WINDOW_DAYS),
            "today": cal.midnight(cal.today),
            "sleeping_cut": cal.since(programme.sleeping_days),
            "now": now,
        },
    )
    written = result.rowcount  # type: ignore[attr-defined]
    if dialect == "sqlite":  # pysqlite counts no rows for a statement that starts with WITH
        written = session.scalar(text("SELECT changes()"))
    half = -(-programme.sleeping_days // 2)
    _write_summary(session, tenant_id=tenant_id, now=now, churn_before=cal.since(half))
    return max(int(written), 0)


def compute_rfm(
    target: Runtime | Session, *, tenant_id: int | None = None, now: dt.datetime | None = None
) -> RfmRun:
    """Recompute RFM scores, segments and sleeping flags of one brand or of all; idempotent.

    Given a runtime, each brand is its own transaction; given a session, all of it is the
    caller's (flushed, not committed).
    """
    now = now or utcnow()
    started = time.perf_counter()

    def tenants(session: Session) -> list[int]:
        if tenant_id is not None:
            return [tenant_id]
        return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))

    written = 0
    if isinstance(target, Session):
        ids = tenants(target)
        for tid in ids:
            written += compute_tenant_rfm(target, tenant_id=tid, now=now)
    else:
        with target.db.read_only() as session:
            ids = tenants(session)
        for tid in ids:
            with target.db.unit_of_work() as session:
                written += compute_tenant_rfm(session, tenant_id=tid, now=now)
    return RfmRun(len(ids), written, time.perf_counter() - started)


# --- reading -------------------------------------------------------------------------------------


def segment_label(segment: str) -> dict[str, str]:
    zh, en = SEGMENT_LABELS[segment]
    return {"segment": segment, "zh": zh, "en": en}


def rfm_of(session: Session, member_id: int) -> RfmScore | None:
    """The member's latest RFM row, or None (not computed yet, or erased)."""
    return session.get(RfmScore, member_id)


def _lock_summary(session: Session, tenant_id: int) -> RfmSummary:
    insert_ignore(
        session,
        RfmSummary.__table__,
        {
            "tenant_id": tenant_id,
            "rows": 0,
            "not_scored": 0,
            "sleeping": 0,
            "churn_risk": 0,
            "sum_r": 0,
            "sum_f": 0,
            "sum_m": 0,
        },
    )
    stmt = select(RfmSummary).where(RfmSummary.tenant_id == tenant_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # SQLite's writers are serialised already
    return session.scalars(stmt.execution_options(populate_existing=True)).one()


def _write_summary(
    session: Session, *, tenant_id: int, now: dt.datetime, churn_before: dt.datetime
) -> None:
    """The brand's figures from the rows just computed (its live members only)."""
    figures = _count_rows(session, tenant_id=tenant_id, churn_before=churn_before)
    session.execute(
        update(RfmSummary)
        .where(RfmSummary.tenant_id == tenant_id)
        .values(
            computed_at=now,
            churn_before=churn_before,
            **{k: v for k, v in figures.items() if k != "segments"},
        )
        .execution_options(synchronize_session=False)
    )
    insert = dialect_insert(session)(SegmentCount.__table__)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["tenant_id", "segment"], set_={"members": insert.excluded.members}
        ),
        [
            {"tenant_id": tenant_id, "segment": s, "members": figures["segments"].get(s, 0)}
            for s in RFM_SEGMENTS
        ],
    )


def _count_rows(
    session: Session, *, tenant_id: int, churn_before: dt.datetime | None
) -> dict[str, Any]:
    """Counted from the RFM rows of the brand's live members: what the summary holds."""
    live = and_live(tenant_id)
    rfm = RfmScore
    segments = {
        s: int(n)
        for s, n in session.execute(
            select(rfm.segment, func.count())
            .join(Member, Member.id == rfm.member_id)
            .where(rfm.tenant_id == tenant_id, live)
            .group_by(rfm.segment)
        )
    }
    rows, sleeping, not_scored, sum_r, sum_f, sum_m = session.execute(
        select(
            func.count(),
            func.sum(case((rfm.sleeping.is_(True), 1), else_=0)),
            func.sum(case((rfm.r == 0, 1), else_=0)),
            func.sum(rfm.r),
            func.sum(rfm.f),
            func.sum(rfm.m),
        )
        .join(Member, Member.id == rfm.member_id)
        .where(rfm.tenant_id == tenant_id, live)
    ).one()
    churn: int | None = 0
    if churn_before is not None:
        churn = session.scalar(
            select(func.count())
            .select_from(rfm)
            .join(Member, Member.id == rfm.member_id)
            .where(
                rfm.tenant_id == tenant_id,
                live,
                rfm.sleeping.is_(False),
                func.coalesce(rfm.last_scan_at, Member.created_at) < churn_before,
            )
        )
    return {
        "rows": int(rows or 0),
        "not_scored": int(not_scored or 0),
        "sleeping": int(sleeping or 0),
        "churn_risk": int(churn or 0),
        "sum_r": int(sum_r or 0),
        "sum_f": int(sum_f or 0),
        "sum_m": int(sum_m or 0),
        "segments": segments,
    }


def summarise_scored_brands(session: Session) -> int:
    """Write the summary of each brand whose RFM rows predate the summaries (computed before
    migration 0012): counted once from those rows, as the computation would have written it, so
    the page shows its figures at once instead of after the next nightly run. How many brands."""
    missing = session.scalars(
        select(Tenant.id).where(
            ~select(RfmSummary.tenant_id).where(RfmSummary.tenant_id == Tenant.id).exists(),
            select(RfmScore.member_id).where(RfmScore.tenant_id == Tenant.id).exists(),
        )
    ).all()
    for tenant_id in missing:
        _lock_summary(session, tenant_id)
        computed_at = session.scalar(
            select(func.max(RfmScore.computed_at))
            .join(Member, Member.id == RfmScore.member_id)
            .where(RfmScore.tenant_id == tenant_id, and_live(tenant_id))
        )
        if computed_at is None:  # only erased members' rows: an empty summary is right
            continue
        half = -(-load_programme(session, tenant_id).sleeping_days // 2)
        churn_before = calendar_of(session, tenant_id, computed_at).since(half)
        _write_summary(session, tenant_id=tenant_id, now=computed_at, churn_before=churn_before)
    return len(missing)


def forget_erased(session: Session, tenant_id: int, member_id: int) -> int:
    """Take an erased member out of the brand's rollups in the erasure's transaction (an
    erasure hook; it removes no address: returns 0). Locks in the order the computation and
    the rollup task take them: the tier watermark, then the summary."""
    rollups.forget_member_tier(session, tenant_id=tenant_id, member_id=member_id)
    summary = _lock_summary(session, tenant_id)
    # Read after the lock: the row a computation that just committed wrote, or none.
    row = session.execute(
        select(
            RfmScore.segment,
            RfmScore.r,
            RfmScore.f,
            RfmScore.m,
            RfmScore.sleeping,
            func.coalesce(RfmScore.last_scan_at, Member.created_at),
        )
        .join(Member, Member.id == RfmScore.member_id)
        .where(RfmScore.member_id == member_id, RfmScore.tenant_id == tenant_id)
    ).one_or_none()
    if row is None or summary.computed_at is None:
        return 0
    segment, r, f, m, sleeping, idle_since = row
    churn = not sleeping and summary.churn_before is not None and idle_since < summary.churn_before
    s = RfmSummary
    session.execute(
        update(s)
        .where(s.tenant_id == tenant_id)
        .values(
            rows=s.rows - 1,
            not_scored=s.not_scored - (1 if r == 0 else 0),
            sleeping=s.sleeping - (1 if sleeping else 0),
            churn_risk=s.churn_risk - (1 if churn else 0),
            sum_r=s.sum_r - r,
            sum_f=s.sum_f - f,
            sum_m=s.sum_m - m,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(SegmentCount)
        .where(SegmentCount.tenant_id == tenant_id, SegmentCount.segment == segment)
        .values(members=SegmentCount.members - 1)
        .execution_options(synchronize_session=False)
    )
    return 0


on_erasure(forget_erased)


def _summary(
    session: Session,
    *,
    tenant_id: int,
    figures: dict[str, Any],
    computed_at: dt.datetime | None,
    tiers: dict[int | None, int],
) -> dict[str, Any]:
    programme = load_programme(session, tenant_id)
    found = {
        t.id: t
        for t in session.scalars(
            select(Tier).where(Tier.tenant_id == tenant_id, Tier.id.in_([k for k in tiers if k]))
        )
    }
    listed: list[tuple[Tier | None, int]] = []
    for key, n in tiers.items():
        tier = found.get(key) if key else None
        if n > 0 and (tier is not None or not key):  # a deleted tier is held by no one
            listed.append((tier, n))
    listed.sort(key=lambda x: (x[0] is None, x[0].rank if x[0] is not None else 0))
    total = sum(n for _t, n in listed)
    scored = figures["rows"] - figures["not_scored"]

    def mean(value: int) -> float | None:
        return round(value / scored, 3) if scored else None

    return {
        "members": total,
        "computed_at": computed_at,
        "sleeping_days": programme.sleeping_days,
        "window_days": WINDOW_DAYS,
        "segments": [
            {**segment_label(s), "members": int(figures["segments"].get(s, 0))}
            for s in RFM_SEGMENTS
        ],
        "tiers": [
            {
                "tier_id": t.id if t else None,
                "name": t.name if t else None,
                "name_en": t.name_en if t else None,
                "rank": t.rank if t else None,
                "members": n,
            }
            for t, n in listed
        ],
        "scored": scored,
        "not_scored": figures["not_scored"],
        "not_computed": max(total - figures["rows"], 0),
        "sleeping": figures["sleeping"],
        "churn_risk": figures["churn_risk"],
        "means": {
            "r": mean(figures["sum_r"]),
            "f": mean(figures["sum_f"]),
            "m": mean(figures["sum_m"]),
        },
    }


def segment_summary(session: Session, *, tenant_id: int) -> dict[str, Any]:
    """Counts per segment (all 8, with zh/en labels), per tier, sleeping, churn risk, and the
    brand's mean scores, as of the last computation (members per tier: as of the last rollup
    refresh); plus ``points``, the liability and points expiring soon. Read from rollups: a
    handful of rows whatever the brand's size."""
    summary = session.get(RfmSummary, tenant_id)
    segments = {
        s: int(n)
        for s, n in session.execute(
            select(SegmentCount.segment, SegmentCount.members).where(
                SegmentCount.tenant_id == tenant_id
            )
        )
    }
    figures: dict[str, Any] = {
        "rows": summary.rows if summary else 0,
        "not_scored": summary.not_scored if summary else 0,
        "sleeping": summary.sleeping if summary else 0,
        "churn_risk": summary.churn_risk if summary else 0,
        "sum_r": summary.sum_r if summary else 0,
        "sum_f": summary.sum_f if summary else 0,
        "sum_m": summary.sum_m if summary else 0,
        "segments": segments,
    }
    # As before: no computation time once no live member has a row.
    computed_at = summary.computed_at if summary and summary.rows else None
    out = _summary(
        session,
        tenant_id=tenant_id,
        figures=figures,
        computed_at=computed_at,
        tiers=rollups.tier_counts(session, tenant_id=tenant_id),
    )
    return {**out, "points": rollups.points_held(session, tenant_id=tenant_id)}


def recount_summary(session: Session, *, tenant_id: int) -> dict[str, Any]:
    """:func:`segment_summary` (without ``points``) counted directly from the members and RFM
    tables, O(members): what the rollups must equal, for tests and checks."""
    computed_at = session.scalar(
        select(func.max(RfmScore.computed_at))
        .join(Member, Member.id == RfmScore.member_id)
        .where(RfmScore.tenant_id == tenant_id, and_live(tenant_id))
    )
    churn_before = None
    if computed_at is not None:
        half = -(-load_programme(session, tenant_id).sleeping_days // 2)
        churn_before = calendar_of(session, tenant_id, computed_at).since(half)
    figures = _count_rows(session, tenant_id=tenant_id, churn_before=churn_before)
    tiers = {
        tier_id: int(n)
        for tier_id, n in session.execute(
            select(Member.tier_id, func.count()).where(and_live(tenant_id)).group_by(Member.tier_id)
        )
    }
    return _summary(
        session, tenant_id=tenant_id, figures=figures, computed_at=computed_at, tiers=tiers
    )


def and_live(tenant_id: int) -> Any:
    return (Member.tenant_id == tenant_id) & (Member.status != "erased")


@dataclass(frozen=True)
class SegmentMember:
    id: int
    phone: str | None
    joined_at: dt.datetime
    tier_id: int | None
    tier_name: str | None
    tier_rank: int | None
    segment: str | None
    r: int | None
    f: int | None
    m: int | None
    frequency: int | None
    monetary: int | None
    recency_days: int | None
    last_scan_at: dt.datetime | None
    sleeping: bool | None


def check_filters(
    session: Session,
    *,
    tenant_id: int,
    segment: str | None = None,
    tag_id: int | None = None,
    tier_id: int | None = None,
) -> None:
    """422 for an unknown segment, 404 for another brand's (or no) tag or tier."""
    if segment is not None and segment not in RFM_SEGMENTS:
        raise ValidationFailedError.field("segment", "one of " + ", ".join(RFM_SEGMENTS))
    if tag_id is not None:
        tag = session.get(Tag, tag_id)
        if tag is None or tag.tenant_id != tenant_id:
            raise TagNotFoundError(f"no tag {tag_id}")
    if tier_id is not None:
        tier = session.get(Tier, tier_id)
        if tier is None or tier.tenant_id != tenant_id:
            raise TierNotFoundError(f"no tier {tier_id}")


def _selection(
    *,
    tenant_id: int,
    segment: str | None,
    tag_id: int | None,
    tier_id: int | None,
    sleeping: bool | None,
) -> Any:
    rfm = RfmScore
    stmt = (
        select(
            Member.id,
            Member.phone_masked,
            Member.created_at,
            Member.tier_id,
            Tier.name,
            Tier.rank,
            rfm.segment,
            rfm.r,
            rfm.f,
            rfm.m,
            rfm.frequency,
            rfm.monetary,
            rfm.recency_days,
            rfm.last_scan_at,
            rfm.sleeping,
        )
        .select_from(Member)
        .outerjoin(rfm, rfm.member_id == Member.id)
        .outerjoin(Tier, Tier.id == Member.tier_id)
        .where(and_live(tenant_id))
    )
    if segment is not None:
        stmt = stmt.where(rfm.segment == segment)
    if sleeping is not None:
        stmt = stmt.where(rfm.sleeping.is_(sleeping))
    if tier_id is not None:
        stmt = stmt.where(Member.tier_id == tier_id)
    if tag_id is not None:
        stmt = stmt.where(
            Member.id.in_(select(MemberTag.member_id).where(MemberTag.tag_id == tag_id))
        )
    return stmt


def members_in(
    session: Session,
    *,
    tenant_id: int,
    segment: str | None = None,
    tag_id: int | None = None,
    tier_id: int | None = None,
    sleeping: bool | None = None,
    after: int = 0,
    limit: int = 50,
) -> list[SegmentMember]:
    """A keyset page (by member id, after ``after``) of the brand's live members in a segment,
    carrying a tag, in a tier and/or sleeping; filters combine with AND. Members not yet
    computed match no segment or sleeping filter."""
    check_filters(session, tenant_id=tenant_id, segment=segment, tag_id=tag_id, tier_id=tier_id)
    stmt = _selection(
        tenant_id=tenant_id, segment=segment, tag_id=tag_id, tier_id=tier_id, sleeping=sleeping
    )
    rows = session.execute(stmt.where(Member.id > after).order_by(Member.id).limit(limit)).all()
    return [SegmentMember(*row) for row in rows]


def count_in(
    session: Session,
    *,
    tenant_id: int,
    segment: str | None = None,
    tag_id: int | None = None,
    tier_id: int | None = None,
    sleeping: bool | None = None,
) -> int:
    stmt = _selection(
        tenant_id=tenant_id, segment=segment, tag_id=tag_id, tier_id=tier_id, sleeping=sleeping
    )
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


CSV_HEADER = (
    "member_id",
    "phone",
    "tier",
    "segment",
    "segment_zh",
    "r",
    "f",
    "m",
    "frequency",
    "monetary",
    "recency_days",
    "last_scan_at",
    "sleeping",
)


def export_csv(
    runtime: Runtime,
    *,
    tenant_id: int,
    segment: str | None = None,
    tag_id: int | None = None,
    tier_id: int | None = None,
    sleeping: bool | None = None,
    chunk: int = 5_000,
) -> Iterator[bytes]:
    """The selection as CSV (UTF-8 with a BOM, so spreadsheet programs read the Chinese),
    streamed in keyset pages from a read-only session: constant memory for any size. Phones
    masked, times in the brand's timezone, erased members never."""
    yield "\ufeff".encode()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    with runtime.db.read_only() as session:
        zone = ZoneInfo(tenant_timezone(session, tenant_id))
        after = 0
        while True:
            page = members_in(
                session,
                tenant_id=tenant_id,
                segment=segment,
                tag_id=tag_id,
                tier_id=tier_id,
                sleeping=sleeping,
                after=after,
                limit=chunk,
            )
            for x in page:
                writer.writerow(
                    (
                        x.id,
                        x.phone or "",
                        x.tier_name or "",
                        x.segment or "",
                        SEGMENT_LABELS[x.segment][0] if x.segment else "",
                        x.r if x.r is not None else "",
                        x.f if x.f is not None else "",
                        x.m if x.m is not None else "",
                        x.frequency if x.frequency is not None else "",
                        x.monetary if x.monetary is not None else "",
                        x.recency_days if x.recency_days is not None else "",
                        x.last_scan_at.astimezone(zone).isoformat(timespec="seconds")
                        if x.last_scan_at
                        else "",
                        "" if x.sleeping is None else ("yes" if x.sleeping else "no"),
                    )
                )
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            if len(page) < chunk:
                return
            after = page[-1].id
