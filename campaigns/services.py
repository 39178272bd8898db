"""The scan's step 5: what a rewarded scan earns — points by the campaigns' earn rules and a draw —
once per code, after the reward-fraud rules.

:func:`reward_scan` is called by the scan orchestrator with values only (the verdict is a string
from anti_fraud; campaigns never imports it). In order:

1. the code's reward row is inserted (``campaigns_rewards``, unique per code): a second scan of
   the code, by anyone, finds it there and gets nothing new — the signed-in member who already
   holds it sees the same points and the same draw again;
2. the reward-fraud rules count the scan and give allow / hold / deny / claw back
   (campaigns/fraud.py), with reasons kept on the row for the review queue;
3. the points: the live campaigns that target this code, member and place apply their earn rules
   (the higher priority wins; stacking campaigns add up to a cap), within each campaign's per
   member caps; with no campaign, the brand's programme points. Allowed points are credited to the
   ledger (pending for the programme's window) under the ledger's own once-per-code key; held
   points wait for a review;
4. the draw of the highest-priority campaign with one (campaigns/draws.py), and its prize put in
   the fulfilment outbox, delivered after commit (held prizes wait for the review).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

import members
import traceability
from campaigns import fraud, rules
from campaigns.draws import Counts, Drawn, bump_counts, counts_of, draw_prize, lock_counts
from campaigns.fulfilment import OUTBOX_AFTER, enqueue, enqueued, outbox_row
from campaigns.live import LiveCampaign, live_campaigns
from campaigns.models import Fulfilment, MemberFirst, Prize, Reward
from core.db import UTCDateTime, execute, fetch_all, insert_ignore, utcnow
from core.runtime import Runtime

REWARDED_VERDICTS = frozenset({"genuine", "already_verified"})
_DEFAULT_POLICY = fraud.FraudPolicy()  # for scans no campaign rewards: the programme's points


@dataclass(frozen=True)
class DrawView:
    """A draw as its winner sees it."""

    reward_id: int
    campaign_id: int
    outcome: str  # won | fallback | nothing
    prize_key: str | None
    prize_name: str | None
    kind: str | None  # points | coupon | cash | goods | thanks
    points: int | None
    amount_fen: int | None
    status: str | None  # the fulfilment's: pending | held | done | claim_wanted | ...


@dataclass(frozen=True)
class ScanReward:
    """What a scan earned the signed-in member (``points`` 0: nothing, and ``why``)."""

    points: int
    pending_hours: int  # spendable after this many hours (0: at once)
    applied: bool
    # earned | held | denied | already_yours | already_claimed | not_rewarded | other_brand |
    # no_points
    why: str
    draw: DrawView | None = None
    lines: tuple[tuple[str, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ScanFacts:
    """What the orchestrator knows of the scan, as values."""

    tenant_id: int
    batch_id: int
    serial: int
    sku: str
    verdict: str
    timezone: str
    located: traceability.Located | None = None
    case: str | None = None  # "batch:serial" of the case the item is packed in
    device: str | None = None
    ip: str | None = None  # as anti_fraud stores it (the brand's IP policy), never raw
    region: str | None = None  # a label for the review queue


# The reward row's statements run on every rewarded scan: plain SQL, prepared on PostgreSQL
# (core.db.fetch_all), since building them through the ORM cost more CPU than running them. On
# PostgreSQL a scan with a draw sends two of them: the claim, which also upserts and locks the
# member's counters of the campaign that keeps them, and the finish, which writes the decision,
# adds to those counters and puts the prize in the outbox (bench/bench_draws.py).
_CLAIM_SQL = (
    "INSERT INTO campaigns_rewards (tenant_id, batch_id, serial, member_id, created_at, points,"
    " breakdown, status, reasons, device, ip, region, value_fen)"
    " VALUES (:t, :b, :s, :m, :now, 0, '[]', 'granted', '[]', :device, :ip, :region, 0)"
    " ON CONFLICT (tenant_id, batch_id, serial) DO NOTHING RETURNING id"
)
_CLAIM = text(_CLAIM_SQL).bindparams(bindparam("now", type_=UTCDateTime()))
_CLAIM_COUNTED = text(
    f"WITH r AS ({_CLAIM_SQL}),"
    " c AS (INSERT INTO campaigns_member_counts (campaign_id, member_id, period, draws, wins,"
    " points) SELECT :c, :m, p.period, 0, 0, 0 FROM r, (VALUES (CAST(:day AS VARCHAR)), ('all'))"
    " AS p (period) ON CONFLICT (campaign_id, member_id, period)"
    " DO UPDATE SET draws = campaigns_member_counts.draws RETURNING period, draws, wins, points)"
    " SELECT r.id, c.period, c.draws, c.wins, c.points FROM r LEFT JOIN c ON true"
)

_JSON_COLUMNS = ("breakdown", "reasons", "counts", "draw_inputs")
_FINISH_COLUMNS = (
    "points",
    "status",
    "draw_campaign_id",
    "slot",
    "drawn_key",
    "outcome",
    "prize_id",
    "downgrade",
    "shard",
    "unit",
    "value_fen",
)
_FINISH_SQL = (
    "UPDATE campaigns_rewards SET "
    + ", ".join(
        [f"{c} = :{c}" for c in _FINISH_COLUMNS]
        + [f"{c} = CAST(:{c} AS JSON)" for c in _JSON_COLUMNS]
    )
    + " WHERE id = :id"
)
_BUMP_SQL = (
    "UPDATE campaigns_member_counts SET draws = draws + :dd, wins = wins + :dw,"
    " points = points + :dp WHERE campaign_id = :bc AND member_id = :bm AND period IN (:day, 'all')"
)
_FINISHES: dict[tuple[bool, bool], Any] = {}


def _finish_statement(bump: bool, outbox: bool) -> Any:
    """The finish on PostgreSQL: the reward's UPDATE, with the counters' and the outbox's
    writes in the same statement when there are any."""
    found = _FINISHES.get((bump, outbox))
    if found is None:
        sql = _FINISH_SQL
        if bump or outbox:
            sql = f"WITH f AS ({_FINISH_SQL} RETURNING id)"
            if bump and outbox:
                sql += f", b AS ({_BUMP_SQL})"
            sql += OUTBOX_AFTER if outbox else f" {_BUMP_SQL}"
        found = _FINISHES[(bump, outbox)] = text(sql)
    return found


@dataclass(frozen=True)
class _Bump:
    """What one campaign's member counters gain from this scan."""

    campaign_id: int
    day: str
    draws: int = 0
    wins: int = 0
    points: int = 0


def _claim_code(
    session: Session,
    facts: ScanFacts,
    member_id: int,
    now: dt.datetime,
    counted: tuple[int, str] | None,
) -> tuple[int | None, Counts | None]:
    """Insert the code's reward row: its id (None when the code was rewarded before), and the
    member's counters of campaign ``counted`` = (id, local day), locked (None without)."""
    params = {
        "t": facts.tenant_id,
        "b": facts.batch_id,
        "s": facts.serial,
        "m": member_id,
        "now": now,
        "device": facts.device,
        "ip": facts.ip,
        "region": facts.region,
    }
    if counted is not None and session.get_bind().dialect.name == "postgresql":
        rows = fetch_all(session, _CLAIM_COUNTED, {**params, "c": counted[0], "day": counted[1]})
        if not rows:
            return None, None
        return int(rows[0][0]), counts_of(rows, counted[1])
    rows = fetch_all(session, _CLAIM, params)
    if not rows:
        return None, None
    reward_id = int(rows[0][0])
    if counted is None:
        return reward_id, None
    return reward_id, lock_counts(
        session, campaign_id=counted[0], member_id=member_id, day=counted[1]
    )


def _finish_reward(
    session: Session,
    reward_id: int,
    values: dict[str, Any],
    *,
    member_id: int,
    bump: _Bump | None,
    outbox: dict[str, Any] | None,
) -> str | None:
    """Write what the scan decided onto its reward row, add ``bump`` to the member's counters
    and put ``outbox`` (fulfilment.outbox_row) in the outbox; the outbox row's status."""
    if bump is not None and not (bump.draws or bump.wins or bump.points):
        bump = None
    if session.get_bind().dialect.name != "postgresql":
        session.execute(
            update(Reward)
            .where(Reward.id == reward_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if bump is not None:
            bump_counts(
                session,
                campaign_id=bump.campaign_id,
                member_id=member_id,
                day=bump.day,
                draws=bump.draws,
                wins=bump.wins,
                points=bump.points,
            )
        return enqueue(session, outbox) if outbox is not None else None
    params: dict[str, Any] = dict.fromkeys(_FINISH_COLUMNS + _JSON_COLUMNS)
    params.update(values, id=reward_id, value_fen=values.get("value_fen", 0))
    for column in _JSON_COLUMNS:
        value = params[column]
        if value is not None:
            # Most scans' reasons and breakdown are empty: no encoder for them.
            params[column] = "[]" if value == [] else json.dumps(value, ensure_ascii=False)
    if bump is not None:
        params.update(
            bc=bump.campaign_id,
            bm=member_id,
            day=bump.day,
            dd=bump.draws,
            dw=bump.wins,
            dp=bump.points,
        )
    statement = _finish_statement(bump is not None, outbox is not None)
    if outbox is None:
        execute(session, statement, params)
        return None
    ((fulfilment_id,),) = fetch_all(session, statement, {**params, **outbox})
    return enqueued(session, outbox, int(fulfilment_id))


def _previous(session: Session, runtime: Runtime, facts: ScanFacts, member_id: int) -> ScanReward:
    """A code already rewarded: the same result again for its holder, nothing for anyone else."""
    row = session.scalars(
        select(Reward).where(
            Reward.tenant_id == facts.tenant_id,
            Reward.batch_id == facts.batch_id,
            Reward.serial == facts.serial,
        )
    ).first()
    if row is None or row.member_id != member_id:
        return ScanReward(0, 0, False, "already_claimed")
    programme = members.get_programme(runtime, session, facts.tenant_id)
    return ScanReward(
        row.points,
        programme.pending_hours,
        False,
        "already_yours",
        draw_view(session, row),
        tuple((str(label), int(p)) for _c, label, p in row.breakdown),
    )


def draw_view(session: Session, reward: Reward) -> DrawView | None:
    if reward.draw_campaign_id is None or reward.outcome is None:
        return None
    prize = session.get(Prize, reward.prize_id) if reward.prize_id is not None else None
    status = session.scalar(select(Fulfilment.status).where(Fulfilment.reward_id == reward.id))
    return DrawView(
        reward.id,
        reward.draw_campaign_id,
        reward.outcome,
        prize.key if prize else None,
        prize.name if prize else None,
        prize.kind if prize else None,
        prize.points if prize else None,
        prize.amount_fen if prize else None,
        status,
    )


def _first_reward(session: Session, tenant_id: int, member_id: int, reward_id: int) -> bool:
    earlier = session.scalar(
        select(Reward.id)
        .where(Reward.member_id == member_id, Reward.tenant_id == tenant_id, Reward.id != reward_id)
        .limit(1)
    )
    return earlier is None


def _capped(campaign: LiveCampaign) -> bool:
    """The campaign caps the points a member earns (its member counters keep them)."""
    earn = campaign.spec.earn
    return earn.cap_per_day is not None or earn.cap_per_campaign is not None


def _matching(
    campaigns: tuple[LiveCampaign, ...],
    *,
    facts: ScanFacts,
    tier_id: int | None,
    segment: str | None,
) -> list[LiveCampaign]:
    return [
        c
        for c in campaigns
        if rules.matches(
            c.spec.targeting,
            sku=facts.sku,
            batch_id=facts.batch_id,
            located=facts.located,
            tier_id=tier_id,
            segment=segment,
        )
    ]


def _fenced(
    campaigns: tuple[LiveCampaign, ...],
    *,
    facts: ScanFacts,
    tier_id: int | None,
    segment: str | None,
) -> LiveCampaign | None:
    """The highest campaign this scan would get but for its regions (the out-of-region rule's
    evidence: codes carried to another region to farm its campaign)."""
    for c in campaigns:
        if c.spec.targeting.regions and rules.matches(
            c.spec.targeting,
            sku=facts.sku,
            batch_id=facts.batch_id,
            located=facts.located,
            tier_id=tier_id,
            segment=segment,
            ignore_regions=True,
        ):
            return c
    return None


def reward_scan(
    session: Session,
    runtime: Runtime,
    *,
    member: members.SignedIn,
    facts: ScanFacts,
    now: dt.datetime | None = None,
) -> ScanReward:
    """Step 5 of a scan for a signed-in member (module docstring). Once per code, ever."""
    if member.tenant_id != facts.tenant_id:
        return ScanReward(0, 0, False, "other_brand")
    if facts.verdict not in REWARDED_VERDICTS:
        return ScanReward(0, 0, False, "not_rewarded")
    now = now or utcnow()
    tenant_id = facts.tenant_id
    programme = members.get_programme(runtime, session, tenant_id)
    everything = tuple(c for c in live_campaigns(session, runtime, tenant_id) if c.live_at(now))
    segment = None
    if any(c.segments for c in everything):
        score = members.rfm_of(session, member.member_id)
        segment = score.segment if score is not None else None
    matching = _matching(everything, facts=facts, tier_id=member.tier_id, segment=segment)
    top = matching[0] if matching else None
    draw_campaign = next((c for c in matching if c.spec.draw is not None), None)

    # The member's counters of one campaign are locked by the claim itself: the draw's when it
    # keeps them, else the first campaign capping points.
    counted = next(
        (
            c
            for c in ([draw_campaign] if draw_campaign and draw_campaign.member_limits else [])
            + [c for c in matching if _capped(c)]
        ),
        None,
    )
    counted_day = counted.spec.local_time(now).date().isoformat() if counted else ""
    reward_id, counted_counts = _claim_code(
        session,
        facts,
        member.member_id,
        now,
        (counted.id, counted_day) if counted is not None else None,
    )
    if reward_id is None:
        return _previous(session, runtime, facts, member.member_id)
    # campaigns whose member counters this scan holds
    locked: dict[int, Counts] = {}
    if counted is not None and counted_counts is not None:
        locked[counted.id] = counted_counts

    # Reward-fraud rules (the top campaign's policy, or the defaults).
    fenced = (
        None
        if top is not None
        else _fenced(everything, facts=facts, tier_id=member.tier_id, segment=segment)
    )
    judged_by = top or fenced
    policy = judged_by.policy if judged_by is not None else _DEFAULT_POLICY
    # A matched campaign holds the place (or targets none); only a fenced one is outside it.
    where: Any = "untargeted"
    if fenced is not None:
        where = fenced.spec.targeting.region_check(facts.located)
    elif top is not None and top.spec.targeting.regions:
        where = "inside"
    judged = fraud.reward_counters(runtime).record_and_check(
        fraud.RewardFacts(
            tenant_id=tenant_id,
            campaign_id=top.id if top else None,
            member_id=member.member_id,
            member_created_at=member.created_at or now,
            phone_block=member.phone_block,
            device=facts.device,
            ip=facts.ip,
            case=facts.case,
            region_check=where,
            now=now,
            code=f"{facts.batch_id}:{facts.serial}",
        ),
        policy,
    )
    action = judged.action

    # Points by the earn rules: each campaign's own, within its per-member caps (counted in the
    # campaign's timezone), then combined by priority and stacking.
    multiplier = Decimal(
        str(members.scan_multiplier(runtime, session, tenant_id=tenant_id, tier_id=member.tier_id))
    )
    # The member's first rewarded scan of the brand (held counts; denied does not): no earlier
    # reward row, and the one row per member decides between concurrent first scans.
    first_scan = False
    if action in ("allow", "hold") and any(c.spec.earn.first_scan_bonus for c in matching):
        first_scan = _first_reward(
            session, tenant_id, member.member_id, reward_id
        ) and insert_ignore(
            session,
            MemberFirst.__table__,
            {
                "tenant_id": tenant_id,
                "member_id": member.member_id,
                "batch_id": facts.batch_id,
                "serial": facts.serial,
            },
        )
    bumps: dict[int, _Bump] = {}  # what each campaign's member counters gain
    breakdown: list[list[Any]] = []
    if not matching:
        points = rules.round_half_up(programme.scan_points * multiplier)
        if points:
            breakdown.append([None, "base", points])
    else:
        earned = []
        capped_days: dict[int, str] = {}
        for c in matching:
            local = c.spec.local_time(now)
            one = rules.earn_points(
                c.spec.earn,
                base_points=programme.scan_points,
                tier_id=member.tier_id,
                tier_multiplier=multiplier,
                sku=facts.sku,
                local_now=local,
                first_scan=first_scan,
            )
            earn = c.spec.earn
            if _capped(c):
                day = capped_days[c.id] = local.date().isoformat()
                counts = locked.get(c.id) or lock_counts(
                    session, campaign_id=c.id, member_id=member.member_id, day=day
                )
                locked[c.id] = counts
                allowed = rules.cap_points(
                    one.points,
                    day_so_far=counts.day_points,
                    campaign_so_far=counts.points,
                    earn=earn,
                )
                if allowed < one.points:
                    one = rules.Earned(allowed, (*one.lines, ("cap", allowed - one.points)))
            earned.append((c.spec, one))
        points, contributions = rules.combine(earned)
        by_spec = {id(c.spec): c for c in matching}
        for spec, given, lines in contributions:
            campaign = by_spec[id(spec)]
            if campaign.id in capped_days and given and action in ("allow", "hold"):
                bumps[campaign.id] = _Bump(campaign.id, capped_days[campaign.id], points=given)
            breakdown.extend([campaign.id, label, p] for label, p in lines)

    status = {"allow": "granted", "hold": "held"}.get(action, "denied")
    credited = 0
    if action == "allow" and points > 0:
        result = members.reward_scan(
            session,
            runtime,
            member=member,
            tenant_id=tenant_id,
            batch_id=facts.batch_id,
            serial=facts.serial,
            verdict=facts.verdict,
            timezone=facts.timezone,
            points=points,
            now=now,
        )
        credited = result.points
    if action == "claw_back":
        from campaigns.review import claw_back_recent

        claw_back_recent(
            session,
            tenant_id=tenant_id,
            member_id=member.member_id,
            since=now - programme.pending_for,
            actor="fraud-rules",
            reason=",".join(judged.reasons),
            keep=reward_id,
            now=now,
        )

    # The draw.
    drawn: Drawn | None = None
    if draw_campaign is not None and status != "denied":
        day = draw_campaign.spec.local_time(now).date().isoformat()
        draw_counts = locked.get(draw_campaign.id)
        if draw_counts is None and draw_campaign.member_limits:
            draw_counts = locked[draw_campaign.id] = lock_counts(
                session, campaign_id=draw_campaign.id, member_id=member.member_id, day=day
            )
        drawn = draw_prize(
            session,
            draw_campaign,
            member_id=member.member_id,
            batch_id=facts.batch_id,
            serial=facts.serial,
            counts=draw_counts,
            now=now,
        )
        if drawn is not None and draw_counts is not None:
            earlier = bumps.get(draw_campaign.id, _Bump(draw_campaign.id, day))
            bumps[draw_campaign.id] = _Bump(draw_campaign.id, day, 1, drawn.wins, earlier.points)
    values: dict[str, Any] = {
        "points": points if status != "denied" else 0,
        "breakdown": breakdown,
        "status": status,
        "reasons": list(judged.reasons),
        "counts": judged.counts or None,
    }
    outbox = None
    if drawn is not None:
        assert draw_campaign is not None
        values.update(
            draw_campaign_id=draw_campaign.id,
            draw_inputs=drawn.inputs,
            slot=drawn.slot,
            drawn_key=drawn.drawn_key,
            outcome=drawn.outcome,
            prize_id=drawn.prize.id if drawn.prize else None,
            downgrade=drawn.downgrade,
            shard=drawn.shard,
            unit=drawn.unit,
            value_fen=drawn.value_fen,
        )
        if drawn.prize is not None and drawn.prize.kind != "thanks":
            outbox = outbox_row(
                reward_id=reward_id,
                tenant_id=tenant_id,
                campaign_id=draw_campaign.id,
                member_id=member.member_id,
                prize=drawn.prize,
                held=status == "held",
                merchant_id=runtime.settings.payout_merchant_id,
                now=now,
            )
    # The counters the claim locked gain in the finish; any other campaign's, on their own.
    lead = bumps.pop(counted.id, None) if counted is not None else None
    for bump in bumps.values():
        bump_counts(
            session,
            campaign_id=bump.campaign_id,
            member_id=member.member_id,
            day=bump.day,
            draws=bump.draws,
            wins=bump.wins,
            points=bump.points,
        )
    fulfilment_status = _finish_reward(
        session, reward_id, values, member_id=member.member_id, bump=lead, outbox=outbox
    )
    view = None
    if drawn is not None and draw_campaign is not None:
        prize = drawn.prize
        view = DrawView(
            reward_id,
            draw_campaign.id,
            drawn.outcome,
            prize.key if prize else None,
            prize.name if prize else None,
            prize.kind if prize else None,
            prize.points if prize else None,
            prize.amount_fen if prize else None,
            fulfilment_status,
        )
    lines = tuple((str(label), int(p)) for _c, label, p in breakdown)
    if status == "denied":
        return ScanReward(0, 0, False, "denied", view, ())
    if status == "held":
        return ScanReward(points, programme.pending_hours, True, "held", view, lines)
    if credited <= 0:
        return ScanReward(0, 0, False, "no_points", view, lines)
    return ScanReward(credited, programme.pending_hours, True, "earned", view, lines)
