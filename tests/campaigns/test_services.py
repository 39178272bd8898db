"""The scan's reward through campaigns: earn rules, one draw per code, stock, budget, limits,
pacing and fallback, the lifecycle, the fraud rules' hold and the review, and prize delivery."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

import campaigns
import members
from campaigns.fairness import seed_commitment, verify_commitments
from campaigns.fulfilment import claim_goods, deliver, due_deliveries, shipping_of
from campaigns.lifecycle import (
    advance_campaigns,
    create_campaign,
    end_campaign,
    pause_campaign,
    resume_campaign,
    update_campaign,
)
from campaigns.models import Campaign, Fulfilment, Reward, StockShard
from campaigns.review import decide, held_rewards
from campaigns.rules import odds_of
from core.errors import ConflictError, ValidationFailedError
from core.runtime import Runtime
from tests.campaigns.helpers import (
    END,
    NOW,
    brand_with_members,
    config,
    live_campaign,
    scan_reward,
)


def _only(kind: str, **prize: Any) -> dict[str, Any]:
    """A draw whose one prize is certain (probability 1), with a points fallback."""
    return {
        "prizes": [
            {"key": "p", "name": "奖品", "kind": kind, "probability": "1", **prize},
            {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
        ],
        "fallback": "thanks",
    }


def _balance(session: Any, member: members.SignedIn) -> members.Points:
    return members.balance_of(session, member.member_id)


def test_a_scan_earns_the_campaigns_points_and_one_draw_per_code(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, (alice, bob, _carol) = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, earn={"points_per_scan": 30})
    with runtime.db.unit_of_work() as session:
        first = scan_reward(session, runtime, brand, alice, 1)
    assert (first.why, first.points) == ("earned", 30)
    assert first.draw is not None and first.draw.outcome in ("won", "nothing")
    with runtime.db.unit_of_work() as session:
        again = scan_reward(session, runtime, brand, alice, 1)
        other = scan_reward(session, runtime, brand, bob, 1)
        assert session.scalar(select(func.count()).select_from(Reward)) == 1
        assert _balance(session, alice).pending == 30
    # Asking again gives the same result; nobody else gets anything for the code.
    assert again.why == "already_yours" and again.draw is not None
    # The same draw (its prize delivered since: the status moved on).
    assert dataclasses.replace(again.draw, status=None) == dataclasses.replace(
        first.draw, status=None
    )
    assert (other.why, other.points, other.draw) == ("already_claimed", 0, None)


def test_a_suspicious_or_other_brands_scan_earns_nothing(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_rest) = brand_with_members(session, runtime)
        _other, (stranger, *_x) = brand_with_members(session, runtime, slug="other", count=1)
        live_campaign(session, runtime, brand)
    with runtime.db.unit_of_work() as session:
        assert scan_reward(session, runtime, brand, alice, 1, verdict="suspicious").why == (
            "not_rewarded"
        )
        assert scan_reward(session, runtime, brand, stranger, 2).why == "other_brand"
        assert session.scalar(select(func.count()).select_from(Reward)) == 0


def test_stock_runs_out_into_the_published_fallback(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, draw=_only("points", stock=2, points=50))
    with runtime.db.unit_of_work() as session:
        results = [scan_reward(session, runtime, brand, people[i % 3], i + 1) for i in range(5)]
    outcomes = [(r.draw.outcome, r.draw.prize_key) for r in results if r.draw]
    assert outcomes == [("won", "p"), ("won", "p")] + [("fallback", "thanks")] * 3
    with runtime.db.unit_of_work() as session:
        reasons = session.scalars(select(Reward.downgrade).order_by(Reward.id)).all()
        assert reasons == [None, None, "out_of_stock", "out_of_stock", "out_of_stock"]
        assert session.scalar(select(func.sum(StockShard.issued))) == 2


def test_the_budget_is_never_overspent(runtime: Runtime) -> None:
    draw = _only("cash", stock=100, amount_fen=500) | {"budget_fen": 1200}
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, draw=draw)
    with runtime.db.unit_of_work() as session:
        results = [scan_reward(session, runtime, brand, people[i % 3], i + 1) for i in range(4)]
    assert [r.draw.outcome for r in results if r.draw] == ["won", "won", "fallback", "fallback"]
    with runtime.db.unit_of_work() as session:
        assert session.scalar(select(func.sum(Reward.value_fen))) == 1000
        assert (
            session.scalars(select(Reward.downgrade).where(Reward.outcome == "fallback")).all()[0]
            == "budget"
        )


def test_per_member_draw_and_win_limits(runtime: Runtime) -> None:
    draw = _only("points", stock=100, points=5) | {
        "draws_per_member_per_day": 3,
        "wins_per_member": 2,
    }
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_rest) = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, draw=draw)
    with runtime.db.unit_of_work() as session:
        results = [scan_reward(session, runtime, brand, alice, i + 1) for i in range(5)]
        tomorrow = scan_reward(session, runtime, brand, alice, 9, now=NOW + dt.timedelta(days=1))
    draws = [r.draw.outcome if r.draw else None for r in results]
    # Three chances a day; two wins in the campaign, the third draw falls back.
    assert draws == ["won", "won", "fallback", None, None]
    assert all(r.why == "earned" for r in results)  # the points do not depend on the draw
    assert tomorrow.draw is not None and tomorrow.draw.outcome == "fallback"


def test_even_pacing_releases_stock_over_the_window(runtime: Runtime) -> None:
    # 10 units over 10 days: one day in, ceil(10 × 1/10) = 1 unit is out.
    draw = _only("points", stock=10, points=5) | {"pacing": "even"}
    with runtime.db.unit_of_work() as session:
        brand, people = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, draw=draw)
    with runtime.db.unit_of_work() as session:
        now = [scan_reward(session, runtime, brand, people[i % 3], i + 1) for i in range(3)]
        later = scan_reward(session, runtime, brand, people[0], 10, now=END - dt.timedelta(hours=1))
        assert session.scalars(select(Reward.downgrade).order_by(Reward.id)).all()[:3] == [
            None,
            "paced",
            "paced",
        ]
    assert [r.draw.outcome for r in now if r.draw] == ["won", "fallback", "fallback"]
    assert later.draw is not None and later.draw.outcome == "won"


def test_earn_rules_boosts_bonus_caps_and_targeting(runtime: Runtime) -> None:
    earn = {
        "points_per_scan": 10,
        "boosts": [{"name": "周末双倍", "multiplier": "2", "weekdays": [6, 7]}],
        "first_scan_bonus": 100,
        "cap_per_day": 150,
    }
    with runtime.db.unit_of_work() as session:
        brand, (alice, bob, _c) = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, earn=earn, draw=None)
        live_campaign(  # a higher campaign for another product does not apply
            session,
            runtime,
            brand,
            name="别的商品",
            priority=200,
            targeting={"skus": ["NOT-OURS"]},
            earn={"points_per_scan": 999},
            draw=None,
        )
    with runtime.db.unit_of_work() as session:
        first = scan_reward(session, runtime, brand, alice, 1)  # Sunday: 10 × 2 + 100 first scan
        second = scan_reward(session, runtime, brand, alice, 2)  # 20, then the cap: 150 a day
        third = scan_reward(session, runtime, brand, alice, 3)
        fourth = scan_reward(session, runtime, brand, alice, 6)
        monday = scan_reward(session, runtime, brand, alice, 4, now=NOW + dt.timedelta(days=1))
        bob_first = scan_reward(session, runtime, brand, bob, 5)
    assert [first.points, second.points, third.points, fourth.points] == [120, 20, 10, 0]
    assert fourth.why == "no_points" and ("cap", -10) in third.lines
    assert monday.points == 10
    assert bob_first.points == 120  # the first-scan bonus is each member's own
    assert ("first_scan", 100) in first.lines


def test_overlapping_windows_need_different_priorities(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, _people = brand_with_members(session, runtime, count=0)
        create_campaign(session, tenant_id=brand.tenant_id, raw=config(), actor="t")
        with pytest.raises(ValidationFailedError) as refused:
            create_campaign(session, tenant_id=brand.tenant_id, raw=config(name="二"), actor="t")
        assert refused.value.code == "campaign_overlap"
        create_campaign(
            session, tenant_id=brand.tenant_id, raw=config(name="二", priority=50), actor="t"
        )


def test_the_lifecycle_publishes_commits_locks_pauses_and_reveals(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_rest) = brand_with_members(session, runtime)
        campaign = live_campaign(session, runtime, brand)
        campaign_id, seed_hash, table_hash = campaign.id, campaign.seed_hash, campaign.table_hash
        assert campaign.status == "running" and seed_hash and table_hash
        changed = config(draw={"fallback": None})
        with pytest.raises(ConflictError) as locked:
            update_campaign(
                session, runtime, tenant_id=brand.tenant_id, campaign_id=campaign_id, raw=changed
            )
        assert locked.value.code == "campaign_locked"
        update_campaign(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            campaign_id=campaign_id,
            raw=config(name="改个名字"),
        )
    with runtime.db.unit_of_work() as session:
        pause_campaign(
            session, runtime, tenant_id=brand.tenant_id, campaign_id=campaign_id, now=NOW
        )
    with runtime.db.unit_of_work() as session:
        paused = scan_reward(session, runtime, brand, alice, 1)
    assert paused.draw is None and paused.points == 10  # the programme's points, no campaign
    with runtime.db.unit_of_work() as session:
        resume_campaign(
            session, runtime, tenant_id=brand.tenant_id, campaign_id=campaign_id, now=NOW
        )
    with runtime.db.unit_of_work() as session:
        assert scan_reward(session, runtime, brand, alice, 2).draw is not None
    with runtime.db.unit_of_work() as session:
        assert advance_campaigns(session, runtime, now=END + dt.timedelta(minutes=1)) == 1
    with runtime.db.unit_of_work() as session:
        ended = session.get(Campaign, campaign_id)
        assert ended is not None and ended.status == "ended" and ended.seed_revealed
        seed = bytes.fromhex(ended.seed_revealed)
        assert seed_commitment(seed) == seed_hash
        spec = campaigns_spec(ended)
        assert verify_commitments(seed, odds_of(spec), seed_hash=seed_hash, table_hash=table_hash)
        late = scan_reward(session, runtime, brand, alice, 3, now=END + dt.timedelta(minutes=2))
    assert late.draw is None


def campaigns_spec(campaign: Campaign) -> Any:
    from campaigns.lifecycle import spec_of

    spec = spec_of(campaign)
    assert spec.draw is not None
    return spec.draw


def test_ending_early_reveals_the_seed_at_once(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, _people = brand_with_members(session, runtime, count=0)
        campaign = live_campaign(session, runtime, brand)
        end_campaign(session, runtime, tenant_id=brand.tenant_id, campaign_id=campaign.id)
        assert campaign.status == "ended" and campaign.seed_revealed
        assert campaign.ends_at <= dt.datetime.now(dt.UTC)


def test_held_rewards_wait_for_review_then_release_or_deny(runtime: Runtime) -> None:
    fraud = {"member_velocity": {"max": 1, "window_seconds": 3600, "action": "hold"}}
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_rest) = brand_with_members(session, runtime)
        live_campaign(
            session, runtime, brand, fraud=fraud, draw=_only("points", stock=10, points=50)
        )
    with runtime.db.unit_of_work() as session:
        ok = scan_reward(session, runtime, brand, alice, 1)
        held = scan_reward(session, runtime, brand, alice, 2)
        denied_later = scan_reward(session, runtime, brand, alice, 3)
        assert _balance(session, alice).pending == 10
    assert ok.why == "earned" and held.why == "held" and denied_later.why == "held"
    assert held.draw is not None and held.draw.status == "held"
    with runtime.db.unit_of_work() as session:
        queue = held_rewards(session, tenant_id=brand.tenant_id)
        assert [r.reasons for r in queue] == [["member_velocity"], ["member_velocity"]]
        assert queue[0].counts is not None and queue[0].counts["member_velocity"] == 2
        decide(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reward_id=queue[0].id,
            decision="release",
            actor="reviewer",
        )
        decide(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reward_id=queue[1].id,
            decision="deny",
            actor="reviewer",
        )
        with pytest.raises(ConflictError):
            decide(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                reward_id=queue[1].id,
                decision="release",
                actor="reviewer",
            )
    with runtime.db.unit_of_work() as session:
        assert _balance(session, alice).pending == 20
        statuses = session.scalars(select(Fulfilment.status).order_by(Fulfilment.id)).all()
        # The first and the released prize were delivered after commit; the denied one cancelled.
        assert statuses == ["done", "done", "cancelled"]


def test_claw_back_takes_back_recent_pending_rewards(runtime: Runtime) -> None:
    fraud = {"device_velocity": {"max": 2, "window_seconds": 3600, "action": "claw_back"}}
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_rest) = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, fraud=fraud, draw=None)
    with runtime.db.unit_of_work() as session:
        for serial in (1, 2):
            assert scan_reward(session, runtime, brand, alice, serial, device="d1").why == "earned"
        assert scan_reward(session, runtime, brand, alice, 3, device="d1").why == "denied"
    with runtime.db.unit_of_work() as session:
        assert _balance(session, alice).pending == 0
        assert session.scalars(select(Reward.status).order_by(Reward.id)).all() == [
            "clawed_back",
            "clawed_back",
            "denied",
        ]


def test_prizes_are_delivered_once_points_coupons_cash_and_goods(runtime: Runtime) -> None:
    provider = campaigns.payout_provider(runtime)
    assert isinstance(provider, campaigns.RecordingPayoutProvider)
    with runtime.db.unit_of_work() as session:
        brand, (alice, bob, carol) = brand_with_members(session, runtime)
        live_campaign(session, runtime, brand, draw=_only("cash", stock=5, amount_fen=888))
    provider.fail_next("SYSTEMERROR", after_paying=True)  # the classic lost response
    with runtime.db.unit_of_work() as session:
        won = scan_reward(session, runtime, brand, alice, 1)
    assert won.draw is not None and won.draw.kind == "cash"
    with runtime.db.unit_of_work() as session:
        row = session.scalars(select(Fulfilment)).one()
        assert row.status == "retry" and row.last_code == "SYSTEMERROR"
        fulfilment_id, order_no = row.id, row.merchant_order_no
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with runtime.db.unit_of_work() as session:
        assert due_deliveries(session, now=later) == [fulfilment_id]
        assert deliver(session, runtime, fulfilment_id=fulfilment_id, now=later) == "done"
    with runtime.db.unit_of_work() as session:
        assert deliver(session, runtime, fulfilment_id=fulfilment_id, now=later) is None
    assert provider.count_paid() == 1 and provider.paid_total_fen() == 888
    assert provider.query(order_no or "").status == "sent"

    # Goods wait for the winner's claim, sealed at rest.
    with runtime.db.unit_of_work() as session:
        brand2, (dave, *_r) = brand_with_members(session, runtime, slug="goods", count=1)
        live_campaign(session, runtime, brand2, draw=_only("goods", stock=1, value_fen=3900))
    with runtime.db.unit_of_work() as session:
        mug = scan_reward(session, runtime, brand2, dave, 1)
    assert mug.draw is not None and mug.draw.status == "claim_wanted"
    shipping = {
        "name": "王小明",
        "phone": "13800138000",
        "address": "浙江省杭州市西湖区文三路 1 号",
    }
    with runtime.db.unit_of_work() as session:
        claimed = claim_goods(
            session,
            runtime,
            tenant_id=brand2.tenant_id,
            member_id=dave.member_id,
            reward_id=mug.draw.reward_id,
            shipping=shipping,
        )
        assert claimed.status == "claimed"
        assert b"13800138000" not in (claimed.shipping_sealed or b"")
        assert shipping_of(session, runtime, claimed) == shipping | {"phone": "+8613800138000"}
    with runtime.db.unit_of_work() as session, pytest.raises(ValidationFailedError):
        claim_goods(
            session,
            runtime,
            tenant_id=brand2.tenant_id,
            member_id=dave.member_id,
            reward_id=mug.draw.reward_id,
            shipping={"name": "", "phone": "1", "address": ""},
        )
    del bob, carol


def test_erasing_a_member_empties_their_prize_claims(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, (dave, *_r) = brand_with_members(session, runtime, count=1)
        live_campaign(session, runtime, brand, draw=_only("goods", stock=1, value_fen=3900))
    with runtime.db.unit_of_work() as session:
        mug = scan_reward(session, runtime, brand, dave, 1)
        assert mug.draw is not None
        claim_goods(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            member_id=dave.member_id,
            reward_id=mug.draw.reward_id,
            shipping={"name": "王小明", "phone": "13800138000", "address": "杭州市文三路 1 号"},
        )
    with runtime.db.unit_of_work() as session:
        erased = members.erase_member(
            session, tenant_id=brand.tenant_id, member_id=dave.member_id, actor="t"
        )
        assert erased.addresses_removed == 1
    with runtime.db.unit_of_work() as session:
        assert session.scalars(select(Fulfilment.shipping_sealed)).all() == [None]


def test_a_fraud_policy_that_would_fail_every_scan_is_refused_on_save(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        brand, _people = brand_with_members(session, runtime, count=0)
        with pytest.raises(ValidationFailedError) as refused:
            create_campaign(
                session,
                tenant_id=brand.tenant_id,
                raw=config(fraud={"member_velocity": {"max": 0}}),
                actor="t",
            )
        assert "fraud.member_velocity.max" in refused.value.errors


def test_a_coupon_prize_whose_item_is_gone_fails_without_blocking_the_outbox(
    runtime: Runtime,
) -> None:
    with runtime.db.unit_of_work() as session:
        brand, (alice, *_r) = brand_with_members(session, runtime, count=1)
        live_campaign(
            session,
            runtime,
            brand,
            draw=_only("coupon", stock=5, coupon_item_id=999, value_fen=500),
        )
    with runtime.db.unit_of_work() as session:
        won = scan_reward(session, runtime, brand, alice, 1)
    assert won.draw is not None and won.draw.kind == "coupon"
    with runtime.db.unit_of_work() as session:
        row = session.scalars(select(Fulfilment)).one()
        # Delivered after commit: refused for good (no such catalogue item), not retried forever.
        assert (row.status, row.last_code) == ("failed", "item_not_found")
