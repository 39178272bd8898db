"""A campaign's figures for the dashboards, built from the reports (campaigns/reports.py) over
one tally of its rollups (campaigns/rollups.py) and the stock and budget shards, plus what the
scan dashboards need to filter by a campaign (its window and targeting). Read-only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from campaigns.lifecycle import display_status, get_campaign_or_raise, list_campaigns, spec_of
from campaigns.reports import burn_of, pools_of, stats_of
from campaigns.rollups import campaign_tally
from core.db import utcnow


@dataclass(frozen=True)
class CampaignScope:
    """The scans a campaign is about: its window and targeted SKUs, batches and regions
    (empty: no condition on that dimension)."""

    campaign_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    skus: tuple[str, ...]
    batch_ids: tuple[int, ...]
    regions: tuple[str, ...]


def campaign_scope(session: Session, *, tenant_id: int, campaign_id: int) -> CampaignScope:
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    targeting = spec_of(campaign).targeting
    return CampaignScope(
        campaign_id=campaign.id,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        skus=tuple(targeting.skus),
        batch_ids=tuple(targeting.batches),
        regions=tuple(targeting.regions),
    )


def campaign_figures(
    session: Session, *, tenant_id: int, campaign_id: int, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Draws by outcome, wins by prize, budget burn (by local day) and pacing against the share
    of the window elapsed, members engaged and the cost per engaged member, the review queue."""
    now = now or utcnow()
    campaign = get_campaign_or_raise(session, tenant_id=tenant_id, campaign_id=campaign_id)
    tally = campaign_tally(session, campaign)
    stats = stats_of(tally)
    burn = burn_of(session, campaign, tally)
    pools = pools_of(session, campaign, tally)
    engaged = tally.engaged
    held = sum(
        sums[0]
        for (_day, status, outcome, _downgrade, _prize), sums in tally.days.items()
        if outcome and status == "held"
    )
    window = (campaign.ends_at - campaign.starts_at).total_seconds()
    elapsed = min(max((now - campaign.starts_at).total_seconds() / window, 0.0), 1.0)
    expected = round(burn.budget_fen * elapsed) if burn.budget_fen is not None else None
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": display_status(campaign, now),
        "starts_at": campaign.starts_at.isoformat(),
        "ends_at": campaign.ends_at.isoformat(),
        "draws": stats.draws,
        "outcomes": stats.outcomes,
        "winners": stats.winners,
        "rewards": stats.rewards,
        "points": stats.points,
        "prizes": [
            {
                "key": p.key,
                "name": p.name,
                "kind": p.kind,
                "stock": p.stock,
                "issued": p.issued,
                "left": p.left,
                "won": p.won,
                "fallback_given": p.fallback_given,
                "unit_value_fen": p.unit_value_fen,
            }
            for p in pools
        ],
        "budget": {
            "budget_fen": burn.budget_fen,
            "spent_fen": burn.spent_fen,
            "left_fen": burn.left_fen,
            "timezone": burn.timezone,
            "by_day": [
                {"day": d.day.isoformat(), "spent_fen": d.spent_fen, "prizes": d.prizes}
                for d in burn.by_day
            ],
        },
        "pacing": {
            "elapsed_share": round(elapsed, 4),
            "expected_spend_fen": expected,
            "spend_vs_expected": round(burn.spent_fen / expected, 4) if expected else None,
        },
        "engaged_members": engaged,
        "cost_per_engaged_member_fen": -(-burn.spent_fen // engaged) if engaged else None,
        "review_queue": held,
    }


def campaigns_overview(
    session: Session,
    *,
    tenant_id: int,
    first: dt.datetime,
    end: dt.datetime,
    campaign_id: int | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The figures of one campaign, or of the brand's latest campaigns whose window meets
    [first, end) (drafts left out)."""
    if campaign_id is not None:
        return [campaign_figures(session, tenant_id=tenant_id, campaign_id=campaign_id)]
    out = []
    for campaign in list_campaigns(session, tenant_id=tenant_id, limit=200):
        if campaign.status == "draft" or campaign.ends_at <= first or campaign.starts_at >= end:
            continue
        out.append(campaign_figures(session, tenant_id=tenant_id, campaign_id=campaign.id))
        if len(out) == limit:
            break
    return out
