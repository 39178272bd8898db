"""The draw: a prize that never over-issues, from a result anyone can recompute.

One draw per code (the reward row, unique per code, is written before this runs). In order:

1. **Chance**: the member's draws today and in the campaign stay within the limits. The member's
   two counter rows (today, whole campaign) are upserted and locked in one statement, so two
   scans of one member queue there and the limits hold (campaigns/models.py ``MemberCount``).
2. **Result**: the slot is ``drawn_slot(seed, inputs)`` (campaigns/fairness.py), a pure function
   of the campaign's secret seed and the draw's inputs; the prize owning the slot is *drawn*.
3. **Grant**: the drawn prize is given when the member is under the win limit, the budget has
   its value (budget shards) and its stock has a unit released (stock shards; pacing releases
   stock in proportion to the elapsed window). Otherwise the draw is *downgraded* to the
   published fallback prize, and the reason is recorded (``member_limit``, ``budget``,
   ``out_of_stock``, ``paced``). Even pacing releases ``ceil(stock × elapsed share)`` units
   of a prize by any moment of the window.

Stock and budget rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a draw takes the
first shard nobody else holds, starting from a shard chosen by the draw, so concurrent winners of
one prize spread over its shards instead of queuing on one row. When every shard with stock is
held by someone, the draw waits for one (no false "out of stock"). The unit a draw takes is
``(prize, shard, issued after the bump)``, unique among rewards: each slot is issued at most once.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from campaigns.fairness import drawn_slot
from campaigns.live import LiveCampaign, LivePrize
from campaigns.models import MAX_SHARDS
from core.db import execute, fetch_all

_POSTGRES = "postgresql"
DOWNGRADES = ("member_limit", "budget", "out_of_stock", "paced")  # why a drawn prize was not given


@dataclass(frozen=True)
class Counts:
    """The member's counters in one campaign, locked for this transaction."""

    day_draws: int
    draws: int
    wins: int
    day_points: int
    points: int


_COUNT_ROWS = text(
    "INSERT INTO campaigns_member_counts (campaign_id, member_id, period, draws, wins, points)"
    " VALUES (:c, :m, :day, 0, 0, 0), (:c, :m, 'all', 0, 0, 0)"
    " ON CONFLICT (campaign_id, member_id, period)"
    " DO UPDATE SET draws = campaigns_member_counts.draws"
    " RETURNING period, draws, wins, points"
)

_BUMP_COUNTS = text(
    "UPDATE campaigns_member_counts SET draws = draws + :dd, wins = wins + :dw,"
    " points = points + :dp"
    " WHERE campaign_id = :c AND member_id = :m AND period IN (:day, 'all')"
)


def lock_counts(session: Session, *, campaign_id: int, member_id: int, day: str) -> Counts:
    """The member's counters (created at zero when new), locked until the transaction ends."""
    return counts_of(
        fetch_all(session, _COUNT_ROWS, {"c": campaign_id, "m": member_id, "day": day}), day
    )


def counts_of(rows: list[tuple[Any, ...]], day: str) -> Counts:
    """Counts from the counter rows (``period, draws, wins, points``) of ``day`` and ``all``."""
    by = {r[-4]: r[-3:] for r in rows}
    today, whole = by[day], by["all"]
    return Counts(today[0], whole[0], whole[1], today[2], whole[2])


def bump_counts(
    session: Session,
    *,
    campaign_id: int,
    member_id: int,
    day: str,
    draws: int = 0,
    wins: int = 0,
    points: int = 0,
) -> None:
    if draws or wins or points:
        execute(
            session,
            _BUMP_COUNTS,
            {"c": campaign_id, "m": member_id, "day": day, "dd": draws, "dw": wins, "dp": points},
        )


# --- stock and budget ---------------------------------------------------------------------------

# Shards are tried from ``start`` onwards (wrapping), so concurrent draws start apart.
_ROTATE = "CASE WHEN shard >= :start THEN shard - :start ELSE shard + 1000 END"

_TAKE_UNIT = (
    "UPDATE campaigns_stock_shards SET issued = issued + 1"
    " WHERE prize_id = :p AND shard = ("
    "  SELECT shard FROM campaigns_stock_shards"
    "  WHERE prize_id = :p AND issued < stock"
    f"  ORDER BY {_ROTATE} LIMIT 1{{lock}})"
    " RETURNING shard, issued"
)
_ANY_UNIT = text(
    "SELECT 1 FROM campaigns_stock_shards WHERE prize_id = :p AND issued < stock LIMIT 1"
)
_ISSUED = text("SELECT COALESCE(SUM(issued), 0) FROM campaigns_stock_shards WHERE prize_id = :p")
_SPEND = (
    "UPDATE campaigns_budget_shards SET spent_fen = spent_fen + :v"
    " WHERE campaign_id = :c AND shard = ("
    "  SELECT shard FROM campaigns_budget_shards"
    "  WHERE campaign_id = :c AND spent_fen + :v <= limit_fen"
    f"  ORDER BY {_ROTATE} LIMIT 1{{lock}})"
    " RETURNING shard"
)
_ANY_BUDGET = text(
    "SELECT 1 FROM campaigns_budget_shards"
    " WHERE campaign_id = :c AND spent_fen + :v <= limit_fen LIMIT 1"
)
_REFUND = text(
    "UPDATE campaigns_budget_shards SET spent_fen = spent_fen - :v"
    " WHERE campaign_id = :c AND shard = :shard"
)
_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(template: str, dialect: str, mode: str) -> Any:
    key = (template, dialect + mode)
    found = _STATEMENTS.get(key)
    if found is None:
        lock = ""
        if dialect == _POSTGRES:
            lock = " FOR UPDATE SKIP LOCKED" if mode == "skip" else " FOR UPDATE"
        found = _STATEMENTS[key] = text(template.format(lock=lock))
    return found


def _take(
    session: Session, template: str, probe: Any, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """Run a take-one-shard statement: first skipping shards others hold, then, if some shard
    could still serve, waiting for one (PostgreSQL); SQLite writers are serialised anyway."""
    dialect = session.get_bind().dialect.name
    rows = fetch_all(session, _statement(template, dialect, "skip"), params)
    if rows or dialect != _POSTGRES:
        return rows[0] if rows else None
    for _attempt in range(3):
        if not fetch_all(session, probe, params):
            return None
        rows = fetch_all(session, _statement(template, dialect, "wait"), params)
        if rows:
            return rows[0]
    return None


def take_unit(session: Session, *, prize_id: int, start: int) -> tuple[int, int] | None:
    """One unit of a stocked prize (its shard and ordinal), or None: out of stock."""
    row = _take(session, _TAKE_UNIT, _ANY_UNIT, {"p": prize_id, "start": start})
    return (int(row[0]), int(row[1])) if row else None


def paced_out(session: Session, *, prize_id: int, stock: int, released: Fraction) -> bool:
    """True when even pacing holds the prize back: ``ceil(stock × released)`` units are out by
    now. Pacing spreads prizes over the window; it is a target, not a limit (stock is the
    limit), so it reads the shards' sum without locking them: draws racing at the boundary may
    run a few units ahead of the schedule, never past the stock."""
    if released >= 1:
        return False
    due = math.ceil(stock * released)
    issued = fetch_all(session, _ISSUED, {"p": prize_id})[0][0]
    return int(issued) >= due


def spend_budget(session: Session, *, campaign_id: int, value_fen: int, start: int) -> int | None:
    """Take ``value_fen`` from one budget shard; the shard, or None when no shard has it."""
    row = _take(session, _SPEND, _ANY_BUDGET, {"c": campaign_id, "v": value_fen, "start": start})
    return int(row[0]) if row else None


def refund_budget(session: Session, *, campaign_id: int, value_fen: int, shard: int) -> None:
    execute(session, _REFUND, {"c": campaign_id, "v": value_fen, "shard": shard})


# --- the draw -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A draw's record: what the seed chose, what was given, and why they differ."""

    inputs: dict[str, Any]
    slot: int
    drawn_key: str | None
    prize: LivePrize | None  # what was given (None: nothing)
    outcome: str  # won | fallback | nothing
    downgrade: str | None  # member_limit | budget | out_of_stock | paced
    shard: int | None
    unit: int | None
    value_fen: int
    wins: int = 0  # what the member's win counter gains (a draw always counts one draw)


def draw_inputs(campaign_id: int, batch_id: int, serial: int, member_id: int) -> dict[str, Any]:
    """The facts a draw's result derives from (recorded with it; ``yima draws verify`` replays
    them): the campaign, the code and the member."""
    return {"campaign": campaign_id, "batch": batch_id, "serial": serial, "member": member_id}


def draw_prize(
    session: Session,
    campaign: LiveCampaign,
    *,
    member_id: int,
    batch_id: int,
    serial: int,
    counts: Counts | None,
    now: dt.datetime,
) -> Drawn | None:
    """Draw for one code (None: the member has no chance left today or in the campaign).
    ``counts`` are the member's counters, locked, when the draw limits members (else None: no
    counter is kept). The caller adds the draw (and ``Drawn.wins``) to the counters with the
    reward row, in one statement."""
    draw = campaign.spec.draw
    assert draw is not None and campaign.odds is not None and campaign.seed is not None
    if counts is not None and (
        (
            draw.draws_per_member_per_day is not None
            and counts.day_draws >= draw.draws_per_member_per_day
        )
        or (draw.draws_per_member is not None and counts.draws >= draw.draws_per_member)
    ):
        return None
    inputs = draw_inputs(campaign.id, batch_id, serial, member_id)
    slot = drawn_slot(campaign.seed, inputs, campaign.odds.slots)
    drawn_key = campaign.odds.prize_of(slot)
    drawn = campaign.prizes.get(drawn_key) if drawn_key is not None else None
    start = slot % MAX_SHARDS  # concurrent draws start on different shards

    downgrade: str | None = None
    if drawn is not None and drawn.kind != "thanks":
        if (
            counts is not None
            and draw.wins_per_member is not None
            and counts.wins >= draw.wins_per_member
        ):
            downgrade = "member_limit"
        else:
            granted = _grant(session, campaign, drawn, start=start, now=now)
            if isinstance(granted, str):
                downgrade = granted
            else:
                shard, unit, value = granted
                return Drawn(inputs, slot, drawn_key, drawn, "won", None, shard, unit, value, 1)
    elif drawn is not None:  # "thanks for taking part" drawn as such
        return Drawn(inputs, slot, drawn_key, drawn, "won", None, None, None, 0)

    fallback = campaign.prizes.get(draw.fallback) if draw.fallback else None
    if downgrade is not None and fallback is not None:
        granted = _grant(session, campaign, fallback, start=start, now=now)
        if not isinstance(granted, str):
            shard, unit, value = granted
            return Drawn(
                inputs, slot, drawn_key, fallback, "fallback", downgrade, shard, unit, value
            )
    return Drawn(inputs, slot, drawn_key, None, "nothing", downgrade, None, None, 0)


_GRANT_BOTH = text(
    "WITH b AS (UPDATE campaigns_budget_shards SET spent_fen = spent_fen + :v"
    " WHERE campaign_id = :c AND shard = ("
    "  SELECT shard FROM campaigns_budget_shards"
    "  WHERE campaign_id = :c AND spent_fen + :v <= limit_fen"
    f"  ORDER BY {_ROTATE} LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING shard),"
    " s AS (UPDATE campaigns_stock_shards SET issued = issued + 1"
    " WHERE prize_id = :p AND EXISTS (SELECT 1 FROM b) AND shard = ("
    "  SELECT shard FROM campaigns_stock_shards"
    "  WHERE prize_id = :p AND issued < stock"
    f"  ORDER BY {_ROTATE} LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING shard, issued)"
    " SELECT (SELECT shard FROM b), (SELECT shard FROM s), (SELECT issued FROM s)"
)


def _grant(
    session: Session, campaign: LiveCampaign, prize: LivePrize, *, start: int, now: dt.datetime
) -> tuple[int | None, int | None, int] | str:
    """Take the prize's value from the budget and a unit from its stock; (shard, unit, value) or
    the reason it cannot be given. Budget first: a unit taken cannot be put back (its ordinal
    would be issued twice), while money taken from a budget shard can.

    On PostgreSQL a prize with both a value and a stock is first tried in one statement (both
    shards taken with ``SKIP LOCKED``, the unit only when the money was had): one round trip
    instead of two for the usual win. When either part finds no free shard, the steps below
    decide, waiting for a held shard as they do."""
    value = prize.unit_value_fen
    budget_shard = None
    both = campaign.has_budget and value > 0 and prize.stock is not None
    if both and campaign.released(now) >= 1 and session.get_bind().dialect.name == _POSTGRES:
        ((budget_shard, shard, unit),) = fetch_all(
            session, _GRANT_BOTH, {"c": campaign.id, "p": prize.id, "v": value, "start": start}
        )
        if shard is not None:
            return int(shard), int(unit), value
        if budget_shard is not None:
            taken = take_unit(session, prize_id=prize.id, start=start)
            if taken is not None:
                return taken[0], taken[1], value
            refund_budget(session, campaign_id=campaign.id, value_fen=value, shard=budget_shard)
            return "out_of_stock"
    if campaign.has_budget and value > 0:
        budget_shard = spend_budget(session, campaign_id=campaign.id, value_fen=value, start=start)
        if budget_shard is None:
            return "budget"
    if prize.stock is None:
        return None, None, value
    why = None
    if paced_out(session, prize_id=prize.id, stock=prize.stock, released=campaign.released(now)):
        why = "paced"
    else:
        unit = take_unit(session, prize_id=prize.id, start=start)
        if unit is not None:
            return unit[0], unit[1], value
        why = "out_of_stock"
    if budget_shard is not None:
        refund_budget(session, campaign_id=campaign.id, value_fen=value, shard=budget_shard)
    return why
