"""The campaigns a scan may apply, kept per process so a scan reads no campaign row.

A brand's live campaigns (scheduled, running) with their parsed rules, exact odds, prizes and the
draw's seed are loaded once and trusted for ``LIVE_TTL`` seconds. A change made in this process
is seen at once (the cache is dropped after its transaction commits); another process sees it
within ``LIVE_TTL``. Nothing that must hold depends on this copy: stock, budget and limits are
decided by the database on every draw, and a paused campaign's last few seconds of draws in other
processes are draws it could have made a moment earlier.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.fairness import Odds
from campaigns.models import Campaign, Prize
from core.db import after_commit
from core.runtime import Runtime

if TYPE_CHECKING:
    from campaigns import fraud, rules

LIVE_TTL = 5.0


@dataclass(frozen=True)
class LivePrize:
    id: int
    key: str
    name: str
    kind: str
    stock: int | None
    unit_value_fen: int
    points: int | None
    amount_fen: int | None
    coupon_item_id: int | None


@dataclass(frozen=True)
class LiveCampaign:
    id: int
    tenant_id: int
    name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    priority: int
    spec: rules.CampaignSpec
    seed: bytes | None
    odds: Odds | None
    prizes: dict[str, LivePrize]
    has_budget: bool
    segments: bool  # targets RFM segments (the scan then reads the member's segment)
    policy: fraud.FraudPolicy  # the reward-fraud rules of scans this campaign rewards

    @property
    def member_limits(self) -> bool:
        """The draw limits members (draws a day or in all, wins): their counters are kept."""
        draw = self.spec.draw
        return draw is not None and (
            draw.draws_per_member_per_day is not None
            or draw.draws_per_member is not None
            or draw.wins_per_member is not None
        )

    def live_at(self, now: dt.datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def released(self, now: dt.datetime) -> Fraction:
        """The share of stock released by now under even pacing (all of it without pacing)."""
        draw = self.spec.draw
        if draw is None or draw.pacing != "even":
            return Fraction(1)
        from campaigns.rules import released_fraction

        return released_fraction(self.starts_at, self.ends_at, now)


_cache: dict[tuple[int, int], tuple[float, tuple[LiveCampaign, ...]]] = {}
_lock = threading.Lock()


def _load(session: Session, runtime: Runtime, tenant_id: int) -> tuple[LiveCampaign, ...]:
    from campaigns import fraud, rules
    from campaigns.lifecycle import campaign_seed

    found = session.scalars(
        select(Campaign)
        .where(Campaign.tenant_id == tenant_id, Campaign.status.in_(("scheduled", "running")))
        .order_by(Campaign.priority.desc(), Campaign.id)
    ).all()
    live: list[LiveCampaign] = []
    for campaign in found:
        spec = rules.from_json(campaign.spec)
        prizes = {
            p.key: LivePrize(
                p.id,
                p.key,
                p.name,
                p.kind,
                p.stock,
                p.unit_value_fen,
                p.points,
                p.amount_fen,
                p.coupon_item_id,
            )
            for p in session.scalars(select(Prize).where(Prize.campaign_id == campaign.id))
        }
        live.append(
            LiveCampaign(
                id=campaign.id,
                tenant_id=tenant_id,
                name=campaign.name,
                starts_at=campaign.starts_at,
                ends_at=campaign.ends_at,
                priority=campaign.priority,
                spec=spec,
                seed=campaign_seed(session, runtime, campaign) if spec.draw else None,
                odds=rules.odds_of(spec.draw) if spec.draw else None,
                prizes=prizes,
                has_budget=bool(spec.draw and spec.draw.budget_fen is not None),
                segments=bool(spec.targeting.segments),
                policy=fraud.check_policy(spec.fraud),
            )
        )
    return tuple(live)


def live_campaigns(session: Session, runtime: Runtime, tenant_id: int) -> tuple[LiveCampaign, ...]:
    """The brand's scheduled and running campaigns, highest priority first (cached)."""
    key = (runtime.key, tenant_id)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < LIVE_TTL:
        return hit[1]
    live = _load(session, runtime, tenant_id)
    with _lock:
        _cache[key] = (now, live)
    return live


def forget_campaigns(session: Session, runtime: Runtime, tenant_id: int) -> None:
    """Drop this process's copy once the transaction that changed a campaign commits."""

    def forget() -> None:
        with _lock:
            _cache.pop((runtime.key, tenant_id), None)

    after_commit(session, forget)
