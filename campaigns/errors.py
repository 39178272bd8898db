"""Errors of the campaigns domain."""

from __future__ import annotations

from core.errors import ConflictError, NotFoundError, ValidationFailedError


class CampaignNotFoundError(NotFoundError):
    code = "campaign_not_found"


class CampaignOverlapError(ValidationFailedError):
    """Two campaigns of a brand overlap in time at the same priority (no rule picks one)."""

    code = "campaign_overlap"


class CampaignStateError(ConflictError):
    """The campaign's state does not allow this (scheduling a running one, resuming an ended
    one)."""

    code = "campaign_state"


class CampaignLockedError(ConflictError):
    """A scheduled campaign's odds, prizes, limits and window are bound by its commitment."""

    code = "campaign_locked"


class RewardNotFoundError(NotFoundError):
    code = "reward_not_found"


class ReviewStateError(ConflictError):
    """The reward is not waiting for this decision (already reviewed, or not held)."""

    code = "review_state"


class PrizeNotFoundError(NotFoundError):
    code = "prize_not_found"


class ClaimStateError(ConflictError):
    """The prize is not waiting for a claim (not goods, already claimed, cancelled)."""

    code = "claim_state"


class SeedNotRevealedError(ConflictError):
    """The campaign has not ended: its draws cannot be verified until its seed is revealed."""

    code = "seed_not_revealed"
