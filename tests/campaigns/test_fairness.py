"""Provably fair draws: exact odds, commitments that bind the seed and the table, outcomes that
anyone recomputes from the revealed seed, and no bias, even for tiny odds."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from fractions import Fraction

import pytest

from campaigns.fairness import (
    VERSION,
    draw,
    drawn_slot,
    exact_odds,
    new_seed,
    seed_commitment,
    verify_commitments,
)
from core.errors import ValidationFailedError

TABLE = [("grand", "0.000001"), ("red-envelope-5", "0.05"), ("points-10", "1/3")]


def test_odds_are_exact_fractions_with_slots_for_each_prize() -> None:
    odds = exact_odds(TABLE)
    assert odds.slots == 3_000_000  # lcm(10^6, 20, 3)
    assert odds.counts == (3, 150_000, 1_000_000)
    for (_key, p), count in zip(odds.table(), odds.counts, strict=True):
        assert Fraction(count, odds.slots) == p  # nothing rounded, however small
    assert odds.nothing == 1 - Fraction(1, 10**6) - Fraction(1, 20) - Fraction(1, 3)
    assert odds.prize_of(0) == "grand" and odds.prize_of(2) == "grand"
    assert odds.prize_of(3) == "red-envelope-5" and odds.prize_of(150_002) == "red-envelope-5"
    assert odds.prize_of(150_003) == "points-10" and odds.prize_of(1_150_002) == "points-10"
    assert odds.prize_of(1_150_003) is None and odds.prize_of(2_999_999) is None


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ([("a", "0.6"), ("b", "0.5")], "prizes"),  # sums above 1
        ([("a", "-0.1")], "prizes[0].probability"),
        ([("a", "1.5")], "prizes[0].probability"),
        ([("a", 0.5)], "prizes[0].probability"),  # a float would round: refused
        ([("a", "1/0")], "prizes[0].probability"),
        ([("a", "0.1"), ("a", "0.1")], "prizes[1].key"),
        ([("a b", "0.1")], "prizes[0].key"),
        ([], "prizes"),
        ([("a", "1/999999999989"), ("b", "1/999999999961")], "prizes"),  # lcm beyond 10^18
    ],
)
def test_bad_tables_are_refused_naming_the_field(
    table: list[tuple[str, object]], field: str
) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        exact_odds(table)
    assert field in refused.value.errors


def test_a_draw_is_a_pure_function_of_the_seed_and_its_inputs() -> None:
    odds = exact_odds(TABLE)
    seed = new_seed()
    inputs = {"campaign": 7, "code": "12:3456", "member": 42, "sequence": 1}
    first = drawn_slot(seed, inputs, odds.slots)
    assert drawn_slot(seed, dict(reversed(list(inputs.items()))), odds.slots) == first
    assert draw(seed, inputs, odds) == odds.prize_of(first)
    other_inputs = {**inputs, "code": "12:3457"}
    landed = {drawn_slot(seed, {**inputs, "sequence": n}, odds.slots) for n in range(50)}
    assert len(landed) == 50  # distinct inputs, independent slots (3M slots: no collision)
    assert (
        drawn_slot(new_seed(), inputs, odds.slots) != first
        or drawn_slot(seed, other_inputs, odds.slots) != first
    )


def test_the_documented_function_can_be_recomputed_independently() -> None:
    """What a third party writes from the docstring alone gives the same slots."""
    seed = bytes(range(32))
    inputs = {"campaign": 1, "code": "9:77", "member": None, "sequence": 0}
    slots = 3_000_000
    message = (
        VERSION.encode()
        + b"\x00"
        + json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    )
    x = int.from_bytes(
        hmac.new(seed, (0).to_bytes(4, "big") + message, hashlib.sha256).digest(), "big"
    )
    assert x < (1 << 256) - ((1 << 256) % slots)
    assert drawn_slot(seed, inputs, slots) == x % slots


def test_commitments_bind_the_seed_and_the_table() -> None:
    seed = new_seed()
    odds = exact_odds(TABLE)
    seed_hash, table_hash = seed_commitment(seed), odds.commitment()
    assert verify_commitments(seed, odds, seed_hash=seed_hash, table_hash=table_hash)
    assert not verify_commitments(new_seed(), odds, seed_hash=seed_hash, table_hash=table_hash)
    changed = exact_odds([("grand", "0.000002"), *TABLE[1:]])  # odds edited after publishing
    assert not verify_commitments(seed, changed, seed_hash=seed_hash, table_hash=table_hash)
    assert (
        odds.canonical() == '[["grand","1/1000000"],["red-envelope-5","1/20"],["points-10","1/3"]]'
    )


def test_outcomes_follow_the_published_odds() -> None:
    """60,000 draws: each outcome within 5 standard deviations of its exact expectation."""
    odds = exact_odds([("a", "0.5"), ("b", "0.25"), ("c", "1/6")])
    seed = new_seed()
    n = 60_000
    seen = Counter(draw(seed, {"sequence": i}, odds) for i in range(n))
    for key, p in [*odds.table(), (None, odds.nothing)]:
        expected = n * p
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(seen[key] - expected) < 5 * float(sd), (key, seen[key], float(expected))


def test_rejection_sampling_has_no_modulo_bias_at_the_edge() -> None:
    """With 3 × 2^254 slots a plain ``x mod slots`` of a 256-bit x would give the first 2^254
    slots half the draws instead of a third; rejection keeps every slot equally likely."""
    slots = 3 << 254
    seed = new_seed()
    low = sum(drawn_slot(seed, {"i": i}, slots) < (1 << 254) for i in range(4_000))
    assert 1_200 < low < 1_470  # a third: 1,333 ± 30 (biased modulo: about 2,000)
