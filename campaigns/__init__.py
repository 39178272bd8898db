"""Campaigns: earn rules, draws and prize pools (issue 6, begun: the provably fair draw).

Other packages use these names only.
"""

from campaigns.fairness import (
    Odds,
    draw,
    drawn_slot,
    exact_odds,
    new_seed,
    parse_probability,
    seed_commitment,
    verify_commitments,
)

__all__ = [
    "Odds",
    "draw",
    "drawn_slot",
    "exact_odds",
    "new_seed",
    "parse_probability",
    "seed_commitment",
    "verify_commitments",
]
