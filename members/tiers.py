"""Tiers (会员等级) and growth value (成长值): the brand's ladder, qualification over the review
window, upgrades at once, downgrades at the scheduled review.

Growth value is separate from spendable points: every change is an append-only entry with a
business key unique per tenant (``members_growth_entries``; a retried call applies once) and
``Member.growth`` is its cache, bumped in the same statement or transaction.

A member qualifies for a tier by what happened in the review window (``Programme.
tier_review_days``, ending now): growth earned, points spent and rewarded scans (a scan whose
points were clawed back no longer counts), against the tier's thresholds — any one of them
(``qualify="any"``) or all. :func:`check_upgrade` moves a member up to the highest tier
qualified as soon as it is reached (the scan path calls it); :func:`review_tiers`, run daily,
re-checks members who have held their tier for a whole window and moves down those who no longer
qualify, by the brand's policy (``one_step``, ``to_qualified``, ``never``), and places members
without a tier in the entry tier (rank 0). A move is a conditional ``UPDATE`` of the member
(``WHERE tier_id = <the tier it was read with>``) plus a history row under a business key: two
concurrent checks of one member record one change, and a tier's upgrade gift is credited once
per member per tier, ever (ledger key ``tier-gift:<member>:<tier>``).

The ladder (thresholds, benefits, gifts) is read at most every 30 s per process, like the
programme settings; an edit takes effect at the next check or review (in this process at once,
in the others within 30 s).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from core.db import after_commit, driver_cursor, flush_unique, insert_ignore, utcnow
from core.errors import ValidationFailedError
from core.runtime import Runtime
from core.services import tenant_timezone
from members.errors import TierInUseError, TierNotFoundError
from members.ledger import MAX_POINTS, earn
from members.models import Balance, GrowthEntry, Member, PointsEntry, Tier, TierChange
from members.settings import Programme, get_programme

log = logging.getLogger("yima.members")

LADDER_TTL = 30.0
MAX_TIERS = 20
MAX_THRESHOLD = 10**12


# --- what a tier is -------------------------------------------------------------------------------


class Benefits(BaseModel):
    """What a tier gives its members; every field has a neutral default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points_multiplier: float = Field(
        default=1.0, ge=1.0, le=10.0, description="scan points are multiplied by this"
    )
    discount_rate: float = Field(
        default=1.0,
        ge=0.5,
        le=1.0,
        description="redemptions cost this share of their points (0.95: 5% off)",
    )
    free_shipping: bool = False
    birthday_points: int = Field(
        default=0, ge=0, le=1_000_000, description="on top of the programme's"
    )
    priority_service: bool = False


class TierFields(BaseModel):
    """One tier as a brand defines it (validated alone; the ladder is checked as a whole)."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=0, le=99, description="0: the entry tier; higher ranks are better")
    name: str = Field(min_length=1, max_length=40)
    name_en: str | None = Field(None, min_length=1, max_length=40)
    min_growth: int | None = Field(None, ge=0, le=MAX_THRESHOLD, description="成长值 in window")
    min_spend: int | None = Field(None, ge=0, le=MAX_THRESHOLD, description="points spent")
    min_scans: int | None = Field(None, ge=0, le=2**31 - 1, description="rewarded scans")
    qualify: Literal["any", "all"] = Field("any", description="reach any threshold, or all")
    benefits: Benefits = Field(default_factory=lambda: Benefits())
    upgrade_gift_points: int = Field(0, ge=0, le=1_000_000, description="once per member")


@dataclass(frozen=True)
class Progress:
    """What a member did in the review window."""

    growth: int = 0
    spend: int = 0
    scans: int = 0

    def of(self, metric: str) -> int:
        return int(getattr(self, metric))


@dataclass(frozen=True)
class TierRule:
    """A tier as the checks use it (a cached, immutable copy of its row)."""

    id: int
    rank: int
    name: str
    name_en: str | None
    thresholds: dict[str, int]  # metric -> minimum, only those set
    qualify: str
    benefits: Benefits
    upgrade_gift_points: int

    def qualifies(self, progress: Progress) -> bool:
        if not self.thresholds:
            return True
        met = (progress.of(m) >= need for m, need in self.thresholds.items())
        return all(met) if self.qualify == "all" else any(met)

    def missing(self, progress: Progress) -> dict[str, int]:
        """How much of each threshold is still missing (0 where reached)."""
        return {m: max(0, need - progress.of(m)) for m, need in self.thresholds.items()}


@dataclass(frozen=True)
class Ladder:
    """A brand's tiers, lowest rank first."""

    tiers: tuple[TierRule, ...] = ()
    by_id: dict[int, TierRule] = field(default_factory=dict)

    @property
    def entry(self) -> TierRule | None:
        return self.tiers[0] if self.tiers and self.tiers[0].rank == 0 else None

    def rank_of(self, tier_id: int | None) -> int:
        rule = self.by_id.get(tier_id) if tier_id is not None else None
        return rule.rank if rule is not None else -1

    def highest_qualified(self, progress: Progress) -> TierRule | None:
        for rule in reversed(self.tiers):
            if rule.qualifies(progress):
                return rule
        return None

    def above(self, rank: int) -> TierRule | None:
        return next((r for r in self.tiers if r.rank > rank), None)

    def below(self, rank: int) -> TierRule | None:
        return next((r for r in reversed(self.tiers) if r.rank < rank), None)


def _thresholds(tier: Tier | TierFields) -> dict[str, int]:
    found = {"growth": tier.min_growth, "spend": tier.min_spend, "scans": tier.min_scans}
    return {m: int(v) for m, v in found.items() if v is not None}


def _benefits(tier: Tier) -> Benefits:
    try:
        return Benefits.model_validate(tier.benefits or {})
    except ValidationError:
        log.warning(
            "tier %s has invalid benefits %r: neutral benefits used", tier.id, tier.benefits
        )
        return Benefits()


def _rule(tier: Tier) -> TierRule:
    return TierRule(
        id=tier.id,
        rank=tier.rank,
        name=tier.name,
        name_en=tier.name_en,
        thresholds=_thresholds(tier),
        qualify=tier.qualify,
        benefits=_benefits(tier),
        upgrade_gift_points=tier.upgrade_gift_points or 0,
    )


# --- the ladder, cached per process -----------------------------------------------------------

_ladders: weakref.WeakKeyDictionary[Runtime, dict[int, tuple[float, Ladder]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def ladder_of(runtime: Runtime, session: Session, tenant_id: int) -> Ladder:
    """The brand's tiers (cached per process for ``LADDER_TTL`` seconds)."""
    per_runtime = _ladders.get(runtime)
    hit = per_runtime.get(tenant_id) if per_runtime is not None else None
    if hit is not None and time.monotonic() - hit[0] < LADDER_TTL:
        return hit[1]
    rows = session.scalars(select(Tier).where(Tier.tenant_id == tenant_id).order_by(Tier.rank))
    rules = tuple(_rule(t) for t in rows)
    ladder = Ladder(rules, {r.id: r for r in rules})
    with _lock:
        _ladders.setdefault(runtime, {})[tenant_id] = (time.monotonic(), ladder)
    return ladder


def _forget(runtime: Runtime, tenant_id: int) -> None:
    with _lock:
        _ladders.get(runtime, {}).pop(tenant_id, None)


def scan_multiplier(
    runtime: Runtime, session: Session, *, tenant_id: int, tier_id: int | None
) -> float:
    """The points multiplier of the member's tier (1.0 without one); no query on a warm cache."""
    if tier_id is None:
        return 1.0
    rule = ladder_of(runtime, session, tenant_id).by_id.get(tier_id)
    return rule.benefits.points_multiplier if rule is not None else 1.0


def tier_benefits(
    runtime: Runtime, session: Session, *, tenant_id: int, tier_id: int | None
) -> Benefits:
    """The benefits of a tier (neutral ones without a tier); cached like the ladder."""
    rule = ladder_of(runtime, session, tenant_id).by_id.get(tier_id) if tier_id else None
    return rule.benefits if rule is not None else Benefits()


# --- managing the ladder ----------------------------------------------------------------------


def _invalid(exc: ValidationError, prefix: str = "") -> ValidationFailedError:
    errors = {
        prefix + (".".join(str(p) for p in e["loc"]) or "body"): e["msg"] for e in exc.errors()
    }
    first = next(iter(errors.items()))
    return ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)


def list_tiers(session: Session, *, tenant_id: int) -> Sequence[Tier]:
    return session.scalars(
        select(Tier).where(Tier.tenant_id == tenant_id).order_by(Tier.rank)
    ).all()


def get_tier_or_raise(session: Session, *, tenant_id: int, tier_id: int) -> Tier:
    tier = session.get(Tier, tier_id)
    if tier is None or tier.tenant_id != tenant_id:
        raise TierNotFoundError(f"no tier {tier_id}")
    return tier


def _locked_ladder(session: Session, tenant_id: int) -> list[Tier]:
    """The brand's tiers, locked: two edits of one ladder are checked one after the other."""
    return list(
        session.scalars(
            select(Tier).where(Tier.tenant_id == tenant_id).order_by(Tier.id).with_for_update()
        )
    )


def _check_ladder(fields: TierFields, others: Iterable[Tier]) -> None:
    """The tier fits the ladder: its rank and name are free, it has a threshold unless it is the
    entry tier, and each threshold lies between those of the tiers below and above it."""
    errors: dict[str, str] = {}
    others = list(others)
    for other in others:
        if other.rank == fields.rank:
            errors["rank"] = f"the tier {other.name!r} has rank {other.rank} already"
        if other.name == fields.name:
            errors["name"] = f"a tier is named {other.name!r} already"
    mine = _thresholds(fields)
    if fields.rank > 0 and not mine:
        errors["min_growth"] = (
            "a tier above the entry tier needs min_growth, min_spend or min_scans"
        )
    for metric, value in mine.items():
        name = f"min_{metric}"
        lower = [
            (o.rank, o.name, _thresholds(o)[metric]) for o in others if metric in _thresholds(o)
        ]
        below = [x for x in lower if x[0] < fields.rank]
        above = [x for x in lower if x[0] > fields.rank]
        if below and value < max(x[2] for x in below):
            top = max(below, key=lambda x: x[2])
            errors[name] = f"must be at least {top[2]} (the tier {top[1]!r} below needs that)"
        elif above and value > min(x[2] for x in above):
            low = min(above, key=lambda x: x[2])
            errors[name] = f"must be at most {low[2]} (the tier {low[1]!r} above needs that)"
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)


def _flush_unique(session: Session) -> None:
    """Flush; a concurrent edit that took the same rank or name is a field error."""
    clash = flush_unique(session)
    if clash is not None:
        where = "rank" if "rank" in str(clash.orig).lower() else "name"
        raise ValidationFailedError.field(where, "another tier has just taken it")


def create_tier(session: Session, runtime: Runtime, *, tenant_id: int, **fields: Any) -> Tier:
    """Add a tier to the brand's ladder (422 names the fields that do not fit)."""
    try:
        spec = TierFields.model_validate(fields)
    except ValidationError as exc:
        raise _invalid(exc) from None
    others = _locked_ladder(session, tenant_id)
    if len(others) >= MAX_TIERS:
        raise ValidationFailedError.field("rank", f"a ladder has at most {MAX_TIERS} tiers")
    _check_ladder(spec, others)
    tier = Tier(
        tenant_id=tenant_id,
        created_at=utcnow(),
        **spec.model_dump(exclude={"benefits"}),
        benefits=spec.benefits.model_dump(),
    )
    session.add(tier)
    _flush_unique(session)
    _changed(session, runtime, tenant_id)
    return tier


def update_tier(
    session: Session, runtime: Runtime, *, tenant_id: int, tier_id: int, changes: dict[str, Any]
) -> Tier:
    """Change some fields of a tier (``None`` removes a threshold); the result is validated as
    a whole. New thresholds apply from the next check or review; nobody moves now."""
    others = _locked_ladder(session, tenant_id)
    tier = next((t for t in others if t.id == tier_id), None)
    if tier is None:
        raise TierNotFoundError(f"no tier {tier_id}")
    current = TierFields(
        rank=tier.rank,
        name=tier.name,
        name_en=tier.name_en,
        min_growth=tier.min_growth,
        min_spend=tier.min_spend,
        min_scans=tier.min_scans,
        qualify=tier.qualify,  # type: ignore[arg-type]
        benefits=_benefits(tier),
        upgrade_gift_points=tier.upgrade_gift_points,
    ).model_dump()
    merged = {**current, **changes}
    if isinstance(changes.get("benefits"), dict):
        merged["benefits"] = {**current["benefits"], **changes["benefits"]}
    try:
        spec = TierFields.model_validate(merged)
    except ValidationError as exc:
        raise _invalid(exc) from None
    _check_ladder(spec, (t for t in others if t.id != tier_id))
    for name, value in spec.model_dump(exclude={"benefits"}).items():
        setattr(tier, name, value)
    tier.benefits = spec.benefits.model_dump()
    _flush_unique(session)
    _changed(session, runtime, tenant_id)
    return tier


def delete_tier(session: Session, runtime: Runtime, *, tenant_id: int, tier_id: int) -> None:
    """Remove a tier no member holds (409 ``tier_in_use`` otherwise). The history keeps its
    moves, with this tier shown as gone (``from``/``to`` empty)."""
    _locked_ladder(session, tenant_id)
    tier = get_tier_or_raise(session, tenant_id=tenant_id, tier_id=tier_id)
    holders = session.scalar(
        select(func.count()).select_from(Member).where(Member.tier_id == tier_id)
    )
    if holders:
        raise TierInUseError(
            f"{holders} member(s) hold the tier {tier.name!r}; it can be deleted once none does",
            errors={"tier": f"held by {holders} member(s)"},
        )
    try:
        with session.begin_nested():
            for column in (TierChange.from_tier_id, TierChange.to_tier_id):
                session.execute(
                    update(TierChange)
                    .where(TierChange.tenant_id == tenant_id, column == tier_id)
                    .values({column.key: None})
                    .execution_options(synchronize_session=False)
                )
            session.delete(tier)
            session.flush()
    except IntegrityError:
        raise TierInUseError(
            f"a member has just reached the tier {tier.name!r}", errors={"tier": "in use"}
        ) from None
    _changed(session, runtime, tenant_id)


def _changed(session: Session, runtime: Runtime, tenant_id: int) -> None:
    _forget(runtime, tenant_id)
    after_commit(session, lambda: _forget(runtime, tenant_id))


# --- growth value ---------------------------------------------------------------------------

# The entry and the member's cache in one prepared statement on PostgreSQL (the scan path).
_GROW = (
    "WITH g AS (INSERT INTO members_growth_entries (tenant_id, member_id, points, business_key,"
    " reason, created_at) VALUES (%(tenant)s, %(member)s, %(points)s, %(key)s, %(reason)s,"
    " %(now)s) ON CONFLICT (tenant_id, business_key) DO NOTHING RETURNING member_id, points)"
    " UPDATE members_members m SET growth = m.growth + g.points FROM g WHERE m.id = g.member_id"
    " RETURNING m.id"
)


def add_growth(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    business_key: str,
    reason: str,
    now: dt.datetime | None = None,
) -> bool:
    """Add (or, negative, take back) growth value once per business key; True when this call
    applied it. The entry and ``Member.growth`` change together; spendable points do not."""
    if isinstance(points, bool) or not isinstance(points, int) or abs(points) > MAX_POINTS:
        raise ValidationFailedError.field("points", f"a whole number up to {MAX_POINTS}")
    if not business_key or len(business_key) > 200:
        raise ValidationFailedError.field("business_key", "1-200 characters")
    if points == 0:
        return False
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        cursor = driver_cursor(session)
        cursor.execute(
            _GROW,
            {
                "tenant": tenant_id,
                "member": member_id,
                "points": points,
                "key": business_key,
                "reason": reason[:200],
                "now": now,
            },
            prepare=True,
        )
        applied = cursor.fetchone() is not None
    else:
        applied = insert_ignore(
            session,
            GrowthEntry.__table__,
            {
                "tenant_id": tenant_id,
                "member_id": member_id,
                "points": points,
                "business_key": business_key,
                "reason": reason[:200],
                "created_at": now,
            },
        )
        if applied:
            session.execute(
                update(Member.__table__)  # type: ignore[arg-type]
                .where(Member.__table__.c.id == member_id)
                .values(growth=Member.__table__.c.growth + points)
            )
    if applied:
        loaded = session.identity_map.get(identity_key(Member, member_id))
        if loaded is not None:
            session.expire(loaded, ["growth"])
    return applied


# --- qualification ------------------------------------------------------------------------------


def window_start(programme: Programme, now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=programme.tier_review_days)


def _scan_count() -> Any:
    e = PointsEntry
    return func.coalesce(
        func.sum(
            case(
                (and_(e.kind == "earn", e.business_key.like("scan:%")), 1),
                (and_(e.kind == "reverse", e.business_key.like("reverse:scan:%")), -1),
                else_=0,
            )
        ),
        0,
    )


def _spent() -> Any:
    e = PointsEntry
    return func.coalesce(func.sum(case((e.kind == "spend", -e.points), else_=0)), 0)


def _counted() -> Any:
    e = PointsEntry
    return or_(
        e.kind == "spend", e.business_key.like("scan:%"), e.business_key.like("reverse:scan:%")
    )


def progress_of(
    session: Session, *, tenant_id: int, member_id: int, since: dt.datetime
) -> Progress:
    """Growth earned, points spent and rewarded scans of one member since ``since``."""
    return progress_of_many(session, tenant_id=tenant_id, member_ids=[member_id], since=since).get(
        member_id, Progress()
    )


def progress_of_many(
    session: Session, *, tenant_id: int, member_ids: Sequence[int], since: dt.datetime
) -> dict[int, Progress]:
    if not member_ids:
        return {}
    g, e = GrowthEntry, PointsEntry
    growth = {
        m: int(total or 0)
        for m, total in session.execute(
            select(g.member_id, func.sum(g.points))
            .where(g.tenant_id == tenant_id, g.member_id.in_(member_ids), g.created_at >= since)
            .group_by(g.member_id)
        )
    }
    ledger = {
        m: (int(spent), int(scans))
        for m, spent, scans in session.execute(
            select(e.member_id, _spent(), _scan_count())
            .where(
                e.tenant_id == tenant_id,
                e.member_id.in_(member_ids),
                e.created_at >= since,
                _counted(),
            )
            .group_by(e.member_id)
        )
    }
    return {
        m: Progress(int(growth.get(m) or 0), *ledger.get(m, (0, 0)))
        for m in member_ids
        if m in growth or m in ledger
    }


# --- moves --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierMove:
    """A member's move between tiers, as recorded."""

    member_id: int
    from_tier_id: int | None
    to_tier_id: int
    reason: str
    gift_points: int  # credited by this move (0: none, or given before)


def _move(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    from_tier_id: int | None,
    from_since: dt.datetime | None,
    to: TierRule,
    reason: str,
    business_key: str,
    programme: Programme,
    now: dt.datetime,
) -> TierMove | None:
    """Move the member from the tier it was read with to ``to``; None when someone else moved
    it first (the conditional UPDATE decides: it waits for, then sees, the other's commit)."""
    gives = reason != "downgrade" and to.upgrade_gift_points > 0
    if gives:
        # Lock order of the scan path (its credit locks the balance, then its growth the
        # member): balance first, then member, so a review and a scan never deadlock.
        session.execute(
            select(Balance.member_id).where(Balance.member_id == member_id).with_for_update()
        )
    held = Member.tier_id.is_(None) if from_tier_id is None else Member.tier_id == from_tier_id
    moved = session.execute(
        update(Member)
        .where(Member.id == member_id, Member.tenant_id == tenant_id, Member.status == "active")
        .where(held)
        .values(tier_id=to.id, tier_since=now)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    if not moved:
        return None
    insert_ignore(
        session,
        TierChange.__table__,
        {
            "tenant_id": tenant_id,
            "member_id": member_id,
            "from_tier_id": from_tier_id,
            "to_tier_id": to.id,
            "reason": reason,
            "business_key": business_key[:200],
            "created_at": now,
        },
    )
    gift = 0
    if gives:
        done = earn(
            session,
            tenant_id=tenant_id,
            member_id=member_id,
            points=to.upgrade_gift_points,
            business_key=f"tier-gift:{member_id}:{to.id}",
            expiry=programme.expiry,
            timezone=tenant_timezone(session, tenant_id),
            reason="tier_gift",
            ref={"tier_id": to.id},
            now=now,
            once_per_key=True,  # the gift may have changed since it was given: still once
        )
        gift = to.upgrade_gift_points if done.applied else 0
    return TierMove(member_id, from_tier_id, to.id, reason, gift)


def _up_key(member_id: int, from_tier_id: int | None, since: dt.datetime | None, to: int) -> str:
    # The state the move starts from names it: a retry or a concurrent check of the same state
    # records one change, a later move from a later state another.
    stamp = since.isoformat() if since is not None else "-"
    return f"upgrade:{member_id}:{from_tier_id or 0}:{stamp}:{to}"


def check_upgrade(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    now: dt.datetime | None = None,
) -> TierMove | None:
    """Move the member up at once to the highest tier qualified, if above the current one (a
    member without a tier enters the ladder); None when nothing changes."""
    ladder = ladder_of(runtime, session, tenant_id)
    if not ladder.tiers:
        return None
    row = session.execute(
        select(Member.tier_id, Member.tier_since, Member.status).where(
            Member.id == member_id, Member.tenant_id == tenant_id
        )
    ).one_or_none()
    if row is None or row.status != "active":
        return None
    current = ladder.rank_of(row.tier_id)
    if current >= ladder.tiers[-1].rank:
        return None  # at the top: no query for progress
    now = now or utcnow()
    programme = get_programme(runtime, session, tenant_id)
    progress = progress_of(
        session, tenant_id=tenant_id, member_id=member_id, since=window_start(programme, now)
    )
    best = ladder.highest_qualified(progress)
    if best is None or best.rank <= current:
        return None
    return _move(
        session,
        runtime,
        tenant_id=tenant_id,
        member_id=member_id,
        from_tier_id=row.tier_id,
        from_since=row.tier_since,
        to=best,
        reason="upgrade",
        business_key=_up_key(member_id, row.tier_id, row.tier_since, best.id),
        programme=programme,
        now=now,
    )


@dataclass(frozen=True)
class Batch:
    """One batch of scheduled work: members looked at, members changed, where to go on from
    (None: done)."""

    examined: int
    changed: int
    next_after: int | None


def _tenants_with_tiers(session: Session, tenant_id: int | None) -> list[int]:
    query = select(Tier.tenant_id).distinct()
    if tenant_id is not None:
        query = query.where(Tier.tenant_id == tenant_id)
    return sorted(session.scalars(query))


def review_tiers(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int | None = None,
    now: dt.datetime | None = None,
    limit: int = 1_000,
    after: int = 0,
) -> Batch:
    """The scheduled review of one batch of members (id > ``after``): members who have held
    their tier for a whole window and no longer qualify move down by the brand's policy; those
    qualified higher move up; those without a tier enter the entry tier. Idempotent: a second
    run the same day changes nothing (key ``review:<member>:<local date>``)."""
    now = now or utcnow()
    tenants = _tenants_with_tiers(session, tenant_id)
    if not tenants:
        return Batch(0, 0, None)
    rows = session.execute(
        select(Member.id, Member.tenant_id, Member.tier_id, Member.tier_since)
        .where(
            Member.tenant_id.in_(tenants),
            Member.status == "active",
            Member.id > after,
            or_(Member.tier_id.is_(None), Member.tier_since < now - dt.timedelta(days=1)),
        )
        .order_by(Member.id)
        .limit(limit)
    ).all()
    changed = 0
    by_tenant: dict[int, list[Any]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    for tenant, members in by_tenant.items():
        changed += _review_tenant(session, runtime, tenant_id=tenant, rows=members, now=now)
    return Batch(len(rows), changed, rows[-1].id if len(rows) == limit else None)


def _review_tenant(
    session: Session, runtime: Runtime, *, tenant_id: int, rows: list[Any], now: dt.datetime
) -> int:
    ladder = ladder_of(runtime, session, tenant_id)
    if not ladder.tiers:
        return 0
    programme = get_programme(runtime, session, tenant_id)
    since = window_start(programme, now)
    day = now.astimezone(ZoneInfo(tenant_timezone(session, tenant_id))).date().isoformat()
    due = [
        r
        for r in rows
        if ladder.rank_of(r.tier_id) < 0 or r.tier_since is None or r.tier_since < since
    ]
    progress = progress_of_many(
        session, tenant_id=tenant_id, member_ids=[r.id for r in due], since=since
    )
    changed = 0
    for row in due:
        mine = progress.get(row.id, Progress())
        current = ladder.by_id.get(row.tier_id) if row.tier_id is not None else None
        best = ladder.highest_qualified(mine)
        if current is None:
            target = best if best is not None else ladder.entry
            if target is None:
                continue
            reason, key = "review", f"review:{row.id}:{day}"
        elif best is not None and best.rank > current.rank:
            target, reason = best, "upgrade"
            key = _up_key(row.id, row.tier_id, row.tier_since, best.id)
        elif current.qualifies(mine) or programme.downgrade == "never":
            continue
        else:
            if programme.downgrade == "one_step":
                lower = ladder.below(current.rank)
            else:  # to_qualified
                lower = best if best is not None else ladder.tiers[0]
            if lower is None or lower.rank >= current.rank:
                continue
            target, reason, key = lower, "downgrade", f"review:{row.id}:{day}"
        done = _move(
            session,
            runtime,
            tenant_id=tenant_id,
            member_id=row.id,
            from_tier_id=row.tier_id,
            from_since=row.tier_since,
            to=target,
            reason=reason,
            business_key=key,
            programme=programme,
            now=now,
        )
        changed += done is not None
    return changed


def review_all(
    runtime: Runtime,
    *,
    tenant_id: int | None = None,
    now: dt.datetime | None = None,
    limit: int = 1_000,
) -> int:
    """The whole review, each batch its own transaction (stopping half way loses nothing; a
    rerun finishes the rest). Returns how many members moved."""
    now = now or utcnow()
    after, moved = 0, 0
    while True:
        with runtime.db.unit_of_work() as session:
            batch = review_tiers(
                session, runtime, tenant_id=tenant_id, now=now, limit=limit, after=after
            )
        moved += batch.changed
        if batch.next_after is None:
            return moved
        after = batch.next_after


def review_at(
    programme: Programme, tier_since: dt.datetime | None, now: dt.datetime, timezone: str
) -> dt.datetime | None:
    """When the member's tier may next be reviewed: a whole window after it was reached, and
    daily after that (the next local midnight)."""
    if tier_since is None:
        return None
    due = tier_since + dt.timedelta(days=programme.tier_review_days)
    if due > now:
        return due
    zone = ZoneInfo(timezone)
    tomorrow = now.astimezone(zone).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def tier_changes_of(
    session: Session, *, tenant_id: int, member_id: int, limit: int = 50, after: int = 0
) -> Sequence[TierChange]:
    """A member's moves, newest first (keyset: ``after`` is the last id seen)."""
    query = select(TierChange).where(
        TierChange.tenant_id == tenant_id, TierChange.member_id == member_id
    )
    if after:
        query = query.where(TierChange.id < after)
    return session.scalars(query.order_by(TierChange.id.desc()).limit(limit)).all()
