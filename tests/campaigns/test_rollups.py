"""The campaign rollups (campaigns/rollups.py): a campaign's figures read from them equal a recount
of its reward rows — before any refresh, halfway through, after it, after reviews and claw-backs,
with ids that turn up late — and a refresh racing reviews on PostgreSQL loses nothing."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

import campaigns
from campaigns import reports, rollups
from campaigns.models import (
    Campaign,
    Prize,
    Reward,
    RewardDay,
    RewardMember,
    RewardTotal,
    RollupCursor,
)
from campaigns.review import decide, held_rewards
from core.runtime import Runtime
from tests.campaigns.helpers import NOW, brand_with_members, live_campaign, scan_reward
from tests.conftest import PG_URL
from tests.factories import Brand

ZONE = "Asia/Shanghai"


def recount(session: Session, campaign: Campaign) -> dict[str, Any]:
    """What the campaign's numbers are, counted from its reward rows one by one."""
    from zoneinfo import ZoneInfo

    kinds = dict(session.execute(select(Prize.id, Prize.kind)).all())
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    downgrades: Counter[str] = Counter()
    given: Counter[tuple[str, str]] = Counter()
    by_day: dict[dt.date, list[int]] = {}
    points = rewards = 0
    engaged: set[int] = set()
    winners: set[int] = set()
    keys = dict(session.execute(select(Prize.id, Prize.key)).all())
    for r in session.scalars(select(Reward).where(Reward.tenant_id == campaign.tenant_id)):
        mine = [int(p) for c, _label, p in r.breakdown or () if c == campaign.id]
        drawn = r.draw_campaign_id == campaign.id
        if not mine and not drawn:
            continue
        rewards += 1
        statuses[r.status] += 1
        if r.status != "denied":
            points += sum(mine)
        if drawn:
            outcomes[str(r.outcome)] += 1
            engaged.add(r.member_id)
            if r.downgrade:
                downgrades[r.downgrade] += 1
            if r.prize_id is not None:
                given[(keys[r.prize_id], str(r.outcome))] += 1
                if kinds[r.prize_id] != "thanks":
                    winners.add(r.member_id)
            if r.value_fen > 0:
                day = by_day.setdefault(r.created_at.astimezone(ZoneInfo(ZONE)).date(), [0, 0])
                day[0] += r.value_fen
                day[1] += 1
    return {
        "rewards": rewards,
        "points": points,
        "outcomes": {k: n for k, n in outcomes.items() if n},
        "statuses": {k: n for k, n in statuses.items() if n},
        "downgrades": dict(downgrades),
        "winners": len(winners),
        "engaged": len(engaged),
        "given": {k: n for k, n in given.items() if n},
        "by_day": {d: tuple(v) for d, v in by_day.items()},
    }


def reported(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The same numbers as the management API and the dashboard report them."""
    t = campaign.tenant_id
    stats = reports.campaign_stats(session, tenant_id=t, campaign_id=campaign.id)
    burn = reports.budget_burn(session, tenant_id=t, campaign_id=campaign.id)
    pools = reports.prize_pools(session, tenant_id=t, campaign_id=campaign.id)
    figures = campaigns.campaign_figures(session, tenant_id=t, campaign_id=campaign.id, now=NOW)
    given = {}
    for p in pools:
        given.update({(p.key, "won"): p.won, (p.key, "fallback"): p.fallback_given})
    assert figures["draws"] == stats.draws and figures["winners"] == stats.winners
    assert figures["review_queue"] == stats.held
    return {
        "rewards": stats.rewards,
        "points": stats.points,
        "outcomes": {k: n for k, n in stats.outcomes.items() if n},
        "statuses": {k: n for k, n in stats.statuses.items() if n},
        "downgrades": stats.downgrades,
        "winners": stats.winners,
        "engaged": figures["engaged_members"],
        "given": {k: n for k, n in given.items() if n},
        "by_day": {d.day: (d.spent_fen, d.prizes) for d in burn.by_day},
    }


def counted_rows(session: Session, campaign: Campaign) -> int:
    """Rewards of the campaign already in the rollups."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(RewardDay.rewards), 0)).where(
                RewardDay.campaign_id == campaign.id
            )
        )
    )


def busy_campaign(runtime: Runtime) -> tuple[Brand, list[Any], Campaign]:
    """A draw campaign with points, scanned over two local days by six members; the fraud rules
    hold a member's third scan and after."""
    fraud = {"member_velocity": {"max": 2, "window_seconds": 86400 * 3, "action": "hold"}}
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime, count=6)
        campaign = live_campaign(session, runtime, brand, fraud=fraud)
    serial = 0
    for day in (0, 1):
        for member in people:
            for _ in range(2):
                serial += 1
                with runtime.db.unit_of_work() as session:
                    scan_reward(
                        session, runtime, brand, member, serial, now=NOW + dt.timedelta(days=day)
                    )
    return brand, people, campaign


def check(runtime: Runtime, campaign_id: int) -> dict[str, Any]:
    with runtime.db.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        truth = recount(session, campaign)
        assert reported(session, campaign) == truth
        return truth


def test_figures_equal_a_recount_before_during_and_after_a_refresh(runtime: Runtime) -> None:
    _brand, _people, campaign = busy_campaign(runtime)
    truth = check(runtime, campaign.id)  # nothing counted yet: all from the reward rows
    assert truth["rewards"] == 24
    assert truth["statuses"]["held"] == 12 and len(truth["by_day"]) >= 1
    assert truth["points"] == 240  # 10 a scan, held ones included (none denied)
    with runtime.db.read_only() as session:
        assert counted_rows(session, campaign) == 0
    # Half of the rows counted: the rest come from the reward rows.
    with runtime.db.unit_of_work() as session:
        assert rollups.refresh_batch(session, limit=10) == 10
    check(runtime, campaign.id)
    with runtime.db.read_only() as session:
        assert counted_rows(session, campaign) == 10
    done = rollups.refresh_campaign_rollups(runtime, batch_size=7)
    assert done.rewards == 14 and done.batches == 3  # 7, 7 and an empty one
    assert check(runtime, campaign.id) == truth
    with runtime.db.read_only() as session:
        assert counted_rows(session, campaign) == 24
        engaged, winners = session.execute(
            select(RewardTotal.engaged, RewardTotal.winners).where(
                RewardTotal.campaign_id == campaign.id
            )
        ).one()
        assert engaged == 6 and winners == truth["winners"]
        assert session.scalar(select(func.count()).select_from(RewardMember)) == 6
    # A second refresh counts nothing twice.
    assert rollups.refresh_campaign_rollups(runtime).rewards == 0
    assert check(runtime, campaign.id) == truth


def test_reviews_and_claw_backs_move_counted_rewards(runtime: Runtime) -> None:
    brand, _people, campaign = busy_campaign(runtime)
    rollups.refresh_campaign_rollups(runtime)
    with runtime.db.unit_of_work() as session:
        queue = held_rewards(session, tenant_id=brand.tenant_id)
        for reward, decision in zip(queue, ("release", "deny", "claw_back"), strict=False):
            decide(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                reward_id=reward.id,
                decision=decision,
                actor="reviewer",
            )
    truth = check(runtime, campaign.id)
    assert truth["statuses"] == {"granted": 13, "held": 9, "denied": 1, "clawed_back": 1}
    assert truth["points"] == 230  # the denied reward's 10 points left out
    # The fraud rules' claw-back moves a member's other granted rewards, counted ones included.
    with runtime.db.unit_of_work() as session:
        member_id = session.scalar(
            select(Reward.member_id).where(Reward.status == "granted").order_by(Reward.id)
        )
        taken = campaigns.review.claw_back_recent(
            session,
            tenant_id=brand.tenant_id,
            member_id=int(member_id or 0),
            since=NOW - dt.timedelta(days=1),
            actor="fraud-rules",
            reason="device_velocity",
        )
    assert taken >= 1
    truth = check(runtime, campaign.id)
    assert truth["statuses"]["clawed_back"] == 1 + taken
    # Counted afresh from nothing, the rollups hold the same numbers.
    with runtime.db.unit_of_work() as session:
        for table in (RewardDay, RewardMember, RewardTotal):
            session.execute(delete(table))
        session.execute(update(RollupCursor).values(last_id=0, gaps=[]))
    rollups.refresh_campaign_rollups(runtime)
    assert check(runtime, campaign.id) == truth


def test_a_reward_that_turns_up_below_the_watermark_is_counted_once(runtime: Runtime) -> None:
    _brand, _people, campaign = busy_campaign(runtime)
    with runtime.db.unit_of_work() as session:
        rows = session.scalars(select(Reward).order_by(Reward.id)).all()
        late = rows[5]
        copy = {c.name: getattr(late, c.name) for c in Reward.__table__.columns}
        # Its transaction was still open when the refresh ran: the row is not there yet.
        session.delete(late)
    rollups.refresh_campaign_rollups(runtime)
    with runtime.db.read_only() as session:
        lag = rollups.rollup_lag(session)
        assert lag["open_gaps"] == 1 and counted_rows(session, campaign) == 23
    with runtime.db.unit_of_work() as session:
        session.execute(Reward.__table__.insert().values(**copy))
    truth = check(runtime, campaign.id)  # the late row is read from the gap
    assert truth["rewards"] == 24
    rollups.refresh_campaign_rollups(runtime)
    rollups.refresh_campaign_rollups(runtime)
    with runtime.db.read_only() as session:
        assert rollups.rollup_lag(session)["open_gaps"] == 0
        assert counted_rows(session, campaign) == 24
    assert check(runtime, campaign.id) == truth


@pytest.mark.skipif(not PG_URL, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_reviews_racing_refreshes_lose_nothing(runtime: Runtime) -> None:
    """Reviewers decide held rewards in threads while refreshes count new rows: every decision
    moves a counted reward or is seen by the next refresh, never both, never neither."""
    brand, _people, campaign = busy_campaign(runtime)
    with runtime.db.read_only() as session:
        held = [r.id for r in held_rewards(session, tenant_id=brand.tenant_id)]
    assert len(held) == 12
    stop = threading.Event()
    errors: list[BaseException] = []

    def refresher() -> None:
        try:
            while not stop.is_set():
                with runtime.db.unit_of_work() as session:
                    rollups.refresh_batch(session, limit=3)
        except BaseException as exc:
            errors.append(exc)

    def reviewer(ids: list[int]) -> None:
        try:
            for reward_id in ids:
                with runtime.db.unit_of_work() as session:
                    decide(
                        session,
                        runtime,
                        tenant_id=brand.tenant_id,
                        reward_id=reward_id,
                        decision="release" if reward_id % 2 else "deny",
                        actor="reviewer",
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresher) for _ in range(2)]
    threads += [threading.Thread(target=reviewer, args=(held[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads[2:]:
        t.join()
    stop.set()
    for t in threads[:2]:
        t.join()
    assert errors == []
    rollups.refresh_campaign_rollups(runtime)
    truth = check(runtime, campaign.id)
    assert truth["statuses"].get("held", 0) == 0
    with runtime.db.read_only() as session:
        days = session.execute(
            select(RewardDay.status, func.sum(RewardDay.rewards))
            .where(RewardDay.campaign_id == campaign.id)
            .group_by(RewardDay.status)
        ).all()
    assert {s: int(n) for s, n in days if n} == truth["statuses"]


def test_the_cli_counts_the_rewards_too(runtime: Runtime) -> None:
    from click.testing import CliRunner

    from yima.cli import main

    _brand, _people, campaign = busy_campaign(runtime)
    result = CliRunner().invoke(main, ["rollups", "refresh"])
    assert result.exit_code == 0, result.output
    assert "24 campaign reward(s) counted" in result.output
    with runtime.db.read_only() as session:
        assert counted_rows(session, campaign) == 24
    again = CliRunner().invoke(main, ["rollups", "refresh"])
    assert "0 campaign reward(s) counted" in again.output
