"""The rollups behind a campaign's figures: the campaigns dashboard and ``GET /campaigns/<id>/
stats|budget|prizes`` read a handful of rows, not the campaign's reward rows.

What is kept (campaigns/models.py):

- ``campaigns_reward_days``: per campaign, campaign-local day, review status, draw outcome,
  downgrade reason and prize given → rewards, the campaign's own points in them, and for its
  draws the prizes that cost money and their value. Draws by outcome, wins by prize, budget burn
  by day, rewards by status and the review queue are sums over a campaign's few hundred rows.
- ``campaigns_reward_members`` and ``campaigns_reward_totals``: who took part in each draw and
  who won a real prize, counted once each (the engaged members and the winners).

How it stays exact:

- :func:`refresh_campaign_rollups` (a Celery task every minute) reads the reward rows above the
  watermark (core/rollups.py: ids skipped by transactions still in flight are looked up again)
  and adds them, in the transaction that moves the watermark, under its row lock.
- A reward's status changes after it was counted (a review releases, denies or claws back; the
  fraud rules claw back a member's recent rewards): :func:`move_status` runs in that change's
  transaction under a share lock of the watermark and, if the reward was counted, moves its
  count from the old status to the new one. The lock orders it against a refresh: the reward
  was either counted before (and is moved) or is counted after (with its new status).
- A reader adds the rows not yet counted (above the watermark, or in its gaps) to the rollups:
  figures are never a minute behind. It reads the watermark before and after and starts again
  if a refresh moved it in between (PostgreSQL's statements each see the latest commit), so the
  rollups and the rows added to them are of one moment, without waiting for a refresh's lock.

Nothing is rounded: the rollups are sums of integers, and the tests check them against a
recount of the reward rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Date, Table, case, func, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from campaigns import rules
from campaigns.models import (
    Campaign,
    Prize,
    Reward,
    RewardDay,
    RewardMember,
    RewardTotal,
    RollupCursor,
)
from core import rollups
from core.db import dialect_insert, utcnow
from core.runtime import Runtime

CURSOR = "rewards"
_CURSORS = cast(Table, RollupCursor.__table__)
BATCH_SIZE = 20_000
SQLITE_BATCH_SIZE = 5_000
_CHUNK = 500  # keys per IN (...) lookup
_MEMBERS_CHUNK = 5_000  # (SQLite allows 32,766 parameters)
_READ_TRIES = 3  # lock-free reads before a reader takes the watermark's share lock

# (campaign, local day, status, outcome, downgrade, prize id): "" / "" / 0 when the campaign
# only gave points
Key = tuple[int, dt.date, str, str, str, int]
# rewards, points, prizes that cost money, their value in fen
Sums = list[int]

COLUMNS = (  # what the rollups read of a reward row
    Reward.id,
    Reward.tenant_id,
    Reward.member_id,
    Reward.created_at,
    Reward.status,
    Reward.breakdown,
    Reward.draw_campaign_id,
    Reward.outcome,
    Reward.downgrade,
    Reward.prize_id,
    Reward.value_fen,
)


class _Lookups:
    """What a pass looks up once: campaigns' timezones, prizes' kinds."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._zones: dict[int, ZoneInfo] = {}
        self._real: dict[int, bool] = {}

    def load(self, rows: Sequence[Any]) -> None:
        campaign_ids: set[int] = set()
        prize_ids: set[int] = set()
        for row in rows:
            campaign_ids.update(int(c) for c, _label, _p in row.breakdown or () if c is not None)
            if row.draw_campaign_id is not None:
                campaign_ids.add(int(row.draw_campaign_id))
            if row.prize_id is not None:
                prize_ids.add(int(row.prize_id))
        wanted = sorted(campaign_ids - self._zones.keys())
        for i in range(0, len(wanted), _CHUNK):
            for campaign in self.session.scalars(
                select(Campaign).where(Campaign.id.in_(wanted[i : i + _CHUNK]))
            ):
                self._zones[campaign.id] = ZoneInfo(rules.from_json(campaign.spec).timezone)
        wanted = sorted(prize_ids - self._real.keys())
        for i in range(0, len(wanted), _CHUNK):
            for prize_id, kind in self.session.execute(
                select(Prize.id, Prize.kind).where(Prize.id.in_(wanted[i : i + _CHUNK]))
            ):
                self._real[int(prize_id)] = kind != "thanks"

    def zone(self, campaign_id: int) -> ZoneInfo:
        zone = self._zones.get(campaign_id)
        if zone is None:  # a campaign gone from the table: its day is counted in the default
            zone = self._zones[campaign_id] = ZoneInfo(rules.DEFAULT_TIMEZONE)
        return zone

    def won(self, row: Any) -> bool:
        """Whether the draw gave a real prize ("thanks" is none)."""
        return row.prize_id is not None and self._real.get(int(row.prize_id), True)


def contributions(
    row: Any, lookups: _Lookups, status: str | None = None
) -> Iterator[tuple[Key, Sums]]:
    """What one reward row adds to each campaign it names (its breakdown's and its draw's), with
    its status or ``status``."""
    points: dict[int, int] = {}
    for c, _label, p in row.breakdown or ():
        if c is not None:
            points[int(c)] = points.get(int(c), 0) + int(p)
    draw = row.draw_campaign_id
    if draw is not None:
        points.setdefault(int(draw), 0)
    status = status or row.status
    for campaign_id, p in points.items():
        day = row.created_at.astimezone(lookups.zone(campaign_id)).date()
        if campaign_id == draw:
            value = int(row.value_fen or 0)
            key = (campaign_id, day, status, row.outcome or "", row.downgrade or "")
            yield (*key, int(row.prize_id or 0)), [1, p, int(value > 0), value]
        else:
            yield (campaign_id, day, status, "", "", 0), [1, p, 0, 0]


def _add(into: dict[Key, Sums], rows: Iterable[tuple[Key, Sums]], sign: int = 1) -> None:
    for key, sums in rows:
        have = into.setdefault(key, [0, 0, 0, 0])
        for i, n in enumerate(sums):
            have[i] += sign * n


def _upsert_days(session: Session, sums: dict[Key, Sums]) -> None:
    """Add ``sums`` to the day rows, in key order (concurrent movers lock rows in one order)."""
    rows = [
        {
            "campaign_id": k[0],
            "day": k[1],
            "status": k[2],
            "outcome": k[3],
            "downgrade": k[4],
            "prize_id": k[5],
            "rewards": s[0],
            "points": s[1],
            "valued": s[2],
            "value_fen": s[3],
        }
        for k, s in sorted(sums.items())
        if any(s)
    ]
    if not rows:
        return
    t = cast(Table, RewardDay.__table__)
    insert = dialect_insert(session)(t)
    set_ = {c: t.c[c] + insert.excluded[c] for c in ("rewards", "points", "valued", "value_fen")}
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[c.name for c in t.primary_key.columns], set_=set_
        ),
        rows,
    )


def _known_members(
    session: Session, pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bool]:
    """(campaign, member) → won, for the pairs already counted."""
    by_campaign: dict[int, list[int]] = defaultdict(list)
    for campaign_id, member_id in sorted(set(pairs)):
        by_campaign[campaign_id].append(member_id)
    found: dict[tuple[int, int], bool] = {}
    t = RewardMember.__table__
    for campaign_id, member_ids in by_campaign.items():
        for i in range(0, len(member_ids), _MEMBERS_CHUNK):
            for member_id, won in session.execute(
                select(t.c.member_id, t.c.won).where(
                    t.c.campaign_id == campaign_id,
                    t.c.member_id.in_(member_ids[i : i + _MEMBERS_CHUNK]),
                )
            ):
                found[(campaign_id, int(member_id))] = bool(won)
    return found


def _drawn_members(rows: Iterable[Any], lookups: _Lookups) -> dict[tuple[int, int], bool]:
    """(draw campaign, member) → whether any of their draws here gave a real prize."""
    drawn: dict[tuple[int, int], bool] = {}
    for row in rows:
        if row.draw_campaign_id is not None:
            key = (int(row.draw_campaign_id), int(row.member_id))
            drawn[key] = drawn.get(key, False) or lookups.won(row)
    return drawn


def _new_people(
    drawn: dict[tuple[int, int], bool], known: dict[tuple[int, int], bool]
) -> dict[int, list[int]]:
    """Campaign → [members engaged for the first time, first-time winners]."""
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (campaign_id, member_id), won in drawn.items():
        had = known.get((campaign_id, member_id))
        if had is None:
            out[campaign_id][0] += 1
        if won and not had:
            out[campaign_id][1] += 1
    return out


# --- refreshing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    rewards: int  # reward rows read
    batches: int
    seconds: float


def refresh_batch(
    session: Session, *, limit: int = BATCH_SIZE, now: dt.datetime | None = None
) -> int:
    """Count up to ``limit`` new reward rows (and any that turned up in gaps) into the rollups and
    move the watermark, in the session's transaction; how many new rows were read."""
    now = now or utcnow()
    cursor = rollups.claim_cursor(session, _CURSORS, CURSOR, now=now)
    new = session.execute(
        select(*COLUMNS).where(Reward.id > cursor.last_id).order_by(Reward.id).limit(limit)
    ).all()
    late = (
        session.execute(select(*COLUMNS).where(cursor.pending(Reward.id))).all()
        if cursor.gaps
        else []
    )
    rows = [*new, *late]
    lookups = _Lookups(session)
    lookups.load(rows)
    sums: dict[Key, Sums] = {}
    for row in rows:
        _add(sums, contributions(row, lookups))
    _upsert_days(session, sums)
    drawn = _drawn_members(rows, lookups)
    known = _known_members(session, drawn)
    people = _new_people(drawn, known)
    changed = [
        {"campaign_id": c, "member_id": m, "won": won}
        for (c, m), won in sorted(drawn.items())
        if known.get((c, m)) is None or (won and not known[(c, m)])
    ]
    if changed:
        t = RewardMember.__table__
        insert = dialect_insert(session)(t)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["campaign_id", "member_id"], set_={"won": insert.excluded.won}
            ),
            changed,
        )
    if people:
        t = RewardTotal.__table__
        insert = dialect_insert(session)(t)
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["campaign_id"],
                set_={
                    "engaged": t.c.engaged + insert.excluded.engaged,
                    "winners": t.c.winners + insert.excluded.winners,
                },
            ),
            [
                {"campaign_id": c, "engaged": e, "winners": w}
                for c, (e, w) in sorted(people.items())
            ],
        )
    rollups.advance(
        cursor, new_ids=[r.id for r in new], found_in_gaps=[r.id for r in late], now=now
    )
    rollups.save_cursor(session, _CURSORS, cursor, now=now)
    return len(new)


def refresh_campaign_rollups(
    runtime: Runtime, *, batch_size: int | None = None, max_batches: int | None = None
) -> Refreshed:
    """Count every reward row not yet counted, one transaction per batch, until caught up."""
    batch_size = batch_size or (SQLITE_BATCH_SIZE if runtime.db.is_sqlite else BATCH_SIZE)
    read, batches, seconds = rollups.refresh_in_batches(
        runtime,
        lambda session, limit: refresh_batch(session, limit=limit),
        batch_size=batch_size,
        max_batches=max_batches,
    )
    return Refreshed(read, batches, seconds)


def rollup_lag(session: Session) -> dict[str, Any]:
    """How far the campaign rollups have counted: last reward id, open gaps, last move."""
    last_id, gaps, moved = rollups.cursor_lag(session, _CURSORS, CURSOR)
    return {"last_reward_id": last_id, "open_gaps": gaps, "updated_at": moved}


# --- a status changing after the count ----------------------------------------------------------


def _counted(cursor: rollups.Cursor, reward_id: int) -> bool:
    return reward_id <= cursor.last_id and not any(a <= reward_id <= b for a, b, _s in cursor.gaps)


def move_status(session: Session, rows: Sequence[Any], *, from_status: str, to_status: str) -> None:
    """The reward rows ``rows`` (``Reward`` objects or rows with its columns) moved from
    ``from_status`` to ``to_status`` in this transaction: move the counted ones' counts too."""
    if not rows:
        return
    cursor = rollups.claim_cursor(session, _CURSORS, CURSOR, now=utcnow(), shared=True)
    counted = [r for r in rows if _counted(cursor, int(r.id))]
    if not counted:
        return
    lookups = _Lookups(session)
    lookups.load(counted)
    sums: dict[Key, Sums] = {}
    for row in counted:
        _add(sums, contributions(row, lookups, from_status), -1)
        _add(sums, contributions(row, lookups, to_status))
    _upsert_days(session, sums)


# --- reading ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """A campaign's rollups plus its rows not yet counted: the sums by (local day, status,
    outcome, downgrade, prize id) and its distinct engaged members and winners."""

    days: dict[tuple[dt.date, str, str, str, int], Sums] = field(default_factory=dict)
    engaged: int = 0
    winners: int = 0


def _cursor_state(session: Session) -> tuple[Any, ...]:
    row = session.execute(
        select(_CURSORS.c.last_id, _CURSORS.c.gaps, _CURSORS.c.updated_at).where(
            _CURSORS.c.name == CURSOR
        )
    ).first()
    return tuple(row) if row is not None else (0, [], None)


def campaign_tally(session: Session, campaign: Campaign) -> Tally:
    """The campaign's figures as of now: its rollups and the reward rows not yet in them, seen at
    one moment (module docstring)."""
    for attempt in range(_READ_TRIES + 1):
        if attempt < _READ_TRIES:
            before = _cursor_state(session)
            cursor = rollups.Cursor(
                CURSOR, int(before[0]), [list(map(int, g)) for g in before[1] or ()]
            )
        else:  # a refresh moved the watermark every time: wait for it instead
            cursor = rollups.claim_cursor(session, _CURSORS, CURSOR, now=utcnow(), shared=True)
        tally = _read(session, campaign, cursor)
        if attempt == _READ_TRIES or _cursor_state(session) == before:
            return tally
    raise AssertionError("unreachable")


def _read(session: Session, campaign: Campaign, cursor: rollups.Cursor) -> Tally:
    tally = Tally()
    t = RewardDay.__table__
    for day, status, outcome, downgrade, prize_id, *counted in session.execute(
        select(
            t.c.day,
            t.c.status,
            t.c.outcome,
            t.c.downgrade,
            t.c.prize_id,
            t.c.rewards,
            t.c.points,
            t.c.valued,
            t.c.value_fen,
        ).where(t.c.campaign_id == campaign.id)
    ):
        key = (day, str(status), str(outcome), str(downgrade), int(prize_id))
        tally.days[key] = [int(n) for n in counted]
    totals = session.execute(
        select(RewardTotal.engaged, RewardTotal.winners).where(
            RewardTotal.campaign_id == campaign.id
        )
    ).first()
    if totals is not None:
        tally.engaged, tally.winners = int(totals[0]), int(totals[1])
    # The rows not yet counted: the brand's, above the watermark or in its gaps, made inside the
    # campaign's window (a reward names a campaign only while it runs). PostgreSQL sums them
    # itself (a minute of draws is tens of thousands of rows); elsewhere they are read here.
    tail = [
        Reward.tenant_id == campaign.tenant_id,
        or_(Reward.id > cursor.last_id, cursor.pending(Reward.id)),
        Reward.created_at >= campaign.starts_at,
        Reward.created_at < campaign.ends_at,
    ]
    if session.get_bind().dialect.name == "postgresql":
        _tail_in_postgresql(session, campaign, tail, tally)
        return tally
    rows = session.execute(select(*COLUMNS).where(*tail)).all()
    if not rows:
        return tally
    lookups = _Lookups(session)
    lookups.load(rows)
    sums: dict[Key, Sums] = {}
    for row in rows:
        _add(sums, (c for c in contributions(row, lookups) if c[0][0] == campaign.id))
    for (_campaign, *rest), more in sums.items():
        have = tally.days.setdefault(cast(Any, tuple(rest)), [0, 0, 0, 0])
        for i, n in enumerate(more):
            have[i] += n
    drawn = {k: w for k, w in _drawn_members(rows, lookups).items() if k[0] == campaign.id}
    people = _new_people(drawn, _known_members(session, drawn)).get(campaign.id)
    if people is not None:
        tally.engaged += people[0]
        tally.winners += people[1]
    return tally


def _tail_in_postgresql(
    session: Session, campaign: Campaign, where: list[Any], tally: Tally
) -> None:
    """Add the rows matching ``where`` to ``tally`` the way :func:`contributions` would, summed by
    PostgreSQL: the campaign's points from the breakdown, its draw's columns when it drew."""
    r = Reward.__table__
    mine = (r.c.draw_campaign_id == campaign.id) | r.c.breakdown.cast(JSONB).contains(
        [[campaign.id]]
    )
    rows = select(r).where(*where, mine).cte("tail")
    drew = rows.c.draw_campaign_id == campaign.id
    element = func.jsonb_array_elements(rows.c.breakdown.cast(JSONB)).table_valued("value")
    own_points = (
        select(func.coalesce(func.sum(element.c.value.op("->>")(2).cast(BigInteger)), 0))
        .where(element.c.value.op("->>")(0) == str(campaign.id))
        .scalar_subquery()
    )
    day = func.cast(func.timezone(rules.from_json(campaign.spec).timezone, rows.c.created_at), Date)
    outcome = case((drew, func.coalesce(rows.c.outcome, "")), else_="")
    downgrade = case((drew, func.coalesce(rows.c.downgrade, "")), else_="")
    prize = case((drew, func.coalesce(rows.c.prize_id, 0)), else_=0)
    value = case((drew, rows.c.value_fen), else_=0)
    for day_, status, outcome_, downgrade_, prize_, *sums in session.execute(
        select(
            day,
            rows.c.status,
            outcome,
            downgrade,
            prize,
            func.count(),
            func.coalesce(func.sum(own_points), 0),
            func.count().filter(value > 0),
            func.coalesce(func.sum(value), 0),
        ).group_by(day, rows.c.status, outcome, downgrade, prize)
    ):
        have = tally.days.setdefault(
            (day_, str(status), str(outcome_), str(downgrade_), int(prize_)), [0, 0, 0, 0]
        )
        for i, n in enumerate(sums):
            have[i] += int(n)
    # Members of its draw not counted yet, and first-time winners.
    p = Prize.__table__
    m = RewardMember.__table__
    people = (
        select(
            rows.c.member_id,
            func.bool_or(func.coalesce(p.c.kind, "") != "thanks")
            .filter(rows.c.prize_id.is_not(None))
            .label("won"),
        )
        .select_from(rows.outerjoin(p, p.c.id == rows.c.prize_id))
        .where(drew)
        .group_by(rows.c.member_id)
        .subquery()
    )
    engaged, winners = session.execute(
        select(
            func.count().filter(m.c.member_id.is_(None)),
            func.count().filter(people.c.won.is_(True), func.coalesce(m.c.won, False).is_(False)),
        ).select_from(
            people.outerjoin(
                m, (m.c.campaign_id == campaign.id) & (m.c.member_id == people.c.member_id)
            )
        )
    ).one()
    tally.engaged += int(engaged)
    tally.winners += int(winners)
