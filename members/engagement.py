"""Engagement: daily check-in (签到), birthday points and referral rewards, all through the
points ledger, each once-only by its business key.

- Check-in: one per member per local day in the brand's timezone; the row
  ``members_checkins (member, day)`` decides under any concurrency, and its points are credited
  under ``checkin:<member>:<day>`` in the same transaction (a refused second check-in writes
  nothing). The streak is yesterday's plus one, else one; a configured streak length
  (``Programme.checkin_streak_bonus``) adds its bonus the day it is reached.
- Birthday: on the member's birthday in the brand's timezone (29 February is celebrated on
  28 February in other years), the programme's birthday points plus the tier's
  ``birthday_points`` benefit, once a year (``birthday:<member>:<year>``).
- Referral: when a member signs up with a referral code, the referrer earns
  ``Programme.referral_points[0]`` and the referrer's referrer ``[1]`` — two levels, never more —
  pending like scan points so fraud checks can claw them back (``referral:<new member>:1|2``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import and_, extract, func, or_, select
from sqlalchemy.orm import Session

from core.db import insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.models import Tenant
from core.runtime import Runtime
from core.services import DEFAULT_TIMEZONE, tenant_timezone, tenant_today
from members.errors import AlreadyCheckedInError
from members.ledger import Applied, earn
from members.models import CheckIn, Member, PointsEntry
from members.settings import get_programme
from members.tiers import Batch, tier_benefits

REFERRAL_LEVELS = 2


# --- check-in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedIn:
    day: dt.date
    streak: int
    points: int  # everything credited, bonus included
    bonus: int


def check_in(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    now: dt.datetime | None = None,
) -> CheckedIn:
    """Check the member in for today (the brand's local day); 409 ``already_checked_in`` the
    second time, with nothing written."""
    now = now or utcnow()
    timezone = tenant_timezone(session, tenant_id)
    day = now.astimezone(ZoneInfo(timezone)).date()
    programme = get_programme(runtime, session, tenant_id)
    yesterday = session.scalar(
        select(CheckIn.streak).where(
            CheckIn.member_id == member_id, CheckIn.day == day - dt.timedelta(days=1)
        )
    )
    streak = (yesterday or 0) + 1
    bonus = programme.checkin_streak_bonus.get(streak, 0)
    points = programme.checkin_points + bonus
    added = insert_ignore(
        session,
        CheckIn.__table__,
        {
            "member_id": member_id,
            "day": day,
            "tenant_id": tenant_id,
            "streak": streak,
            "points": points,
            "created_at": now,
        },
    )
    if not added:
        raise AlreadyCheckedInError(
            f"already checked in on {day.isoformat()}; come back tomorrow",
            errors={"day": day.isoformat()},
        )
    if points > 0:
        earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=points,
            business_key=f"checkin:{member_id}:{day.isoformat()}",
            expiry=programme.expiry,
            timezone=timezone,
            reason="checkin",
            ref={"day": day.isoformat(), "streak": streak, "bonus": bonus},
            now=now,
            once_per_key=True,
        )
    return CheckedIn(day, streak, points, bonus)


@dataclass(frozen=True)
class CheckInMonth:
    days: list[dt.date]
    streak: int  # the current streak: today's or, not yet checked in today, yesterday's


def parse_month(text: str | None, today: dt.date) -> tuple[int, int]:
    if not text:
        return today.year, today.month
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", text)
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise ValidationFailedError.field("month", "a month as YYYY-MM, such as 2026-11")
    return int(match.group(1)), int(match.group(2))


def check_ins_of(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    month: str | None = None,
    now: dt.datetime | None = None,
) -> CheckInMonth:
    """The days of ``month`` (YYYY-MM, default this one) the member checked in, and the
    current streak."""
    today = tenant_today(session, tenant_id, now)
    year, number = parse_month(month, today)
    first = dt.date(year, number, 1)
    last = dt.date(year, number, calendar.monthrange(year, number)[1])
    days = list(
        session.scalars(
            select(CheckIn.day)
            .where(CheckIn.member_id == member_id, CheckIn.day >= first, CheckIn.day <= last)
            .order_by(CheckIn.day)
        )
    )
    recent = session.execute(
        select(CheckIn.day, CheckIn.streak)
        .where(CheckIn.member_id == member_id, CheckIn.day >= today - dt.timedelta(days=1))
        .where(CheckIn.day <= today)
        .order_by(CheckIn.day.desc())
        .limit(1)
    ).first()
    return CheckInMonth(days, int(recent.streak) if recent is not None else 0)


# --- birthday -------------------------------------------------------------------------------


def birthday_matches(birthday: dt.date, today: dt.date) -> bool:
    """Whether ``today`` is the birthday; 29 February counts on 28 February in other years."""
    if (birthday.month, birthday.day) == (today.month, today.day):
        return True
    return (
        (birthday.month, birthday.day) == (2, 29)
        and (today.month, today.day) == (2, 28)
        and not calendar.isleap(today.year)
    )


def _month_days(days: set[dt.date]) -> list[tuple[int, int]]:
    found = {(d.month, d.day) for d in days}
    if any((d.month, d.day) == (2, 28) and not calendar.isleap(d.year) for d in days):
        found.add((2, 29))
    return sorted(found)


def grant_birthday_points(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int | None = None,
    today: dt.date | None = None,
    limit: int = 1_000,
    after: int = 0,
) -> Batch:
    """Credit the birthday points of one batch of members (id > ``after``) whose birthday is
    today (``today``, else each brand's local date); once a year each, however often it runs."""
    query = select(Tenant.id, Tenant.timezone)
    if tenant_id is not None:
        query = query.where(Tenant.id == tenant_id)
    tenants = session.execute(query).all()
    now = utcnow()
    local = {
        t: today or now.astimezone(ZoneInfo(zone or DEFAULT_TIMEZONE)).date() for t, zone in tenants
    }
    if not local:
        return Batch(0, 0, None)
    pairs = _month_days(set(local.values()))
    born = or_(
        *(
            and_(extract("month", Member.birthday) == m, extract("day", Member.birthday) == d)
            for m, d in pairs
        )
    )
    rows = session.execute(
        select(Member.id, Member.tenant_id, Member.birthday, Member.tier_id)
        .where(
            Member.tenant_id.in_(list(local)),
            Member.status == "active",
            Member.birthday.is_not(None),
            Member.id > after,
            born,
        )
        .order_by(Member.id)
        .limit(limit)
    ).all()
    granted = 0
    for row in rows:
        day = local[row.tenant_id]
        if not birthday_matches(row.birthday, day):
            continue  # another brand's day in another timezone
        programme = get_programme(runtime, session, row.tenant_id)
        benefits = tier_benefits(runtime, session, tenant_id=row.tenant_id, tier_id=row.tier_id)
        points = programme.birthday_points + benefits.birthday_points
        if points <= 0:
            continue
        done = earn(
            session,
            tenant_id=row.tenant_id,
            member_id=row.id,
            points=points,
            business_key=f"birthday:{row.id}:{day.year}",
            expiry=programme.expiry,
            timezone=tenant_timezone(session, row.tenant_id),
            reason="birthday",
            ref={"year": day.year},
            once_per_key=True,
        )
        granted += done.applied
    return Batch(len(rows), granted, rows[-1].id if len(rows) == limit else None)


def grant_all_birthday_points(
    runtime: Runtime, *, tenant_id: int | None = None, today: dt.date | None = None
) -> int:
    """Every batch of today's birthdays, each its own transaction; returns how many were
    credited (0 on a rerun)."""
    after, granted = 0, 0
    while True:
        with runtime.db.unit_of_work() as session:
            batch = grant_birthday_points(
                session, runtime, tenant_id=tenant_id, today=today, after=after
            )
        granted += batch.changed
        if batch.next_after is None:
            return granted
        after = batch.next_after


# --- referral -------------------------------------------------------------------------------


def reward_referral(
    session: Session, runtime: Runtime, *, tenant_id: int, member_id: int
) -> list[Applied]:
    """Credit the new member's referrer (level 1) and the referrer's referrer (level 2), never
    further up; erased members are skipped. Pending for ``Programme.pending_for``; once per new
    member and level (``referral:<member>:<level>``), however often it is called."""
    programme = get_programme(runtime, session, tenant_id)
    timezone = tenant_timezone(session, tenant_id)
    done: list[Applied] = []
    seen = {member_id}
    child = member_id
    for level in range(1, REFERRAL_LEVELS + 1):
        parent = session.execute(
            select(Member.referrer_id).where(Member.id == child, Member.tenant_id == tenant_id)
        ).scalar()
        if parent is None or parent in seen:
            break
        seen.add(parent)
        referrer = session.execute(
            select(Member.status).where(Member.id == parent, Member.tenant_id == tenant_id)
        ).scalar()
        if referrer is None:
            break  # another brand's member: never credited here
        points = programme.referral_points[level - 1]
        if referrer == "active" and points > 0:
            done.append(
                earn(
                    session,
                    tenant_id=tenant_id,
                    member_id=parent,
                    points=points,
                    business_key=f"referral:{member_id}:{level}",
                    expiry=programme.expiry,
                    timezone=timezone,
                    pending_for=programme.pending_for,
                    reason="referral",
                    ref={"referred": member_id, "level": level},
                    once_per_key=True,
                )
            )
        child = parent
    return done


@dataclass(frozen=True)
class ReferralSummary:
    code: str | None
    invited: int
    points_earned: int


def referral_summary(session: Session, *, tenant_id: int, member_id: int) -> ReferralSummary:
    """The member's referral code, how many signed up with it, and the points it earned
    (pending ones included, clawbacks deducted)."""
    code = session.execute(
        select(Member.referral_code).where(Member.id == member_id, Member.tenant_id == tenant_id)
    ).scalar()
    invited = session.scalar(
        select(func.count())
        .select_from(Member)
        .where(Member.tenant_id == tenant_id, Member.referrer_id == member_id)
    )
    e = PointsEntry
    earned = session.scalar(
        select(func.coalesce(func.sum(e.points), 0)).where(
            e.tenant_id == tenant_id,
            e.member_id == member_id,
            or_(e.business_key.like("referral:%"), e.business_key.like("reverse:referral:%")),
        )
    )
    return ReferralSummary(code, int(invited or 0), int(earned or 0))
