"""Member tags: manual ones a brand puts on by hand, automatic ones a rule keeps up to date.

An automatic tag's rule is data in a small language, validated as a whole (:class:`Rule`): all
of, or any of, a list of conditions on the member's profile (gender, region prefix, age, source,
channel, tier rank) and behaviour (rewarded scans in the last N days, active points, days since
the last rewarded scan, growth value, days since joining)::

    {"all": [{"field": "region", "prefix": ["CN-ZJ"]},
             {"field": "scans", "days": 30, "min": 3},
             {"field": "age", "min": 18, "max": 35}]}

:func:`evaluate_tags` recomputes every automatic tag set-wise, in SQL: one ``INSERT ... SELECT
... ON CONFLICT DO NOTHING`` adds the members who match now, one ``DELETE`` removes those who no
longer do. Running it twice changes nothing. Erased members are never tagged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    func,
    literal,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from core.db import UTCDateTime, dialect_insert, flush_unique, insert_ignore, utcnow
from core.errors import ValidationFailedError
from members.errors import (
    MemberErasedError,
    MemberNotFoundError,
    TagNameTakenError,
    TagNotFoundError,
    TagNotManualError,
)
from members.models import Balance, Member, MemberTag, PointsEntry, Tag, Tier
from members.segments import (
    SCAN_KEY_PREFIX,
    Calendar,
    calendar_of,
    scan_entries,
)

MAX_TAGS = 500  # per brand
BIG = 10**12

# --- the rule language ----------------------------------------------------------------------------


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Range(_Condition):
    min: int | None = Field(None, ge=0, le=BIG)
    max: int | None = Field(None, ge=0, le=BIG)

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class Gender(_Condition):
    field: Literal["gender"]
    values: list[Literal["female", "male", "other"]] = Field(min_length=1, max_length=3)


class Region(_Condition):
    """The member's region starts with one of ``prefix``: ``CN-ZJ`` holds ``CN-ZJ`` and
    ``CN-ZJ/杭州市``, not ``CN-ZJX``."""

    field: Literal["region"]
    prefix: list[Annotated[str, Field(min_length=2, max_length=64)]] = Field(
        min_length=1, max_length=50
    )

    @field_validator("prefix", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("prefix")
    @classmethod
    def _shape(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if prefix != prefix.strip() or prefix.endswith("/") or not prefix[:2].isupper():
                raise ValueError("a region such as CN, CN-ZJ or CN-ZJ/杭州市")
        return value


class Age(_Range):
    """Age in whole years from the birthday (members without a birthday never match)."""

    field: Literal["age"]
    min: int | None = Field(None, ge=0, le=150)
    max: int | None = Field(None, ge=0, le=150)


class Source(_Condition):
    field: Literal["source"]
    values: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=50
    )


class Channel(_Condition):
    field: Literal["channel"]
    values: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=50
    )


class TierRank(_Range):
    """The rank of the member's tier (members in no tier never match)."""

    field: Literal["tier_rank"]
    min: int | None = Field(None, ge=0, le=1000)
    max: int | None = Field(None, ge=0, le=1000)


class Scans(_Range):
    """Rewarded scans in the last ``days`` days (clawed-back scans do not count)."""

    field: Literal["scans"]
    days: int = Field(ge=1, le=3660)


class Points(_Range):
    """Active (spendable) points."""

    field: Literal["points"]


class DaysSinceScan(_Range):
    """Local days since the last rewarded scan; a member who never scanned counts from the
    day of joining (a new member is not idle)."""

    field: Literal["days_since_scan"]
    min: int | None = Field(None, ge=0, le=36600)
    max: int | None = Field(None, ge=0, le=36600)


class Growth(_Range):
    """Growth value (成长值)."""

    field: Literal["growth"]


class Joined(_Condition):
    """Joined in the last ``days`` days (today included)."""

    field: Literal["joined_within_days"]
    days: int = Field(ge=1, le=36600)


Condition = Annotated[
    Gender
    | Region
    | Age
    | Source
    | Channel
    | TierRank
    | Scans
    | Points
    | DaysSinceScan
    | Growth
    | Joined,
    Field(discriminator="field"),
]


class Rule(BaseModel):
    """All of (``all``) or any of (``any``) 1-20 conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all: list[Condition] | None = Field(None, min_length=1, max_length=20)
    any: list[Condition] | None = Field(None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _one_list(self) -> Rule:
        if (self.all is None) == (self.any is None):
            raise ValueError("give exactly one of 'all' or 'any'")
        return self

    @property
    def conditions(self) -> list[Any]:
        return list(self.all or self.any or [])


def parse_rule(data: Any, *, field: str = "rule") -> Rule:
    """``data`` as a :class:`Rule`, or a 422 naming each wrong field (``rule.all.0.days``)."""
    if isinstance(data, Rule):
        return data
    try:
        return Rule.model_validate(data)
    except ValidationError as exc:
        errors = {
            ".".join([field, *(str(p) for p in err["loc"])]): err["msg"]
            for err in exc.errors(include_url=False)[:20]
        }
        first = next(iter(errors.items()))
        raise ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors) from None


# --- a rule as SQL --------------------------------------------------------------------------------


def _between(column: Any, low: int | None, high: int | None) -> ColumnElement[bool]:
    parts = []
    if low is not None:
        parts.append(column >= low)
    if high is not None:
        parts.append(column <= high)
    return and_(*parts)


def _scans_since(tenant_id: int, since: dt.datetime) -> tuple[Any, Any]:
    """Members with rewarded scans since ``since`` (grouped; net of clawbacks: ``n``)."""
    e = PointsEntry
    n = func.sum(case((e.kind == "earn", 1), else_=-1))
    grouped = (
        select(e.member_id)
        .where(scan_entries(tenant_id), e.created_at >= since)
        .group_by(e.member_id)
    )
    return grouped, n


def _scanned_since(tenant_id: int, since: dt.datetime) -> Any:
    """EXISTS: the member (of the outer query) has a rewarded scan since ``since``."""
    e = PointsEntry
    return (
        select(literal(1))
        .where(
            e.member_id == Member.id,
            e.tenant_id == tenant_id,
            e.kind == "earn",
            e.business_key.like(SCAN_KEY_PREFIX + "%"),
            e.created_at >= since,
        )
        .exists()
    )


def _idle_at_least(tenant_id: int, cal: Calendar, days: int) -> ColumnElement[bool]:
    """No rewarded scan, and not joined, in the last ``days`` days."""
    if days <= 0:
        return literal(True)
    cut = cal.since(days)
    return and_(Member.created_at < cut, ~_scanned_since(tenant_id, cut))


def condition_sql(c: Any, *, tenant_id: int, cal: Calendar) -> ColumnElement[bool]:
    """The WHERE clause on ``members_members`` that one condition stands for."""
    m = Member
    if isinstance(c, Gender):
        return m.gender.in_(c.values)
    if isinstance(c, Region):
        return or_(
            *(or_(m.region == p, func.substr(m.region, 1, len(p) + 1) == p + "/") for p in c.prefix)
        )
    if isinstance(c, Age):
        parts = []
        if c.min is not None:  # at least min years old: born on or before that date
            parts.append(m.birthday <= cal.years_ago(c.min))
        if c.max is not None:  # not yet max + 1
            parts.append(m.birthday > cal.years_ago(c.max + 1))
        return and_(*parts)
    if isinstance(c, Source):
        return m.source.in_(c.values)
    if isinstance(c, Channel):
        return m.channel.in_(c.values)
    if isinstance(c, TierRank):
        tiers = select(Tier.id).where(
            Tier.tenant_id == tenant_id, _between(Tier.rank, c.min, c.max)
        )
        return m.tier_id.in_(tiers)
    if isinstance(c, Scans):
        grouped, n = _scans_since(tenant_id, cal.since(c.days))
        parts = []
        if c.min:
            parts.append(m.id.in_(grouped.having(n >= c.min)))
        if c.max is not None:
            parts.append(m.id.not_in(grouped.having(n > c.max)))
        return and_(*parts) if parts else literal(True)
    if isinstance(c, Points):
        parts = []
        b = Balance
        if c.min:
            rich = select(b.member_id).where(b.tenant_id == tenant_id, b.active >= c.min)
            parts.append(m.id.in_(rich))
        if c.max is not None:
            over = select(literal(1)).where(b.member_id == m.id, b.active > c.max)
            parts.append(~over.exists())
        return and_(*parts) if parts else literal(True)
    if isinstance(c, DaysSinceScan):
        parts = []
        if c.min is not None:
            parts.append(_idle_at_least(tenant_id, cal, c.min))
        if c.max is not None:
            parts.append(not_(_idle_at_least(tenant_id, cal, c.max + 1)))
        return and_(*parts)
    if isinstance(c, Growth):
        return _between(m.growth, c.min, c.max)
    if isinstance(c, Joined):
        return m.created_at >= cal.since(c.days)
    raise AssertionError(f"unknown condition {c!r}")


def rule_sql(rule: Rule, *, tenant_id: int, cal: Calendar) -> ColumnElement[bool]:
    parts = [condition_sql(c, tenant_id=tenant_id, cal=cal) for c in rule.conditions]
    return and_(*parts) if rule.all is not None else or_(*parts)


def matching_members(session: Session, *, tenant_id: int, rule: Any, now: dt.datetime) -> Any:
    """``SELECT id FROM members_members`` of the brand's live members ``rule`` holds for."""
    cal = calendar_of(session, tenant_id, now)
    return select(Member.id).where(
        Member.tenant_id == tenant_id,
        Member.status != "erased",
        rule_sql(parse_rule(rule), tenant_id=tenant_id, cal=cal),
    )


# --- tags -----------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= 40:
        raise ValidationFailedError.field("name", "1-40 characters")
    return name


def _name_free(session: Session, *, tenant_id: int, name: str, tag_id: int | None = None) -> None:
    taken = session.scalar(
        select(Tag.id).where(Tag.tenant_id == tenant_id, Tag.name == name, Tag.id != (tag_id or 0))
    )
    if taken is not None:
        raise TagNameTakenError(f"a tag named {name!r} exists", errors={"name": "already used"})


def _flush_name(session: Session, name: str) -> None:
    # The unique (tenant, name) key decides between two requests naming tags alike.
    if flush_unique(session) is not None:
        raise TagNameTakenError(f"a tag is named {name!r} already", errors={"name": "taken"})


def create_tag(
    session: Session,
    *,
    tenant_id: int,
    name: str,
    kind: str = "manual",
    rule: Any = None,
    now: dt.datetime | None = None,
) -> Tag:
    """A new tag; an automatic one needs a valid rule and is evaluated at once."""
    name = _check_name(name)
    if kind not in ("manual", "auto"):
        raise ValidationFailedError.field("kind", "'manual' or 'auto'")
    if kind == "auto" and rule is None:
        raise ValidationFailedError.field("rule", "an automatic tag needs a rule")
    if kind == "manual" and rule is not None:
        raise ValidationFailedError.field("rule", "a manual tag has no rule")
    parsed = parse_rule(rule) if kind == "auto" else None
    _name_free(session, tenant_id=tenant_id, name=name)
    count = session.scalar(select(func.count()).where(Tag.tenant_id == tenant_id)) or 0
    if count >= MAX_TAGS:
        raise ValidationFailedError.field("name", f"a brand has at most {MAX_TAGS} tags")
    tag = Tag(
        tenant_id=tenant_id,
        name=name,
        kind=kind,
        rule=parsed.model_dump(mode="json", exclude_none=True) if parsed else None,
        created_at=now or utcnow(),
    )
    session.add(tag)
    _flush_name(session, name)
    if parsed is not None:
        evaluate_tag(session, tag, now=now or utcnow())
    return tag


def get_tag_or_raise(session: Session, *, tenant_id: int, tag_id: int) -> Tag:
    tag = session.get(Tag, tag_id)
    if tag is None or tag.tenant_id != tenant_id:
        raise TagNotFoundError(f"no tag {tag_id}")
    return tag


def update_tag(
    session: Session,
    *,
    tenant_id: int,
    tag_id: int,
    name: str | None = None,
    rule: Any = None,
    now: dt.datetime | None = None,
) -> Tag:
    """Rename a tag, or change an automatic tag's rule (re-evaluated at once)."""
    tag = get_tag_or_raise(session, tenant_id=tenant_id, tag_id=tag_id)
    if rule is not None and tag.kind != "auto":
        raise ValidationFailedError.field("rule", "a manual tag has no rule")
    parsed = parse_rule(rule) if rule is not None else None
    if name is not None:
        name = _check_name(name)
        _name_free(session, tenant_id=tenant_id, name=name, tag_id=tag.id)
        tag.name = name
    if parsed is not None:
        tag.rule = parsed.model_dump(mode="json", exclude_none=True)
    _flush_name(session, tag.name)
    if parsed is not None:
        evaluate_tag(session, tag, now=now or utcnow())
    return tag


def delete_tag(session: Session, *, tenant_id: int, tag_id: int) -> None:
    tag = get_tag_or_raise(session, tenant_id=tenant_id, tag_id=tag_id)
    session.execute(delete(MemberTag).where(MemberTag.tag_id == tag.id))
    session.execute(delete(Tag).where(Tag.id == tag.id))


@dataclass(frozen=True)
class TagView:
    id: int
    name: str
    kind: str
    rule: dict[str, Any] | None
    members: int
    created_at: dt.datetime
    evaluated_at: dt.datetime | None


def list_tags(session: Session, *, tenant_id: int) -> list[TagView]:
    """The brand's tags with how many live members carry each."""
    counts = dict(
        session.execute(
            select(MemberTag.tag_id, func.count())
            .join(Member, Member.id == MemberTag.member_id)
            .where(MemberTag.tenant_id == tenant_id, Member.status != "erased")
            .group_by(MemberTag.tag_id)
        ).all()
    )
    tags = session.scalars(select(Tag).where(Tag.tenant_id == tenant_id).order_by(Tag.id)).all()
    return [
        TagView(
            t.id, t.name, t.kind, t.rule, int(counts.get(t.id, 0)), t.created_at, t.evaluated_at
        )
        for t in tags
    ]


def _live_member(session: Session, *, tenant_id: int, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.tenant_id != tenant_id:
        raise MemberNotFoundError(f"no member {member_id}")
    if member.status == "erased":
        raise MemberErasedError(f"member {member_id} was erased")
    return member


def _manual_tag(session: Session, *, tenant_id: int, tag_id: int) -> Tag:
    tag = get_tag_or_raise(session, tenant_id=tenant_id, tag_id=tag_id)
    if tag.kind != "manual":
        raise TagNotManualError(
            f"tag {tag.name!r} is automatic: its rule decides who carries it",
            errors={"tag_id": "an automatic tag"},
        )
    return tag


def tag_member(
    session: Session, *, tenant_id: int, member_id: int, tag_id: int, now: dt.datetime | None = None
) -> bool:
    """Put a manual tag on a member; True if it was not there (idempotent)."""
    tag = _manual_tag(session, tenant_id=tenant_id, tag_id=tag_id)
    _live_member(session, tenant_id=tenant_id, member_id=member_id)
    return insert_ignore(
        session,
        MemberTag.__table__,
        {
            "member_id": member_id,
            "tag_id": tag.id,
            "tenant_id": tenant_id,
            "created_at": now or utcnow(),
        },
    )


def untag_member(session: Session, *, tenant_id: int, member_id: int, tag_id: int) -> bool:
    """Take a manual tag off a member; True if it was there (idempotent)."""
    tag = _manual_tag(session, tenant_id=tenant_id, tag_id=tag_id)
    member = session.get(Member, member_id)
    if member is None or member.tenant_id != tenant_id:
        raise MemberNotFoundError(f"no member {member_id}")
    gone = session.execute(
        delete(MemberTag).where(MemberTag.member_id == member_id, MemberTag.tag_id == tag.id)
    )
    return bool(gone.rowcount)  # type: ignore[attr-defined]


def tags_of(session: Session, member_id: int) -> Sequence[Tag]:
    """The tags a member carries, by name."""
    return session.scalars(
        select(Tag)
        .join(MemberTag, MemberTag.tag_id == Tag.id)
        .where(MemberTag.member_id == member_id)
        .order_by(Tag.name)
    ).all()


# --- evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluated:
    tags: int
    added: int
    removed: int


def evaluate_tag(session: Session, tag: Tag, *, now: dt.datetime) -> Evaluated:
    """Bring one automatic tag up to date: add who matches, remove who no longer does."""
    if session.get_bind().dialect.name == "postgresql":
        # A large brand's member sets hash in memory (the NOT IN over grouped scans of
        # ``scans.max`` is a hashed subplan only while it fits work_mem).
        session.execute(text("SET LOCAL work_mem = '256MB'"))
    matching = matching_members(session, tenant_id=tag.tenant_id, rule=tag.rule, now=now)
    stmt = (
        dialect_insert(session)(MemberTag.__table__)
        .from_select(
            ["member_id", "tag_id", "tenant_id", "created_at"],
            matching.add_columns(
                literal(tag.id), literal(tag.tenant_id), literal(now, UTCDateTime())
            ),
        )
        .on_conflict_do_nothing()
        .returning(MemberTag.__table__.c.member_id)
    )
    # Counted from RETURNING: psycopg reports no rowcount for this INSERT ... SELECT.
    added = len(session.execute(stmt).all())
    t = MemberTag.__table__.c
    # NOT EXISTS, not NOT IN: PostgreSQL turns it into an anti-join whatever the set's size
    # (a NOT IN over a million ids that does not fit work_mem is a nested loop).
    still = matching.with_only_columns(literal(1)).where(Member.id == t.member_id).exists()
    removed = session.execute(
        delete(MemberTag.__table__).where(t.tag_id == tag.id, ~still)  # type: ignore[arg-type]
    ).rowcount  # type: ignore[attr-defined]
    tag.evaluated_at = now
    session.flush()
    return Evaluated(1, max(added, 0), max(removed, 0))


def evaluate_tags(
    session: Session, *, tenant_id: int | None = None, now: dt.datetime | None = None
) -> Evaluated:
    """Recompute every automatic tag (of one brand, or all), set-wise in SQL; idempotent. Also
    takes every tag, manual ones too, off erased members."""
    now = now or utcnow()
    query = select(Tag).where(Tag.kind == "auto").order_by(Tag.tenant_id, Tag.id)
    if tenant_id is not None:
        query = query.where(Tag.tenant_id == tenant_id)
    tags = added = removed = 0
    for tag in session.scalars(query).all():
        done = evaluate_tag(session, tag, now=now)
        tags, added, removed = tags + 1, added + done.added, removed + done.removed
    erased = select(Member.id).where(Member.status == "erased")
    purge = delete(MemberTag).where(MemberTag.member_id.in_(erased))
    if tenant_id is not None:
        purge = purge.where(MemberTag.tenant_id == tenant_id)
    removed += max(session.execute(purge).rowcount, 0)  # type: ignore[attr-defined]
    return Evaluated(tags, added, removed)
