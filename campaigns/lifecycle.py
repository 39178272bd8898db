"""A campaign's life: draft → scheduled → running ⇄ paused → ended.

- **draft**: everything may change; nothing is drawn.
- **scheduled**: the draw's seed is made and sealed, and its commitment and the prize table's are
  published; stock and budget are split into shards. From here the odds, prizes, limits and
  window are fixed (changing them is a 409 ``campaign_locked``): the commitment binds them.
- **running**: its window has begun (:func:`advance_campaigns` moves it, on beat every minute;
  a scan never waits for that tick: a scheduled campaign inside its window already applies).
- **paused**: applies to no scan until resumed.
- **ended**: the window is over (or the brand ended it early); the seed is revealed, so anyone
  can recompute every draw (``yima draws verify``).

Overlap: two campaigns of a brand whose windows overlap must differ in priority, so the rule that
combines them (the higher applies; stacking ones add up to a cap, campaigns/rules.py) always has
one answer. Equal priority over overlapping windows is a 422 ``campaign_overlap``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from campaigns import rules
from campaigns.errors import (
    CampaignLockedError,
    CampaignNotFoundError,
    CampaignOverlapError,
    CampaignStateError,
)
from campaigns.fairness import new_seed, seed_commitment
from campaigns.live import forget_campaigns
from campaigns.models import MAX_SHARDS, BudgetShard, Campaign, Prize, StockShard
from core.db import utcnow
from core.errors import register_messages
from core.keyring import open_sealed, seal
from core.runtime import Runtime
from core.services import data_key

STOCK_SHARDS = MAX_SHARDS  # a prize's stock is split in up to this many rows
BUDGET_SHARDS = MAX_SHARDS
LIVE = ("scheduled", "running")


_STATUS_ZH = {
    "draft": "草稿",
    "scheduled": "已排期",
    "running": "进行中",
    "paused": "已暂停",
    "ended": "已结束",
}


def _status_zh(template: str) -> Callable[[Mapping[str, str]], str]:
    """A template whose {status} is the campaign status's Chinese name."""
    return lambda p: template.format(**{**p, "status": _STATUS_ZH.get(p["status"], p["status"])})


# The lifecycle's refusals in Chinese (core.errors.register_messages; Accept-Language: zh).
register_messages(
    (
        "campaign_overlap",
        r"the window overlaps campaign (?P<id>\d+) \((?P<name>.*)\) at the same priority "
        r"(?P<p>\d+): give one a different priority",
        "活动时间与活动 {id}（{name}）重叠且优先级同为 {p}：请为其中一个设置不同的优先级。",
    ),
    (
        "campaign_overlap",
        r"campaign (?P<id>\d+) overlaps at priority (?P<p>\d+)",
        "与活动 {id} 时间重叠，且优先级同为 {p}。",
    ),
    (
        "campaign_locked",
        r"the campaign is (?P<status>\w+): (?P<fields>.*) are bound by its published "
        r"commitment and cannot change",
        _status_zh("活动{status}：{fields} 受已公布的抽奖承诺约束，不能更改。"),
    ),
    ("campaign_locked", r"cannot change after scheduling", "活动排期后不能更改。"),
    ("campaign_state", r"an ended campaign cannot change", "已结束的活动不能更改。"),
    (
        "campaign_state",
        r"only a draft can be scheduled; this one is (?P<status>\w+)",
        _status_zh("只有草稿可以排期；此活动{status}。"),
    ),
    ("campaign_state", r"the campaign's window is already over", "活动时间已过。"),
    (
        "campaign_state",
        r"only a scheduled or running campaign can be paused \((?P<status>\w+)\)",
        _status_zh("只有已排期或进行中的活动可以暂停（此活动{status}）。"),
    ),
    (
        "campaign_state",
        r"only a paused campaign can be resumed \((?P<status>\w+)\)",
        _status_zh("只有已暂停的活动可以恢复（此活动{status}）。"),
    ),
)


# --- the seed, sealed under the brand's data key -----------------------------------------------


def _seed_key(session: Session, runtime: Runtime, tenant_id: int) -> bytes:
    return data_key(
        session,
        master_key=runtime.settings.master_key_bytes,
        tenant_id=tenant_id,
        purpose="campaign-seeds",
    )


def seal_seed(key: bytes, campaign_id: int, seed: bytes) -> bytes:
    return seal(key, seed, f"campaign:{campaign_id}".encode())


def open_seed(key: bytes, campaign_id: int, sealed: bytes) -> bytes:
    return open_sealed(key, sealed, f"campaign:{campaign_id}".encode())


def campaign_seed(session: Session, runtime: Runtime, campaign: Campaign) -> bytes | None:
    """The campaign's secret seed (None before it is scheduled)."""
    if campaign.seed_revealed is not None:
        return bytes.fromhex(campaign.seed_revealed)
    if campaign.seed_sealed is None:
        return None
    return open_seed(
        _seed_key(session, runtime, campaign.tenant_id), campaign.id, campaign.seed_sealed
    )


# --- reading ----------------------------------------------------------------------------------


def get_campaign(
    session: Session, *, tenant_id: int, campaign_id: int, for_update: bool = False
) -> Campaign | None:
    """The brand's campaign; ``for_update`` locks its row (every change of state takes it, so
    two changes of one campaign queue instead of both acting on what they read)."""
    campaign = session.get(Campaign, campaign_id, with_for_update=for_update or None)
    if campaign is None or campaign.tenant_id != tenant_id:
        return None
    return campaign


def get_campaign_or_raise(
    session: Session, *, tenant_id: int, campaign_id: int, for_update: bool = False
) -> Campaign:
    campaign = get_campaign(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=for_update
    )
    if campaign is None:
        raise CampaignNotFoundError(f"no campaign {campaign_id}")
    return campaign


def spec_of(campaign: Campaign) -> rules.CampaignSpec:
    return rules.from_json(campaign.spec)


def prizes_of(session: Session, campaign_id: int) -> list[Prize]:
    return list(
        session.scalars(
            select(Prize).where(Prize.campaign_id == campaign_id).order_by(Prize.position)
        )
    )


def list_campaigns(
    session: Session,
    *,
    tenant_id: int,
    status: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Sequence[Campaign]:
    stmt = select(Campaign).where(Campaign.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(Campaign.status == status)
    if after is not None:
        stmt = stmt.where(Campaign.id < after)
    return session.scalars(stmt.order_by(Campaign.id.desc()).limit(limit)).all()


def display_status(campaign: Campaign, now: dt.datetime | None = None) -> str:
    """The status as of ``now``: a scheduled campaign inside its window is running, one past its
    end has ended (whether or not the minute's tick has recorded it yet)."""
    now = now or utcnow()
    if campaign.status in ("scheduled", "running", "paused") and now >= campaign.ends_at:
        return "ended"
    if campaign.status == "scheduled" and now >= campaign.starts_at:
        return "running"
    return campaign.status


# --- writing ----------------------------------------------------------------------------------


def _check_overlap(
    session: Session, *, tenant_id: int, spec: rules.CampaignSpec, campaign_id: int | None
) -> None:
    others = session.execute(
        select(Campaign.id, Campaign.name, Campaign.starts_at, Campaign.ends_at).where(
            Campaign.tenant_id == tenant_id,
            Campaign.status != "ended",
            Campaign.priority == spec.priority,
            Campaign.id != (campaign_id or 0),
        )
    ).all()
    for other in others:
        if rules.windows_overlap(spec.starts_at, spec.ends_at, other.starts_at, other.ends_at):
            raise CampaignOverlapError(
                f"the window overlaps campaign {other.id} ({other.name}) at the same priority "
                f"{spec.priority}: give one a different priority",
                errors={"priority": f"campaign {other.id} overlaps at priority {spec.priority}"},
            )


def _write_prizes(session: Session, campaign: Campaign, spec: rules.CampaignSpec) -> None:
    session.execute(delete(Prize).where(Prize.campaign_id == campaign.id))
    if spec.draw is None:
        return
    for position, prize in enumerate(spec.draw.prizes):
        session.add(
            Prize(
                campaign_id=campaign.id,
                position=position,
                key=prize.key,
                name=prize.name,
                kind=prize.kind,
                stock=prize.stock,
                unit_value_fen=rules.unit_value_fen(prize, spec.draw),
                points=prize.points,
                amount_fen=prize.amount_fen,
                coupon_item_id=prize.coupon_item_id,
            )
        )


def create_campaign(
    session: Session, *, tenant_id: int, raw: dict[str, Any], actor: str
) -> Campaign:
    """A new draft campaign from its configuration (422 naming the field when it is wrong)."""
    spec = rules.check_campaign(raw)
    _check_overlap(session, tenant_id=tenant_id, spec=spec, campaign_id=None)
    now = utcnow()
    campaign = Campaign(
        tenant_id=tenant_id,
        name=spec.name,
        status="draft",
        starts_at=spec.starts_at,
        ends_at=spec.ends_at,
        priority=spec.priority,
        spec=rules.to_json(spec),
        created_at=now,
        updated_at=now,
        created_by=actor,
    )
    session.add(campaign)
    session.flush()
    _write_prizes(session, campaign, spec)
    session.flush()
    return campaign


# What may change once the commitment is published (everything else is bound by it or by
# what members were promised).
_AFTER_PUBLISHING = ("name", "description", "earn", "targeting", "fraud")


def update_campaign(
    session: Session, runtime: Runtime, *, tenant_id: int, campaign_id: int, raw: dict[str, Any]
) -> Campaign:
    """Replace the campaign's configuration. A draft changes freely; once scheduled only its
    name, description, earn rules, targeting and fraud policy may change (409
    ``campaign_locked`` for the rest: the published commitment binds the odds and prizes)."""
    campaign = get_campaign_or_raise(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
    )
    spec = rules.check_campaign(raw)
    if campaign.status == "ended":
        raise CampaignStateError("an ended campaign cannot change")
    if campaign.status != "draft":
        before = rules.to_json(spec_of(campaign))
        after = rules.to_json(spec)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        locked = [k for k in changed if k not in _AFTER_PUBLISHING]
        if locked:
            raise CampaignLockedError(
                f"the campaign is {campaign.status}: {', '.join(locked)} are bound by its "
                "published commitment and cannot change",
                errors={k: "cannot change after scheduling" for k in locked},
            )
    _check_overlap(session, tenant_id=tenant_id, spec=spec, campaign_id=campaign.id)
    campaign.name = spec.name
    campaign.starts_at = spec.starts_at
    campaign.ends_at = spec.ends_at
    campaign.priority = spec.priority
    campaign.spec = rules.to_json(spec)
    campaign.updated_at = utcnow()
    if campaign.status == "draft":
        _write_prizes(session, campaign, spec)
    session.flush()
    forget_campaigns(session, runtime, tenant_id)
    return campaign


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _make_shards(session: Session, campaign: Campaign, spec: rules.CampaignSpec) -> None:
    draw = spec.draw
    if draw is None:
        return
    top_value = 0
    for prize in prizes_of(session, campaign.id):
        top_value = max(top_value, prize.unit_value_fen)
        if prize.stock is None:
            continue
        parts = max(1, min(STOCK_SHARDS, prize.stock))
        for shard, stock in enumerate(_split(prize.stock, parts)):
            session.add(StockShard(prize_id=prize.id, shard=shard, stock=stock, issued=0))
    if draw.budget_fen is not None:
        # Each shard must hold the dearest prize, or that prize could never be paid: fewer
        # shards for a budget of a few top prizes. What the split may leave unspent is under
        # one dearest prize per shard; it never lets the total overspend.
        parts = max(1, min(BUDGET_SHARDS, draw.budget_fen // max(1, top_value)))
        for shard, limit in enumerate(_split(draw.budget_fen, parts)):
            session.add(
                BudgetShard(campaign_id=campaign.id, shard=shard, limit_fen=limit, spent_fen=0)
            )


def schedule_campaign(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    campaign_id: int,
    now: dt.datetime | None = None,
) -> Campaign:
    """Publish a draft: seal a new seed, publish its commitment and the prize table's, split stock
    and budget into shards. Refused (409) unless the campaign is a draft whose window has not
    ended."""
    now = now or utcnow()
    campaign = get_campaign_or_raise(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
    )
    if campaign.status != "draft":
        raise CampaignStateError(f"only a draft can be scheduled; this one is {campaign.status}")
    if campaign.ends_at <= now:
        raise CampaignStateError("the campaign's window is already over")
    spec = spec_of(campaign)
    if spec.draw is not None:
        seed = new_seed()
        campaign.seed_sealed = seal_seed(_seed_key(session, runtime, tenant_id), campaign.id, seed)
        campaign.seed_hash = seed_commitment(seed)
        campaign.table_hash = rules.odds_of(spec.draw).commitment()
    campaign.status = "running" if campaign.starts_at <= now else "scheduled"
    campaign.published_at = now
    campaign.updated_at = now
    _make_shards(session, campaign, spec)
    session.flush()
    forget_campaigns(session, runtime, tenant_id)
    return campaign


def pause_campaign(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    campaign_id: int,
    now: dt.datetime | None = None,
) -> Campaign:
    now = now or utcnow()
    campaign = get_campaign_or_raise(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
    )
    if display_status(campaign, now) not in LIVE:
        raise CampaignStateError(
            f"only a scheduled or running campaign can be paused ({campaign.status})"
        )
    campaign.status = "paused"
    campaign.updated_at = now
    session.flush()
    forget_campaigns(session, runtime, tenant_id)
    return campaign


def resume_campaign(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    campaign_id: int,
    now: dt.datetime | None = None,
) -> Campaign:
    now = now or utcnow()
    campaign = get_campaign_or_raise(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
    )
    if display_status(campaign, now) != "paused":
        raise CampaignStateError(f"only a paused campaign can be resumed ({campaign.status})")
    campaign.status = "running" if campaign.starts_at <= now else "scheduled"
    campaign.updated_at = now
    session.flush()
    forget_campaigns(session, runtime, tenant_id)
    return campaign


def end_campaign(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    campaign_id: int,
    now: dt.datetime | None = None,
) -> Campaign:
    """End the campaign now (or record that its window has ended) and reveal its seed."""
    now = now or utcnow()
    campaign = get_campaign_or_raise(
        session, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True
    )
    if campaign.status == "ended":
        return campaign
    _end(session, runtime, campaign, now)
    session.flush()
    forget_campaigns(session, runtime, tenant_id)
    return campaign


def _end(session: Session, runtime: Runtime, campaign: Campaign, now: dt.datetime) -> None:
    seed = campaign_seed(session, runtime, campaign)
    campaign.status = "ended"
    if campaign.ends_at > now:
        campaign.ends_at = now  # ended early: the window the draws were made in
    if seed is not None:
        campaign.seed_revealed = seed.hex()
        campaign.revealed_at = now
    campaign.updated_at = now


def advance_campaigns(session: Session, runtime: Runtime, *, now: dt.datetime | None = None) -> int:
    """Record what time has done: scheduled → running at the start, → ended (seed revealed) at
    the end. Idempotent; how many campaigns changed."""
    now = now or utcnow()
    changed = 0
    due = session.scalars(
        select(Campaign)
        .where(Campaign.status.in_(("scheduled", "running", "paused")))
        .where(
            (Campaign.ends_at <= now)
            | ((Campaign.status == "scheduled") & (Campaign.starts_at <= now))
        )
        .with_for_update(skip_locked=True)
    ).all()
    for campaign in due:
        if campaign.ends_at <= now:
            _end(session, runtime, campaign, now)
        else:
            campaign.status = "running"
            campaign.updated_at = now
        forget_campaigns(session, runtime, campaign.tenant_id)
        changed += 1
    session.flush()
    return changed
