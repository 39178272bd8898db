"""Provably fair: once a campaign ends, anyone recomputes every draw from the revealed seed and
the published table — from the database or offline from the exported file — and any record
changed after the fact (a slot, a drawn prize, a prize given, the seed) is reported."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.draws import draw_inputs
from campaigns.errors import CampaignNotFoundError, SeedNotRevealedError
from campaigns.fairness import drawn_slot, exact_odds, new_seed
from campaigns.lifecycle import end_campaign
from campaigns.models import Campaign, Prize, Reward
from campaigns.verify import (
    canonical_table,
    export_draws,
    verify_campaign,
    verify_export,
    verify_replay,
)
from core.errors import ValidationFailedError
from core.runtime import Runtime
from tests.campaigns.helpers import NOW, brand_with_members, live_campaign, scan_reward

SCANS = 80
BUDGET_FEN = 100_000
# Odds high enough that 80 scans run the cash out (3 in stock) and fall back to "thanks", but
# for a chance below 1e-8 (the seed is new each run).
PRIZES = [
    {
        "key": "cash",
        "name": "现金红包 ¥5",
        "kind": "cash",
        "probability": "3/10",
        "stock": 3,
        "amount_fen": 500,
    },
    {
        "key": "p50",
        "name": "50 积分",
        "kind": "points",
        "probability": "3/10",
        "stock": 100,
        "points": 50,
    },
    {
        "key": "mug",
        "name": "马克杯",
        "kind": "goods",
        "probability": "1/10",
        "stock": 2,
        "value_fen": 3900,
    },
    {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
]


@dataclass(frozen=True)
class Ended:
    tenant_id: int
    campaign_id: int
    other_tenant_id: int


def run_campaign(runtime: Runtime, *, scans: int = SCANS, end: bool = True) -> Ended:
    """A campaign with a budget and a draw, ``scans`` codes scanned by three members, then
    ended (its seed revealed)."""
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime)
        other, _ = brand_with_members(session, runtime, slug="rival", count=1)
        campaign = live_campaign(
            session, runtime, brand, draw={"prizes": PRIZES, "budget_fen": BUDGET_FEN}
        )
    for serial in range(1, scans + 1):
        with runtime.db.unit_of_work() as session:
            scan_reward(session, runtime, brand, people[serial % 3], serial)
    if end:
        with runtime.db.unit_of_work() as session:
            end_campaign(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                campaign_id=campaign.id,
                now=NOW + dt.timedelta(hours=1),
            )
    return Ended(brand.tenant_id, campaign.id, other.tenant_id)


def verify(runtime: Runtime, ended: Ended) -> Any:
    with runtime.db.read_only() as session:
        return verify_campaign(session, tenant_id=ended.tenant_id, campaign_id=ended.campaign_id)


def draws_of(session: Session, ended: Ended, outcome: str) -> list[Reward]:
    return list(
        session.scalars(
            select(Reward)
            .where(Reward.draw_campaign_id == ended.campaign_id, Reward.outcome == outcome)
            .order_by(Reward.id)
        )
    )


def prize_id(session: Session, ended: Ended, key: str) -> int:
    found = session.scalar(
        select(Prize.id).where(Prize.campaign_id == ended.campaign_id, Prize.key == key)
    )
    assert found is not None
    return found


# --- an honest campaign -------------------------------------------------------------------------


def test_an_honest_campaign_verifies_from_the_database_and_from_its_export(
    runtime: Runtime,
) -> None:
    ended = run_campaign(runtime)
    found = verify(runtime, ended)
    assert found.problems == [] and found.ok and found.commitments_ok
    assert found.draws == SCANS
    with runtime.db.read_only() as session:
        rewards = list(
            session.scalars(select(Reward).where(Reward.draw_campaign_id == ended.campaign_id))
        )
        campaign = session.get(Campaign, ended.campaign_id)
        assert campaign is not None
    assert found.seed_hex == campaign.seed_revealed and found.seed_hash == campaign.seed_hash
    counts = {p.key: p for p in found.per_prize}
    # Three cash envelopes in stock: more were drawn (3 in 10 of 80), the rest fell back.
    assert counts["cash"].won == 3 and counts["cash"].stock == 3
    assert counts["thanks"].fallback_given >= 1
    assert sum(p.won + p.fallback_given for p in found.per_prize) == sum(
        1 for r in rewards if r.prize_id is not None
    )
    assert found.spent_fen == sum(r.value_fen for r in rewards) > 0
    assert found.budget_fen == BUDGET_FEN

    with runtime.db.read_only() as session:
        document = export_draws(session, tenant_id=ended.tenant_id, campaign_id=ended.campaign_id)
    # What an auditor downloads verifies with no database, to the same answer.
    offline = verify_export(json.loads(json.dumps(document)))
    assert offline == found
    assert document["seed"] == campaign.seed_revealed
    assert document["table"] == [
        ["cash", "3/10"],
        ["p50", "3/10"],
        ["mug", "1/10"],
        ["thanks", "0/1"],
    ]
    first = document["draws"][0]
    assert set(first) >= {"inputs", "slot", "drawn_key", "outcome", "prize"}
    assert first["inputs"]["campaign"] == ended.campaign_id


def test_the_draws_cannot_be_verified_before_the_seed_is_revealed(runtime: Runtime) -> None:
    ended = run_campaign(runtime, scans=2, end=False)
    with runtime.db.read_only() as session:
        with pytest.raises(SeedNotRevealedError) as caught:
            verify_campaign(session, tenant_id=ended.tenant_id, campaign_id=ended.campaign_id)
        assert caught.value.status == 409
        with pytest.raises(SeedNotRevealedError):
            export_draws(session, tenant_id=ended.tenant_id, campaign_id=ended.campaign_id)
        # Another brand does not learn that the campaign exists.
        with pytest.raises(CampaignNotFoundError):
            verify_campaign(session, tenant_id=ended.other_tenant_id, campaign_id=ended.campaign_id)


# --- records changed after the fact -------------------------------------------------------------


def _change_slot(session: Session, ended: Ended) -> int:
    row = draws_of(session, ended, "won")[0]
    row.slot = (row.slot or 0) + 1
    return row.id


def _change_drawn_key(session: Session, ended: Ended) -> int:
    row = draws_of(session, ended, "nothing")[0]
    row.drawn_key = "cash"
    return row.id


def _change_prize_given(session: Session, ended: Ended) -> int:
    row = next(r for r in draws_of(session, ended, "won") if r.drawn_key == "p50")
    row.prize_id = prize_id(session, ended, "thanks")
    row.value_fen = 0
    return row.id


def _change_inputs(session: Session, ended: Ended) -> int:
    row = draws_of(session, ended, "nothing")[0]
    row.draw_inputs = {**(row.draw_inputs or {}), "serial": (row.serial + 10_000)}
    return row.id


def _change_seed(session: Session, ended: Ended) -> int:
    session.execute(
        update(Campaign)
        .where(Campaign.id == ended.campaign_id)
        .values(seed_revealed=new_seed().hex())
    )
    return 0


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (_change_slot, "is recorded, the seed gives slot"),
        (_change_drawn_key, "is recorded as drawn, the seed draws"),
        (_change_prize_given, "won 'thanks', but the seed draws 'p50'"),
        (_change_inputs, "are not its own code and member's"),
        (_change_seed, "does not match the seed hash"),
    ],
    ids=["slot", "drawn_key", "prize_given", "inputs", "seed"],
)
def test_a_changed_record_is_reported(
    runtime: Runtime, tamper: Callable[[Session, Ended], int], says: str
) -> None:
    ended = run_campaign(runtime)
    assert verify(runtime, ended).ok
    with runtime.db.unit_of_work() as session:
        reward_id = tamper(session, ended)
    found = verify(runtime, ended)
    assert not found.ok and found.problem_count >= 1
    assert any(says in p for p in found.problems), found.problems
    if reward_id:
        assert any(f"reward {reward_id}" in p for p in found.problems)
    else:  # a different seed: the commitment fails, and so do the draws recomputed with it
        assert not found.commitments_ok
        assert found.problem_count > 1


def test_a_prize_given_without_its_stock_counter_is_reported(runtime: Runtime) -> None:
    ended = run_campaign(runtime)
    with runtime.db.unit_of_work() as session:
        victim = next(r for r in draws_of(session, ended, "won") if r.drawn_key == "p50")
        session.delete(victim)  # a draw erased: the stock and budget counters still count it
    found = verify(runtime, ended)
    assert not found.ok
    assert any("stock counters show" in p for p in found.problems), found.problems
    assert any("budget counters show" in p for p in found.problems), found.problems


# --- offline: the exported document -------------------------------------------------------------


def _export(runtime: Runtime, ended: Ended) -> dict[str, Any]:
    with runtime.db.read_only() as session:
        return export_draws(session, tenant_id=ended.tenant_id, campaign_id=ended.campaign_id)


def _first(document: dict[str, Any], **where: Any) -> dict[str, Any]:
    draw: dict[str, Any] = next(
        d for d in document["draws"] if all(d[k] == v for k, v in where.items())
    )
    return draw


def _over_stock(document: dict[str, Any]) -> None:
    next(p for p in document["prizes"] if p["key"] == "cash")["stock"] = 2


def _over_budget(document: dict[str, Any]) -> None:
    document["budget_fen"] = 100


def _unit_twice(document: dict[str, Any]) -> None:
    winners = [d for d in document["draws"] if d["prize"] == "cash"]
    winners[1]["shard"], winners[1]["unit"] = winners[0]["shard"], winners[0]["unit"]


def _wrong_fallback(document: dict[str, Any]) -> None:
    _first(document, outcome="fallback")["prize"] = "p50"


def _code_twice(document: dict[str, Any]) -> None:
    document["draws"].append(copy.deepcopy(document["draws"][0]))


def _other_table(document: dict[str, Any]) -> None:
    document["table"][0] = ["cash", "2/5"]


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (_over_stock, "more than its stock of 2"),
        (_over_budget, "more than the budget"),
        (_unit_twice, "was given before"),
        (_wrong_fallback, "the published fallback is 'thanks'"),
        (_code_twice, "was drawn before"),
        (_other_table, "prize table does not match"),
    ],
    ids=["stock", "budget", "unit", "fallback", "code", "table"],
)
def test_an_edited_export_is_reported_offline(
    runtime: Runtime, tamper: Callable[[dict[str, Any]], None], says: str
) -> None:
    ended = run_campaign(runtime)
    document = _export(runtime, ended)
    assert verify_export(document).ok
    tamper(document)
    found = verify_export(document)
    assert not found.ok
    assert any(says in p for p in found.problems), found.problems


def test_an_export_that_reveals_no_seed_or_is_not_one_is_refused() -> None:
    with pytest.raises(ValidationFailedError):
        verify_export({"draws": []})
    with pytest.raises(ValidationFailedError):
        verify_export([1, 2, 3])
    with pytest.raises(SeedNotRevealedError):
        verify_export(
            {
                "format": "yima-draws-v1",
                "campaign": {"id": 1},
                "commitments": {"seed_hash": "x", "table_hash": "y"},
                "seed": None,
                "table": [],
                "prizes": [],
                "draws": [],
            }
        )


# --- the pure replay ----------------------------------------------------------------------------


def test_verify_replay_recomputes_draws_with_no_database() -> None:
    seed = bytes(range(32))  # fixed: the test below knows which draws it changes
    odds = exact_odds([("gold", "1/1000"), ("silver", "1/3")])
    table = canonical_table(odds)
    draws: list[dict[str, Any]] = []
    for serial in range(1, 41):
        inputs = draw_inputs(7, 1, serial, 100 + serial % 5)
        slot = drawn_slot(seed, inputs, odds.slots)
        key = odds.prize_of(slot)
        draws.append(
            {
                "reward_id": serial,
                "inputs": inputs,
                "slot": slot,
                "drawn_key": key,
                "outcome": "won" if key else "nothing",
                "prize": key,
            }
        )
    honest = verify_replay(seed.hex(), table, draws, campaign_id=7)
    assert honest.problems == [] and honest.draws == 40
    assert sum(honest.won.values()) == sum(1 for d in draws if d["prize"]) > 0

    # The draw of another member's scan lands elsewhere: recording it as this one's is caught.
    draws[3]["inputs"] = {**draws[3]["inputs"], "member": 999}
    draws[5] = {"reward_id": 6, "slot": "x"}  # not a draw record at all
    found = verify_replay(seed.hex(), table, draws, campaign_id=7)
    assert any(p.startswith("draw 4 (reward 4): slot") for p in found.problems), found.problems
    assert any("draw 6 (reward 6): not a draw record" in p for p in found.problems)
    # Every draw names campaign 7: replayed as campaign 8's, each is reported, the first 100.
    many = verify_replay(seed.hex(), table, draws * 3, campaign_id=8)
    assert many.problem_count > 100 and len(many.problems) == 100

    with pytest.raises(ValidationFailedError) as caught:
        verify_replay("not hex", table, [])
    assert "seed" in caught.value.errors
    with pytest.raises(ValidationFailedError) as caught:
        verify_replay(seed.hex(), [["gold", "3/2"]], [])
    assert any(name.startswith("table") for name in caught.value.errors)
