"""Checking a campaign's draws once its seed is revealed: what "provably fair" means here.

Before a campaign starts it publishes two commitments (campaigns/fairness.py): the SHA-256 of
its secret seed and of its prize table. After it ends the seed is revealed, and every draw can be
recomputed from the seed and the draw's recorded inputs. :func:`verify_campaign` does that for a
campaign in the database; :func:`export_draws` writes everything needed as one JSON document, and
:func:`verify_export` (built on :func:`verify_replay`) checks such a document with no database, as
an auditor or ``yima draws verify --file`` does.

What is checked:

1. the revealed seed and the prize table (canonical form) match the published hashes;
2. every draw, in order: its slot and drawn prize are what the seed gives for its inputs; the
   inputs name this campaign (and, in the database, the draw's own code and member); the prize
   given follows from the outcome ("won": the drawn prize; "fallback": the published fallback,
   with the reason of the downgrade; "nothing": no prize), and its value is the prize's;
3. as a whole: no prize given more often than its stock, no unit of stock (prize, shard,
   ordinal) given twice, no code drawn twice, and the value given within the budget.

Problems are reported in words, the first :data:`MAX_PROBLEMS` of them, never raised: a
verification that finds something wrong is an answer, not an error.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import rules
from campaigns.draws import DOWNGRADES, draw_inputs
from campaigns.errors import SeedNotRevealedError
from campaigns.fairness import (
    SEED_BYTES,
    VERSION,
    Odds,
    drawn_slot,
    exact_odds,
    seed_commitment,
)
from campaigns.lifecycle import get_campaign_or_raise, prizes_of, spec_of
from campaigns.models import BudgetShard, Campaign, Reward, StockShard
from core.errors import ValidationFailedError

FORMAT = "yima-draws-v1"
MAX_PROBLEMS = 100
_BATCH = 5000  # draws read per query


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrizeCount:
    """How often one prize was given: drawn and won, or given as the fallback."""

    key: str
    stock: int | None
    won: int
    fallback_given: int


@dataclass(frozen=True)
class Verification:
    """The answer to "were this campaign's draws fair?" (``ok``: no problem found)."""

    campaign_id: int
    ok: bool
    draws: int
    seed_hex: str
    seed_hash: str
    table_hash: str
    commitments_ok: bool
    problems: list[str]  # the first MAX_PROBLEMS
    problem_count: int
    per_prize: list[PrizeCount]
    budget_fen: int | None
    spent_fen: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Replay:
    """What replaying a list of draws found (:func:`verify_replay`)."""

    draws: int
    problems: list[str]
    problem_count: int
    won: dict[str, int]
    fallback_given: dict[str, int]
    spent_fen: int


@dataclass
class _Problems:
    shown: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_PROBLEMS:
            self.shown.append(text)


# --- the published table ------------------------------------------------------------------------


def canonical_table(odds: Odds) -> list[list[str]]:
    """The prize table as published and hashed: ``[[key, "numerator/denominator"], ...]``."""
    return [[key, f"{p.numerator}/{p.denominator}"] for key, p in odds.table()]


def odds_of_table(table: object) -> Odds:
    """Exact odds from a published table (422 naming ``table`` when it is not one)."""
    if not isinstance(table, Sequence) or isinstance(table, str):
        raise ValidationFailedError.field("table", "a list of [prize key, probability] pairs")
    pairs: list[tuple[str, object]] = []
    for i, pair in enumerate(table):
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise ValidationFailedError.field(f"table[{i}]", "a [prize key, probability] pair")
        pairs.append((pair[0], pair[1]))
    try:
        return exact_odds(pairs)
    except ValidationFailedError as exc:
        raise ValidationFailedError(
            f"table: {exc.detail}",
            errors={f"table.{name}": message for name, message in exc.errors.items()},
        ) from None


def _seed_bytes(seed_hex: object) -> bytes:
    try:
        if not isinstance(seed_hex, str):
            raise ValueError
        seed = bytes.fromhex(seed_hex)
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise ValidationFailedError.field("seed", f"{SEED_BYTES} bytes as hex")
    return seed


# --- replaying draws ----------------------------------------------------------------------------


def verify_replay(
    seed_hex: str,
    table: object,
    draws: Iterable[Mapping[str, Any]],
    *,
    campaign_id: int | None = None,
    fallback: str | None = None,
    prizes: Sequence[Mapping[str, Any]] | None = None,
    budget_fen: int | None = None,
) -> Replay:
    """Recompute every draw from the revealed seed and the published table, with no database.

    ``draws`` are records as :func:`export_draws` writes them (``inputs``, ``slot``,
    ``drawn_key``, ``outcome``, ``prize``, ``downgrade``, ``shard``, ``unit``, ``value_fen``).
    With ``prizes`` (key, stock, value_fen), ``fallback`` and ``budget_fen`` the stock, value and
    budget rules are checked too. 422 when the seed or the table is not one.
    """
    problems = _Problems()
    return _replay(
        _seed_bytes(seed_hex),
        odds_of_table(table),
        draws,
        problems,
        campaign_id=campaign_id,
        fallback=fallback,
        prizes=prizes,
        budget_fen=budget_fen,
    )


@dataclass
class _Tally:
    won: Counter[str] = field(default_factory=Counter)
    fallback_given: Counter[str] = field(default_factory=Counter)
    units: set[tuple[str, int, int]] = field(default_factory=set)
    codes: set[tuple[Any, Any]] = field(default_factory=set)
    spent_fen: int = 0


def _replay(
    seed: bytes,
    odds: Odds,
    draws: Iterable[Mapping[str, Any]],
    problems: _Problems,
    *,
    campaign_id: int | None,
    fallback: str | None,
    prizes: Sequence[Mapping[str, Any]] | None,
    budget_fen: int | None,
) -> Replay:
    terms = {str(p["key"]): p for p in prizes} if prizes is not None else None
    tally = _Tally()
    count = 0
    for count, draw in enumerate(draws, start=1):
        name = f"draw {count} (reward {draw.get('reward_id', '?')})"
        try:
            _check_draw(seed, odds, draw, name, problems, tally, campaign_id, fallback, terms)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.add(f"{name}: not a draw record ({type(exc).__name__}: {exc})")
    if terms is not None:
        given = tally.won + tally.fallback_given
        for key, n in sorted(given.items()):
            stock = terms[key].get("stock") if key in terms else None
            if stock is not None and n > stock:
                problems.add(f"prize {key!r} was given {n} times, more than its stock of {stock}")
    if budget_fen is not None and tally.spent_fen > budget_fen:
        problems.add(
            f"prizes worth {rules.yuan_text(tally.spent_fen)} were given, more than the "
            f"budget of {rules.yuan_text(budget_fen)}"
        )
    return Replay(
        count,
        problems.shown,
        problems.count,
        dict(tally.won),
        dict(tally.fallback_given),
        tally.spent_fen,
    )


def _check_draw(
    seed: bytes,
    odds: Odds,
    draw: Mapping[str, Any],
    name: str,
    problems: _Problems,
    tally: _Tally,
    campaign_id: int | None,
    fallback: str | None,
    terms: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    inputs = draw["inputs"]
    if not isinstance(inputs, Mapping):
        raise TypeError("inputs are not an object")
    if campaign_id is not None and inputs.get("campaign") != campaign_id:
        problems.add(f"{name}: its inputs name campaign {inputs.get('campaign')!r}")
    code = (inputs.get("batch"), inputs.get("serial"))
    if code in tally.codes:
        problems.add(f"{name}: code {code[0]}:{code[1]} was drawn before")
    tally.codes.add(code)

    slot = drawn_slot(seed, inputs, odds.slots)
    drawn = odds.prize_of(slot)
    if draw["slot"] != slot:
        problems.add(f"{name}: slot {draw['slot']} is recorded, the seed gives slot {slot}")
    if draw["drawn_key"] != drawn:
        recorded = draw["drawn_key"]
        problems.add(f"{name}: {recorded!r} is recorded as drawn, the seed draws {drawn!r}")

    outcome, prize, downgrade = draw["outcome"], draw["prize"], draw.get("downgrade")
    if downgrade is not None and downgrade not in DOWNGRADES:
        problems.add(f"{name}: unknown downgrade reason {downgrade!r}")
    if outcome == "won":
        if drawn is None:
            problems.add(f"{name}: recorded as won, but the seed draws no prize")
        elif prize != drawn:
            problems.add(f"{name}: won {prize!r}, but the seed draws {drawn!r}")
        if downgrade is not None:
            problems.add(f"{name}: recorded as won, yet downgraded ({downgrade})")
    elif outcome == "fallback":
        if drawn is None:
            problems.add(f"{name}: given the fallback, but the seed draws no prize to fall from")
        if prize is None or prize != fallback:
            problems.add(
                f"{name}: given {prize!r} as the fallback; the published fallback is {fallback!r}"
            )
        if downgrade is None:
            problems.add(f"{name}: given the fallback with no reason for the downgrade")
    elif outcome == "nothing":
        if prize is not None:
            problems.add(f"{name}: given {prize!r} for the outcome 'nothing'")
        if drawn is not None and downgrade is None:
            problems.add(f"{name}: the seed draws {drawn!r}, yet nothing was given, for no reason")
    else:
        problems.add(f"{name}: unknown outcome {outcome!r}")

    value = int(draw.get("value_fen") or 0)
    if prize is None:
        if value:
            problems.add(f"{name}: no prize, yet a value of {rules.yuan_text(value)}")
        return
    (tally.won if outcome == "won" else tally.fallback_given)[prize] += 1
    tally.spent_fen += value
    shard, unit = draw.get("shard"), draw.get("unit")
    if shard is not None and unit is not None:
        taken = (prize, int(shard), int(unit))
        if taken in tally.units:
            problems.add(f"{name}: unit {unit} of shard {shard} of {prize!r} was given before")
        tally.units.add(taken)
    if terms is None:
        return
    terms_of = terms.get(prize)
    if terms_of is None:
        problems.add(f"{name}: given {prize!r}, which is not a prize of this campaign")
        return
    if value != terms_of.get("value_fen"):
        problems.add(
            f"{name}: given {prize!r} valued {rules.yuan_text(value)}; the prize is worth "
            f"{rules.yuan_text(int(terms_of.get('value_fen') or 0))}"
        )
    stock = terms_of.get("stock")
    if stock is not None and (unit is None or shard is None or not 1 <= int(unit) <= stock):
        problems.add(f"{name}: given {prize!r} without a unit of its stock ({unit!r})")


# --- an exported document -----------------------------------------------------------------------


def verify_export(document: object) -> Verification:
    """Check a document written by :func:`export_draws`, with no database: the commitments,
    then every draw (:func:`verify_replay`). 409 when the document reveals no seed; 422 when
    it is not such a document."""
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise ValidationFailedError.field("format", f"not a {FORMAT} document")
    try:
        campaign = document["campaign"]
        commitments = document["commitments"]
        campaign_id = int(campaign["id"])
        seed_hex = document["seed"]
        seed_hash, table_hash = str(commitments["seed_hash"]), str(commitments["table_hash"])
        prizes = list(document["prizes"])
        draws = document["draws"]
        budget_fen = document.get("budget_fen")
        fallback = document.get("fallback")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailedError.field("document", f"missing or wrong: {exc}") from None
    if seed_hex is None:
        raise SeedNotRevealedError(f"the document reveals no seed for campaign {campaign_id}")
    if not isinstance(draws, list):
        raise ValidationFailedError.field("draws", "a list of draws")
    return _verify(
        campaign_id=campaign_id,
        seed_hex=seed_hex,
        seed_hash=seed_hash,
        table_hash=table_hash,
        odds=odds_of_table(document.get("table")),
        draws=draws,
        prizes=prizes,
        fallback=fallback,
        budget_fen=budget_fen,
        problems=_Problems(),
    )


def _verify(
    *,
    campaign_id: int,
    seed_hex: str,
    seed_hash: str,
    table_hash: str,
    odds: Odds,
    draws: Iterable[Mapping[str, Any]],
    prizes: Sequence[Mapping[str, Any]],
    fallback: str | None,
    budget_fen: int | None,
    problems: _Problems,
    after: Callable[[], list[str]] | None = None,
) -> Verification:
    seed = _seed_bytes(seed_hex)
    seed_ok = seed_commitment(seed) == seed_hash
    table_ok = odds.commitment() == table_hash
    if not seed_ok:
        problems.add("the revealed seed does not match the seed hash published before the start")
    if not table_ok:
        problems.add("the prize table does not match the table hash published before the start")
    replay = _replay(
        seed,
        odds,
        draws,
        problems,
        campaign_id=campaign_id,
        fallback=fallback,
        prizes=prizes,
        budget_fen=budget_fen,
    )
    for text in after() if after is not None else ():  # checks needing every draw replayed
        problems.add(text)
    per_prize = [
        PrizeCount(
            str(p["key"]),
            p.get("stock"),
            replay.won.get(str(p["key"]), 0),
            replay.fallback_given.get(str(p["key"]), 0),
        )
        for p in prizes
    ]
    return Verification(
        campaign_id=campaign_id,
        ok=problems.count == 0,
        draws=replay.draws,
        seed_hex=seed_hex,
        seed_hash=seed_hash,
        table_hash=table_hash,
        commitments_ok=seed_ok and table_ok,
        problems=problems.shown,
        problem_count=problems.count,
        per_prize=per_prize,
        budget_fen=budget_fen,
        spent_fen=replay.spent_fen,
    )


# --- from the database --------------------------------------------------------------------------


def _revealed(session: Session, *, tenant_id: int, campaign_id: int) -> Campaign:
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if campaign.seed_revealed is None:
        if campaign.status == "ended":
            raise SeedNotRevealedError(f"campaign {campaign_id} has no draw: nothing to verify")
        raise SeedNotRevealedError(
            f"campaign {campaign_id} is {campaign.status}: its seed is revealed when it ends"
        )
    return campaign


def _header(session: Session, campaign: Campaign) -> dict[str, Any]:
    spec = spec_of(campaign)
    assert spec.draw is not None  # a revealed seed means a draw
    odds = rules.odds_of(spec.draw)
    return {
        "format": FORMAT,
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "timezone": spec.timezone,
            "starts_at": _iso(campaign.starts_at),
            "ends_at": _iso(campaign.ends_at),
        },
        "commitments": {
            "algorithm": VERSION,
            "seed_hash": campaign.seed_hash,
            "table_hash": campaign.table_hash,
            "published_at": _iso(campaign.published_at),
        },
        "seed": campaign.seed_revealed,
        "revealed_at": _iso(campaign.revealed_at),
        "table": canonical_table(odds),
        "prizes": [
            {
                "key": p.key,
                "name": p.name,
                "kind": p.kind,
                "stock": p.stock,
                "value_fen": p.unit_value_fen,
            }
            for p in prizes_of(session, campaign.id)
        ],
        "fallback": spec.draw.fallback,
        "budget_fen": spec.draw.budget_fen,
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


_DRAW_COLUMNS = (
    Reward.id,
    Reward.created_at,
    Reward.batch_id,
    Reward.serial,
    Reward.member_id,
    Reward.draw_inputs,
    Reward.slot,
    Reward.drawn_key,
    Reward.outcome,
    Reward.prize_id,
    Reward.downgrade,
    Reward.shard,
    Reward.unit,
    Reward.value_fen,
)


def _draw_records(
    session: Session, campaign: Campaign, problems: _Problems | None = None
) -> Iterator[dict[str, Any]]:
    """The campaign's draws in id order, as export records, read a batch at a time. With
    ``problems``, a draw whose recorded inputs are not its own code and member is reported."""
    keys = {p.id: p.key for p in prizes_of(session, campaign.id)}
    last = 0
    while True:
        rows = session.execute(
            select(*_DRAW_COLUMNS)
            .where(
                Reward.draw_campaign_id == campaign.id,
                Reward.tenant_id == campaign.tenant_id,
                Reward.id > last,
            )
            .order_by(Reward.id)
            .limit(_BATCH)
        ).all()
        for row in rows:
            if problems is not None:
                own = draw_inputs(campaign.id, row.batch_id, row.serial, row.member_id)
                if row.draw_inputs != own:
                    problems.add(
                        f"reward {row.id}: its recorded inputs {row.draw_inputs} are not its "
                        f"own code and member's {own}"
                    )
            prize = None
            if row.prize_id is not None:
                # A prize of another campaign is named by id: the replay reports it.
                prize = keys.get(row.prize_id, f"#{row.prize_id}")
            yield {
                "reward_id": row.id,
                "at": _iso(row.created_at),
                "inputs": row.draw_inputs,
                "slot": row.slot,
                "drawn_key": row.drawn_key,
                "outcome": row.outcome,
                "prize": prize,
                "downgrade": row.downgrade,
                "shard": row.shard,
                "unit": row.unit,
                "value_fen": row.value_fen,
            }
        if len(rows) < _BATCH:
            return
        last = rows[-1].id


def _counter_checks(session: Session, campaign: Campaign, replay_given: Counter[str]) -> list[str]:
    """The stock and budget counters must account for exactly the units and money the draws
    record (a deleted or rewritten draw shows here)."""
    found = []
    prizes = prizes_of(session, campaign.id)
    issued = dict(
        session.execute(
            select(StockShard.prize_id, func.sum(StockShard.issued))
            .where(StockShard.prize_id.in_([p.id for p in prizes]))
            .group_by(StockShard.prize_id)
        ).all()
    )
    for prize in prizes:
        if prize.stock is None:
            continue
        counted = int(issued.get(prize.id) or 0)
        given = replay_given.get(prize.key, 0)
        if counted != given:
            found.append(
                f"prize {prize.key!r}: its stock counters show {counted} issued, the draws give "
                f"it {given} times"
            )
    spent = session.scalar(
        select(func.sum(BudgetShard.spent_fen)).where(BudgetShard.campaign_id == campaign.id)
    )
    if spent is not None:
        recorded = session.scalar(
            select(func.sum(Reward.value_fen)).where(Reward.draw_campaign_id == campaign.id)
        )
        if int(spent) != int(recorded or 0):
            found.append(
                f"the budget counters show {rules.yuan_text(int(spent))} spent, the draws "
                f"{rules.yuan_text(int(recorded or 0))}"
            )
    return found


def verify_campaign(session: Session, *, tenant_id: int, campaign_id: int) -> Verification:
    """Verify every draw of an ended campaign (module docstring). 404 for no such campaign of
    the brand; 409 ``seed_not_revealed`` until it has ended."""
    campaign = _revealed(session, tenant_id=tenant_id, campaign_id=campaign_id)
    header = _header(session, campaign)
    problems = _Problems()
    given: Counter[str] = Counter()

    def counted(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            if record["prize"] is not None:
                given[record["prize"]] += 1
            yield record

    return _verify(
        campaign_id=campaign.id,
        seed_hex=header["seed"],
        seed_hash=header["commitments"]["seed_hash"] or "",
        table_hash=header["commitments"]["table_hash"] or "",
        odds=odds_of_table(header["table"]),
        draws=counted(_draw_records(session, campaign, problems)),
        prizes=header["prizes"],
        fallback=header["fallback"],
        budget_fen=header["budget_fen"],
        problems=problems,
        after=lambda: _counter_checks(session, campaign, given),
    )


def export_draws(session: Session, *, tenant_id: int, campaign_id: int) -> dict[str, Any]:
    """What an auditor downloads: the campaign, its commitments, the revealed seed, the prize
    table (canonical), the prizes, and every draw with its inputs, slot, drawn prize, outcome
    and prize given. 409 until the seed is revealed."""
    campaign = _revealed(session, tenant_id=tenant_id, campaign_id=campaign_id)
    document = _header(session, campaign)
    document["draws"] = list(_draw_records(session, campaign))
    return document
