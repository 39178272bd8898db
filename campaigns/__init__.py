"""Campaigns: campaigns and their targeting, earn rules, provably fair draws with prize pools that
never over-issue, reward-fraud rules with a review queue, and prize fulfilment through an outbox.

The scan reaches this package through :func:`reward_scan` (step 5 of the orchestrator), with the
verdict and the place passed as values. Other packages use these names only.
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
from campaigns.figures import CampaignScope, campaign_figures, campaign_scope, campaigns_overview
from campaigns.fulfilment import payout_provider, use_payout_provider
from campaigns.lifecycle import (
    advance_campaigns,
    create_campaign,
    display_status,
    end_campaign,
    get_campaign_or_raise,
    list_campaigns,
    pause_campaign,
    resume_campaign,
    schedule_campaign,
    spec_of,
    update_campaign,
)
from campaigns.payouts import (
    PayoutProvider,
    PayoutRequest,
    PayoutResult,
    PayoutState,
    RecordingPayoutProvider,
)
from campaigns.rollups import refresh_campaign_rollups
from campaigns.rules import describe, yuan_text
from campaigns.services import REWARDED_VERDICTS, DrawView, ScanFacts, ScanReward, reward_scan
from campaigns.verify import export_draws, verify_campaign, verify_export
from campaigns.views import (
    VERIFY_COMMAND,
    consumer_blueprint,
    draws_url,
    manage_blueprint,
    public_campaign,
)

__all__ = [
    "REWARDED_VERDICTS",
    "VERIFY_COMMAND",
    "CampaignScope",
    "DrawView",
    "Odds",
    "PayoutProvider",
    "PayoutRequest",
    "PayoutResult",
    "PayoutState",
    "RecordingPayoutProvider",
    "ScanFacts",
    "ScanReward",
    "advance_campaigns",
    "campaign_figures",
    "campaign_scope",
    "campaigns_overview",
    "consumer_blueprint",
    "create_campaign",
    "describe",
    "display_status",
    "draw",
    "drawn_slot",
    "draws_url",
    "end_campaign",
    "exact_odds",
    "export_draws",
    "get_campaign_or_raise",
    "list_campaigns",
    "manage_blueprint",
    "new_seed",
    "parse_probability",
    "pause_campaign",
    "payout_provider",
    "public_campaign",
    "refresh_campaign_rollups",
    "resume_campaign",
    "reward_scan",
    "schedule_campaign",
    "seed_commitment",
    "spec_of",
    "update_campaign",
    "use_payout_provider",
    "verify_campaign",
    "verify_commitments",
    "verify_export",
    "yuan_text",
]
