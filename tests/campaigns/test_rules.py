"""A campaign's rules as data: every mistake a 422 naming its field, the legal cap and the budget
held, a stored spec read back unchanged, and the scan-time functions paying what the rules say."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import traceability
from campaigns.fairness import exact_odds
from campaigns.rules import (
    LEGAL_TOP_PRIZE_FEN,
    CampaignSpec,
    Earned,
    EarnRules,
    cap_points,
    check_campaign,
    combine,
    describe,
    describe_prizes,
    earn_points,
    from_json,
    matches,
    odds_of,
    percent_text,
    released_fraction,
    to_json,
    unit_value_fen,
    windows_overlap,
)
from core.errors import ValidationFailedError

UTC = dt.UTC


def campaign(**changes: Any) -> dict[str, Any]:
    """A valid campaign with a draw; ``changes`` replace top-level keys."""
    raw: dict[str, Any] = {
        "name": "夏季扫码有礼",
        "starts_at": "2024-06-01T00:00:00",
        "ends_at": "2024-07-01T00:00:00",
        "earn": {"points_per_scan": 10},
        "draw": {
            "prizes": [
                {
                    "key": "first",
                    "name": "一等奖",
                    "kind": "cash",
                    "probability": "0.0001",
                    "stock": 10,
                    "amount_fen": 20_000,
                },
                {
                    "key": "pts",
                    "name": "50 积分",
                    "kind": "points",
                    "probability": "1/3",
                    "points": 50,
                },
                {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
            ],
            "fallback": "thanks",
        },
    }
    raw.update(changes)
    return raw


def with_prize(index: int, **changes: Any) -> dict[str, Any]:
    raw = campaign()
    prize = raw["draw"]["prizes"][index]
    prize.update(changes)
    for key in [k for k, v in prize.items() if v is ...]:
        del prize[key]
    return raw


def with_draw(**changes: Any) -> dict[str, Any]:
    raw = campaign()
    raw["draw"].update(changes)
    return raw


def refused(raw: dict[str, Any]) -> ValidationFailedError:
    with pytest.raises(ValidationFailedError) as caught:
        check_campaign(raw)
    assert caught.value.status == 422
    return caught.value


def test_a_valid_campaign_is_normalised() -> None:
    spec = check_campaign(
        campaign(
            targeting={"regions": ["cn-zj/杭州", "CN-ZJ/Hangzhou", "CN-GD"], "skus": ["A", "A"]}
        )
    )
    # Naive times are Shanghai time, stored as UTC.
    assert spec.starts_at == dt.datetime(2024, 5, 31, 16, tzinfo=UTC)
    assert spec.ends_at == dt.datetime(2024, 6, 30, 16, tzinfo=UTC)
    assert spec.targeting.regions == ["CN-ZJ/杭州市", "CN-GD"]
    assert spec.targeting.skus == ["A"]
    assert spec.priority == 100 and spec.stacking == "exclusive"


def test_naive_times_are_read_in_the_campaigns_timezone() -> None:
    spec = check_campaign(campaign(timezone="Europe/Paris"))
    assert spec.starts_at == dt.datetime(2024, 5, 31, 22, tzinfo=UTC)  # CEST, UTC+2
    aware = check_campaign(campaign(starts_at="2024-06-01T00:00:00+00:00"))
    assert aware.starts_at == dt.datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (campaign(name=""), "name"),
        (campaign(description="x" * 2001), "description"),
        (campaign(colour="red"), "colour"),
        (campaign(timezone="Mars/Olympus_Mons"), "timezone"),
        (campaign(timezone="../etc/passwd"), "timezone"),
        (campaign(ends_at="2024-05-01T00:00:00"), "ends_at"),
        (campaign(ends_at="2025-06-03T00:00:00"), "ends_at"),  # more than 366 days
        (campaign(priority=1001), "priority"),
        (campaign(stacking="both"), "stacking"),
        (campaign(stack_cap_points=50), "stack_cap_points"),  # exclusive campaigns do not stack
        (campaign(targeting={"regions": ["CN-ZJ", "XX-1"]}), "targeting.regions[1]"),
        (campaign(targeting={"regions": ["CN-ZJ/巴黎"]}), "targeting.regions[0]"),
        (campaign(targeting={"segments": ["vip"]}), "targeting.segments[0]"),
        (campaign(targeting={"batches": [3, 0]}), "targeting.batches[1]"),
        (campaign(targeting={"skus": ["x"] * 501}), "targeting.skus"),
        (campaign(earn={"points_per_scan": -1}), "earn.points_per_scan"),
        (campaign(earn={"tier_multipliers": {"3": "11"}}), "earn.tier_multipliers.3"),
        (campaign(earn={"tier_multipliers": {"gold": "2"}}), "earn.tier_multipliers.gold"),
        (
            campaign(
                earn={"boosts": [{"name": "夜", "multiplier": 2, "from_hour": 22, "until_hour": 6}]}
            ),
            "earn.boosts[0].until_hour",
        ),
        (
            campaign(earn={"boosts": [{"name": "周末", "multiplier": 2, "weekdays": [6, 8]}]}),
            "earn.boosts[0].weekdays[1]",
        ),
        (
            campaign(earn={"boosts": [{"name": "半价", "multiplier": "0.5"}]}),
            "earn.boosts[0].multiplier",
        ),
        (
            campaign(
                earn={
                    "boosts": [
                        {
                            "name": "六月",
                            "multiplier": 2,
                            "from_date": "2024-06-30",
                            "until_date": "2024-06-01",
                        }
                    ]
                }
            ),
            "earn.boosts[0].until_date",
        ),
        (
            campaign(
                earn={"product_bonus": [{"sku": "A", "points": 5}, {"sku": "A", "points": 6}]}
            ),
            "earn.product_bonus",
        ),
        (campaign(earn={"cap_per_day": 0}), "earn.cap_per_day"),
        (with_prize(0, stock=-1), "draw.prizes[0].stock"),
        (with_prize(0, stock=None), "draw.prizes[0].stock"),  # cash must have a stock
        (with_prize(0, amount_fen=...), "draw.prizes[0].amount_fen"),
        (with_prize(0, amount_fen=50), "draw.prizes[0].amount_fen"),  # below ¥1
        (with_prize(0, amount_fen=20_001), "draw.prizes[0].amount_fen"),  # above ¥200
        (with_prize(0, points=5), "draw.prizes[0].points"),  # not used by cash
        (with_prize(1, points=...), "draw.prizes[1].points"),
        (with_prize(1, kind="coupon", points=..., value_fen=500), "draw.prizes[1].coupon_item_id"),
        (with_prize(0, kind="goods", amount_fen=...), "draw.prizes[0].value_fen"),
        (with_prize(0, probability="0.5.1"), "draw.prizes[0].probability"),
        (with_prize(0, probability=0.5), "draw.prizes[0].probability"),
        (with_prize(0, probability="0.7"), "draw.prizes"),  # 0.7 + 1/3 > 1
        (with_prize(1, key="first"), "draw.prizes[1].key"),
        (with_prize(1, key="two words"), "draw.prizes[1].key"),
        (with_prize(0, image_url="http://cdn.example.com/a.png"), "draw.prizes[0].image_url"),
        (with_prize(0, size="L"), "draw.prizes[0].size"),
        (with_draw(prizes=[]), "draw.prizes"),
        (with_draw(cash_min_fen=500, cash_max_fen=400), "draw.cash_max_fen"),
        (with_draw(cash_max_fen=LEGAL_TOP_PRIZE_FEN + 1), "draw.cash_max_fen"),
        (with_draw(draws_per_member_per_day=0), "draw.draws_per_member_per_day"),
        (with_draw(pacing="fast"), "draw.pacing"),
        (with_draw(points_per_yuan=0), "draw.points_per_yuan"),
    ],
)
def test_each_mistake_is_a_422_naming_its_field(raw: dict[str, Any], field: str) -> None:
    error = refused(raw)
    assert field in error.errors, error.errors


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        check_campaign(["not", "an", "object"])
    assert "body" in caught.value.errors


def test_no_prize_may_be_worth_more_than_the_legal_cap() -> None:
    at_cap = with_prize(0, kind="goods", amount_fen=..., value_fen=LEGAL_TOP_PRIZE_FEN)
    assert check_campaign(at_cap).draw is not None
    error = refused(with_prize(0, kind="goods", amount_fen=..., value_fen=LEGAL_TOP_PRIZE_FEN + 1))
    assert "¥50,000.00" in error.errors["draw.prizes[0].value_fen"]
    # Points are valued at points_per_yuan, rounded up: 100,000 points at 1 per yuan is ¥100,000.
    raw = with_prize(1, points=100_000)
    raw["draw"]["points_per_yuan"] = 1
    error = refused(raw)
    assert "legal cap" in error.errors["draw.prizes[1].points"]
    raw["draw"]["points_per_yuan"] = 2  # ¥50,000 exactly: allowed
    assert check_campaign(raw).draw is not None


def test_unit_values_in_fen() -> None:
    raw = with_draw(points_per_yuan=3)
    raw["draw"]["prizes"].append(
        {
            "key": "mug",
            "name": "马克杯",
            "kind": "goods",
            "probability": "0",
            "stock": 5,
            "value_fen": 3900,
        }
    )
    draw = check_campaign(raw).draw
    assert draw is not None
    first, points, thanks, mug = draw.prizes
    assert unit_value_fen(first, draw) == 20_000
    assert unit_value_fen(points, draw) == 1667  # 50 points at 3 per yuan: ¥16.666… rounded up
    assert unit_value_fen(thanks, draw) == 0
    assert unit_value_fen(mug, draw) == 3900


def test_no_prize_may_be_worth_more_than_the_budget() -> None:
    error = refused(with_draw(budget_fen=19_999))
    assert "budget" in error.errors["draw.prizes[0].amount_fen"]
    assert check_campaign(with_draw(budget_fen=20_000)).draw is not None


@pytest.mark.parametrize(
    ("prize", "fallback", "ok"),
    [
        ({"key": "t", "name": "谢谢", "kind": "thanks", "probability": "0"}, "t", True),
        (
            {"key": "p", "name": "1 积分", "kind": "points", "probability": "0", "points": 1},
            "p",
            True,
        ),
        (
            {
                "key": "c",
                "name": "券",
                "kind": "coupon",
                "probability": "0",
                "coupon_item_id": 7,
                "value_fen": 100,
            },
            "c",
            True,
        ),
        (
            {
                "key": "p",
                "name": "1 积分",
                "kind": "points",
                "probability": "0",
                "points": 1,
                "stock": 1000,
            },
            "p",
            False,  # it can run out itself
        ),
        (
            {
                "key": "g",
                "name": "杯",
                "kind": "goods",
                "probability": "0",
                "stock": 9,
                "value_fen": 100,
            },
            "g",
            False,
        ),
        ({"key": "t", "name": "谢谢", "kind": "thanks", "probability": "0"}, "nobody", False),
    ],
)
def test_the_fallback_is_a_prize_that_cannot_run_out(
    prize: dict[str, Any], fallback: str, ok: bool
) -> None:
    raw = campaign()
    raw["draw"]["prizes"] = [raw["draw"]["prizes"][0], prize]
    raw["draw"]["fallback"] = fallback
    if ok:
        draw = check_campaign(raw).draw
        assert draw is not None and draw.fallback == fallback
    else:
        assert "draw.fallback" in refused(raw).errors


def test_a_stack_cap_needs_stacking() -> None:
    spec = check_campaign(campaign(stacking="stack", stack_cap_points=50))
    assert spec.stack_cap_points == 50


def test_a_stored_campaign_reads_back_the_same() -> None:
    spec = check_campaign(
        campaign(
            stacking="stack",
            stack_cap_points=40,
            targeting={"regions": ["CN-ZJ/杭州"], "tiers": [3], "segments": ["general_value"]},
            earn={
                "points_per_scan": 10,
                "tier_multipliers": {"3": "1.25", "4": None},
                "boosts": [{"name": "周末双倍", "multiplier": "2", "weekdays": [6, 7]}],
                "product_bonus": [{"sku": "A", "points": 5}],
                "cap_per_day": 100,
            },
            fraud={"ip_velocity": {"max": 5}},
        )
    )
    stored = json.loads(json.dumps(to_json(spec)))  # really JSON
    assert stored["earn"]["tier_multipliers"] == {"3": "1.25", "4": None}
    assert stored["starts_at"].startswith("2024-05-31T16:00:00")
    again = from_json(stored)
    assert again == spec
    assert to_json(again) == stored
    assert again.earn.tier_multipliers[3] == Decimal("1.25")


def test_the_odds_are_the_draws_exact_table_in_prize_order() -> None:
    spec = check_campaign(campaign())
    assert spec.draw is not None
    expected = exact_odds([("first", "0.0001"), ("pts", "1/3"), ("thanks", "0")])
    assert spec.odds() == odds_of(spec.draw) == expected
    assert check_campaign(campaign(draw=None)).odds() is None


# --- the scan -------------------------------------------------------------------------------------


def located(
    precision: str, division: str | None = None, city: str | None = None
) -> traceability.Located:
    country = None if precision == "unknown" else "CN"
    return traceability.Located(country, division, city, precision)


HANGZHOU = located("city", "CN-ZJ", "杭州市")
NINGBO = located("city", "CN-ZJ", "宁波市")


def scan_matches(targeting: dict[str, Any], **scan: Any) -> bool:
    spec = check_campaign(campaign(targeting=targeting))
    facts: dict[str, Any] = {
        "sku": "A",
        "batch_id": 1,
        "located": HANGZHOU,
        "tier_id": 3,
        "segment": "important_value",
    }
    facts.update(scan)
    return matches(spec.targeting, **facts)


def test_an_untargeted_campaign_matches_every_scan() -> None:
    assert scan_matches({}, located=None, tier_id=None, segment=None)


def test_matches_each_targeting_dimension() -> None:
    assert scan_matches({"skus": ["A", "B"]}) and not scan_matches({"skus": ["B"]})
    assert scan_matches({"batches": [1]}) and not scan_matches({"batches": [2]})
    assert scan_matches({"tiers": [3]}) and not scan_matches({"tiers": [4]})
    assert not scan_matches({"tiers": [3]}, tier_id=None)  # a member without a tier
    assert scan_matches({"segments": ["important_value"]})
    assert not scan_matches({"segments": ["general_value"]})
    assert not scan_matches({"segments": ["important_value"]}, segment=None)
    # Every targeted dimension must hold.
    assert not scan_matches({"skus": ["A"], "batches": [2]})


def test_a_region_targeted_campaign_pays_only_scans_known_to_be_inside() -> None:
    city = {"regions": ["CN-ZJ/杭州市"]}
    assert scan_matches(city, located=HANGZHOU)
    assert not scan_matches(city, located=NINGBO)
    # Known only to the province, or not at all: not paid by a city campaign.
    assert not scan_matches(city, located=located("province", "CN-ZJ"))
    assert not scan_matches(city, located=located("unknown"))
    assert not scan_matches(city, located=None)
    province = {"regions": ["CN-ZJ"]}
    assert scan_matches(province, located=located("province", "CN-ZJ"))
    assert scan_matches(province, located=NINGBO)
    assert not scan_matches(province, located=located("country"))
    assert not scan_matches(province, located=located("province", "CN-GD"))
    assert scan_matches({"regions": ["CN-GD", "CN-ZJ"]}, located=NINGBO)


def rules(**earn: Any) -> EarnRules:
    return check_campaign(campaign(earn=earn)).earn


FRIDAY_NOON = dt.datetime(2024, 6, 14, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def earn(rules_: EarnRules, **scan: Any) -> Earned:
    facts: dict[str, Any] = {
        "base_points": 7,
        "tier_id": None,
        "tier_multiplier": Decimal(1),
        "sku": "A",
        "local_now": FRIDAY_NOON,
        "first_scan": False,
    }
    facts.update(scan)
    return earn_points(rules_, **facts)


def test_base_points_come_from_the_campaign_or_the_programme() -> None:
    assert earn(rules(points_per_scan=10)) == Earned(10, (("base", 10),))
    assert earn(rules()).points == 7  # the programme's scan points
    assert earn(rules(points_per_scan=0)).points == 0  # a draw-only campaign pays no points


def test_the_campaigns_tier_multiplier_overrides_the_tiers_own() -> None:
    earn_rules = rules(points_per_scan=10, tier_multipliers={"3": "2", "4": None})
    assert earn(earn_rules, tier_id=3, tier_multiplier=Decimal("1.5")).points == 20
    # No override (None, or absent): the tier's own multiplier, a float read by its decimal text.
    assert earn(earn_rules, tier_id=4, tier_multiplier=1.5).points == 15
    assert earn(earn_rules, tier_id=5, tier_multiplier=1.1).points == 11
    half = earn(rules(points_per_scan=5), tier_id=5, tier_multiplier=Decimal("1.5"))
    assert half == Earned(8, (("base", 5), ("tier x1.5", 3)))  # 7.5 rounds half up


def test_a_weekend_boost_follows_the_campaigns_local_time() -> None:
    spec = check_campaign(
        campaign(
            earn={
                "points_per_scan": 10,
                "boosts": [{"name": "周末双倍", "multiplier": 2, "weekdays": [6, 7]}],
            }
        )
    )
    # Saturday 01:30 in Shanghai is still Friday 17:30 in UTC.
    now = dt.datetime(2024, 6, 14, 17, 30, tzinfo=UTC)
    assert now.isoweekday() == 5
    local = spec.local_time(now)
    assert local.isoweekday() == 6
    boosted = earn(spec.earn, local_now=local, tier_multiplier=Decimal("1.5"))
    assert boosted == Earned(30, (("base", 10), ("tier x1.5", 5), ("boost 周末双倍", 15)))
    assert earn(spec.earn, local_now=now).points == 10  # read in UTC, it would not apply


def test_a_boost_limited_to_dates_and_hours() -> None:
    earn_rules = rules(
        points_per_scan=10,
        boosts=[
            {
                "name": "午间",
                "multiplier": "1.5",
                "from_date": "2024-06-14",
                "until_date": "2024-06-14",
                "from_hour": 12,
                "until_hour": 14,
            }
        ],
    )
    assert earn(earn_rules, local_now=FRIDAY_NOON).points == 15
    assert earn(earn_rules, local_now=FRIDAY_NOON + dt.timedelta(hours=2)).points == 10
    assert earn(earn_rules, local_now=FRIDAY_NOON + dt.timedelta(days=1)).points == 10
    assert earn(earn_rules, local_now=FRIDAY_NOON - dt.timedelta(minutes=1)).points == 10


def test_product_and_first_scan_bonuses_are_added_after_multipliers() -> None:
    earn_rules = rules(
        points_per_scan=10, product_bonus=[{"sku": "A", "points": 5}], first_scan_bonus=20
    )
    first = earn(earn_rules, sku="A", first_scan=True, tier_multiplier=Decimal(2))
    assert first == Earned(45, (("base", 10), ("tier x2", 10), ("product", 5), ("first_scan", 20)))
    assert sum(points for _, points in first.lines) == first.points
    assert earn(earn_rules, sku="B").points == 10


def spec_of(stacking: str, cap: int | None = None) -> CampaignSpec:
    return check_campaign(campaign(stacking=stacking, stack_cap_points=cap))


def test_an_exclusive_top_campaign_pays_alone() -> None:
    top, other = spec_of("exclusive"), spec_of("stack")
    total, paid = combine([(top, Earned(10, (("base", 10),))), (other, Earned(30, ()))])
    assert total == 10 and paid == [(top, 10, (("base", 10),))]
    assert combine([]) == (0, [])


def test_stacking_campaigns_add_up_to_the_top_campaigns_cap() -> None:
    top, exclusive, second, third = (
        spec_of("stack", 25),
        spec_of("exclusive"),
        spec_of("stack"),
        spec_of("stack"),
    )
    ten = Earned(10, (("base", 10),))
    total, paid = combine([(top, ten), (exclusive, Earned(50, ())), (second, ten), (third, ten)])
    assert total == 25
    assert [(c is top, c is second, c is third) for c, _, _ in paid] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]  # the exclusive one below the top does not stack
    assert [(points, lines) for _, points, lines in paid] == [
        (10, (("base", 10),)),
        (10, (("base", 10),)),
        (5, (("base", 10), ("stack_cap", -5))),  # cut to the cap, and the lines say so
    ]
    total, paid = combine([(spec_of("stack"), ten), (second, ten)])
    assert total == 20 and [points for _, points, _ in paid] == [10, 10]


def test_a_scan_outside_the_regions_matches_on_everything_else() -> None:
    targeting = check_campaign(campaign(targeting={"regions": ["CN-GD"]})).targeting
    facts: dict[str, Any] = {"sku": "A", "batch_id": 1, "tier_id": None, "segment": None}
    assert not matches(targeting, located=HANGZHOU, **facts)
    # Every dimension but the place (the out-of-region rule's question: fenced out by region)
    assert matches(targeting, located=HANGZHOU, ignore_regions=True, **facts)
    assert targeting.region_check(HANGZHOU) == "outside"
    assert not matches(targeting, located=HANGZHOU, **facts)


def test_cap_points_allows_what_the_caps_leave() -> None:
    earn_rules = rules(cap_per_day=100, cap_per_campaign=250)
    assert cap_points(30, day_so_far=0, campaign_so_far=0, earn=earn_rules) == 30
    assert cap_points(30, day_so_far=80, campaign_so_far=80, earn=earn_rules) == 20
    assert cap_points(30, day_so_far=0, campaign_so_far=240, earn=earn_rules) == 10
    assert cap_points(30, day_so_far=120, campaign_so_far=0, earn=earn_rules) == 0
    assert cap_points(30, day_so_far=10**6, campaign_so_far=10**6, earn=rules()) == 30


def test_released_fraction_and_overlapping_windows() -> None:
    start = dt.datetime(2024, 6, 1, tzinfo=UTC)
    end = start + dt.timedelta(days=30)
    assert released_fraction(start, end, start - dt.timedelta(seconds=1)) == 0
    assert released_fraction(start, end, start + dt.timedelta(days=10)) == Fraction(1, 3)
    assert released_fraction(start, end, end) == 1
    assert released_fraction(start, end, end + dt.timedelta(days=1)) == 1
    later = end + dt.timedelta(days=1)
    assert windows_overlap(start, end, start + dt.timedelta(days=29), later)
    assert not windows_overlap(start, end, end, later)  # half-open: touching is not overlapping
    assert not windows_overlap(end, later, start, end)


# --- in words -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probability", "text"),
    [
        (Fraction(1, 1_000_000), "0.0001%"),
        (Fraction(1, 10**12), "0.0000000001%"),
        (Fraction(1, 20), "5%"),
        (Fraction(1, 3), "33.33%"),
        (Fraction(1, 30_000), "0.0033%"),
        (Fraction(999_999, 1_000_000), "99.9999%"),
        (Fraction(2, 3), "66.67%"),
        (Fraction(0), "0%"),
        (Fraction(1), "100%"),
    ],
)
def test_percent_text_never_hides_a_chance(probability: Fraction, text: str) -> None:
    assert percent_text(probability) == text


def full_spec() -> CampaignSpec:
    raw = campaign(
        stacking="stack",
        stack_cap_points=40,
        targeting={"regions": ["CN-ZJ/杭州"]},
        earn={
            "points_per_scan": 10,
            "boosts": [{"name": "周末双倍", "multiplier": 2, "weekdays": [6, 7]}],
            "product_bonus": [{"sku": "A", "points": 5}],
            "first_scan_bonus": 20,
            "cap_per_day": 100,
        },
    )
    raw["draw"] |= {"budget_fen": 1_000_000, "wins_per_member": 1, "draws_per_member_per_day": 3}
    raw["draw"]["prizes"][1]["probability"] = "1/1000000"
    return check_campaign(raw)


def test_describe_in_chinese() -> None:
    text = "\n".join(describe(full_spec(), "zh"))
    for expected in (
        "2024-06-01 00:00 至 2024-07-01 00:00",
        "CN-ZJ/杭州市",
        "每次扫码得 10 积分",
        "周六、周日 积分 ×2",
        "额外得 5 积分",
        "首次扫码额外得 20 积分",
        "每人每天最多 100 积分",
        "每次扫码合计最多 40 积分",
        "抽奖：一等奖 现金红包 ¥200.00，共 10 份，中奖概率 1/10000",
        "50 积分，数量不限，中奖概率 1/1000000（0.0001%）",
        "奖品发完或超出限额时：谢谢参与",
        "每人每天最多抽奖 3 次",
        "每人最多中奖 1 次",
        "奖品总预算 ¥10,000.00",
    ):
        assert expected in text, expected


def test_describe_in_english() -> None:
    text = "\n".join(describe(full_spec(), "en", tier_names={3: "Gold"}))
    for expected in (
        "10 points per scan",
        "Points ×2 on Saturday, Sunday",
        "At most 100 points per member per day",
        "cash red envelope ¥200.00, 10 available, odds 1/10000 (0.01%)",
        "odds 1/1000000 (0.0001%)",
        "At most 3 draws per member per day",
        "Prize budget ¥10,000.00",
        "out of stock or over a limit: 谢谢参与",
    ):
        assert expected in text, expected
    tiers = check_campaign(campaign(earn={"tier_multipliers": {"3": "1.5"}}))
    assert "Tier Gold: points ×1.5" in describe(tiers, "en", tier_names={3: "Gold"})
    assert "每次扫码按品牌会员规则得积分" in describe(check_campaign(campaign(earn={})), "zh")


def test_describe_prizes_shows_exact_odds_and_unlimited_stock() -> None:
    draw = full_spec().draw
    assert draw is not None
    first, points, thanks = describe_prizes(draw, "zh")
    assert first == {
        "key": "first",
        "name": "一等奖",
        "kind": "cash",
        "kind_text": "现金红包",
        "value": "现金红包 ¥200.00",
        "value_fen": 20_000,
        "stock": 10,
        "stock_text": "10",
        "probability": "1/10000",
        "percent": "0.01%",
    }
    assert points["stock_text"] == "不限" and points["percent"] == "0.0001%"
    assert thanks["probability"] == "0"
    english = describe_prizes(draw, "en")
    assert english[1]["stock_text"] == "unlimited" and english[1]["value"] == "50 points"
