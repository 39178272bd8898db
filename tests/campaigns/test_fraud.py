"""Reward-fraud rules: each rule at its limit and one past it, the verdict, policy validation,
and the counters in process and in Redis (with ``YIMA_TEST_REDIS_URL``; without it every
behaviour test runs on the in-process counters), including Redis down. Time moves by ``now``."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from campaigns.fraud import (
    ACTIONS,
    FraudPolicy,
    RewardCounters,
    RewardFacts,
    check_policy,
    reward_counters,
)
from core.errors import ValidationFailedError
from core.runtime import Runtime
from tests.conftest import REDIS_URL, make_settings

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
LONG_AGO = T0 - dt.timedelta(days=400)
BACKENDS = ["memory"] + (["redis"] if REDIS_URL else [])
LOOSE = {"max": 1_000_000, "window_seconds": 86400}


def loose_policy(**rules: dict[str, Any]) -> FraudPolicy:
    """Every counted rule out of reach except those given."""
    raw: dict[str, Any] = {
        name: dict(LOOSE)
        for name in (
            "member_velocity",
            "device_velocity",
            "ip_velocity",
            "phone_block_velocity",
            "members_per_device",
            "case_harvest",
        )
    }
    raw["new_member_burst"] = {"max": 1_000_000}
    raw.update(rules)
    return check_policy(raw)


def make_facts(tenant: int, **overrides: Any) -> RewardFacts:
    """Member 1, signed up long ago, scanning inside the regions at T0, nothing else known."""
    values: dict[str, Any] = {
        "tenant_id": tenant,
        "campaign_id": 1,
        "member_id": 1,
        "member_created_at": LONG_AGO,
        "phone_block": None,
        "device": None,
        "ip": None,
        "case": None,
        "region_check": "inside",
        "now": T0,
    }
    values.update(overrides)
    return RewardFacts(**values)


def _clean(tenant: int) -> None:
    client = redis.Redis.from_url(REDIS_URL or "")
    for key in client.scan_iter(f"yima:fraud:{{{tenant}}}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def tenant() -> Iterator[int]:
    """A tenant of its own, so Redis keys of other tests and runs never count here."""
    tenant_id = random.randrange(10**9, 10**10)
    yield tenant_id
    if REDIS_URL:
        _clean(tenant_id)


@pytest.fixture(params=BACKENDS)
def counters(request: pytest.FixtureRequest) -> Iterator[RewardCounters]:
    if request.param == "memory":
        yield RewardCounters()
        return
    store = RewardCounters(redis.Redis.from_url(REDIS_URL or ""))
    assert store.uses_redis
    yield store
    assert not store.degraded  # every answer came from Redis
    store.close()


@pytest.fixture
def scan(counters: RewardCounters, tenant: int) -> Callable[..., Any]:
    def scan(policy: FraudPolicy | None = None, **facts: Any) -> Any:
        return counters.record_and_check(make_facts(tenant, **facts), policy or FraudPolicy())

    return scan


# --- each rule at max and at max + 1 -------------------------------------------------------------

# For each rule: the i-th scan's facts, all within the rule's window and only its subject shared.
SCANS: dict[str, Callable[[int], dict[str, Any]]] = {
    "member_velocity": lambda i: {"member_id": 7, "device": f"d{i}", "ip": f"10.0.0.{i}"},
    "device_velocity": lambda i: {"member_id": 7, "device": "phone-of-a-farm"},
    "ip_velocity": lambda i: {"member_id": 100 + i, "ip": "203.0.113.9"},
    "phone_block_velocity": lambda i: {"member_id": 100 + i, "phone_block": "86-138-0013-8"},
    "members_per_device": lambda i: {"member_id": 100 + i, "device": "shared-phone"},
    "case_harvest": lambda i: {"member_id": 7, "case": "B2025-03:000123"},
    "new_member_burst": lambda i: {
        "member_id": 7,
        "member_created_at": T0 - dt.timedelta(seconds=120),
    },
}


@pytest.mark.parametrize("rule", list(SCANS))
def test_each_rule_hits_one_past_its_max_and_not_at_it(scan: Callable[..., Any], rule: str) -> None:
    limit = 3
    settings = (
        {"max": limit, "member_age_seconds": 600, "action": "deny"}
        if rule == "new_member_burst"
        else {"max": limit, "window_seconds": 600, "action": "deny"}
    )
    policy = loose_policy(**{rule: settings})
    verdicts = [
        scan(policy, now=T0 + dt.timedelta(seconds=10 * i), **SCANS[rule](i))
        for i in range(limit + 1)
    ]
    at_max, past_max = verdicts[limit - 1], verdicts[limit]
    assert (at_max.action, at_max.reasons, at_max.counts[rule]) == ("allow", (), limit)
    assert (past_max.action, past_max.reasons, past_max.counts[rule]) == (
        "deny",
        (rule,),
        limit + 1,
    )


def test_the_default_policy_holds_a_fourth_member_on_one_device(
    scan: Callable[..., Any],
) -> None:
    verdicts = [scan(member_id=m, device="farm-phone", ip="198.51.100.4") for m in range(1, 5)]
    assert [v.action for v in verdicts] == ["allow", "allow", "allow", "hold"]
    assert verdicts[-1].reasons == ("members_per_device",)
    assert verdicts[-1].counts == {
        "member_velocity": 1,
        "device_velocity": 4,
        "ip_velocity": 4,
        "members_per_device": 4,
    }


def test_the_default_policy_holds_a_member_past_twenty_scans_an_hour(
    scan: Callable[..., Any],
) -> None:
    verdicts = [scan(now=T0 + dt.timedelta(minutes=2 * i)) for i in range(21)]
    assert {v.action for v in verdicts[:20]} == {"allow"}
    assert (verdicts[20].action, verdicts[20].reasons) == ("hold", ("member_velocity",))


def test_a_scan_judged_again_counts_once(scan: Callable[..., Any]) -> None:
    # The group commit may run a scan's unit of work twice (core/group_commit.py): the same
    # code judged again must not push its member towards a hold.
    for attempt in range(3):
        verdict = scan(code="7:42", device="phone", now=T0 + dt.timedelta(seconds=attempt))
    assert verdict.counts["member_velocity"] == 1
    assert verdict.counts["device_velocity"] == 1
    other = scan(code="7:43", device="phone", now=T0 + dt.timedelta(seconds=5))
    assert other.counts["member_velocity"] == 2  # another code is another scan


def test_a_member_scanning_on_one_device_again_is_one_member(scan: Callable[..., Any]) -> None:
    for _ in range(5):
        verdict = scan(member_id=9, device="my-own-phone")
    assert verdict.counts["members_per_device"] == 1
    assert verdict.action == "allow"


def test_windows_slide_and_their_oldest_end_is_out(scan: Callable[..., Any]) -> None:
    policy = loose_policy(member_velocity={"max": 2, "window_seconds": 60, "action": "hold"})
    first, second = (scan(policy, member_id=m) for m in (1, 2))
    assert first.action == second.action == "allow"
    for member in (1, 2):
        scan(policy, member_id=member, now=T0 + dt.timedelta(seconds=30))
    # Member 1's third scan is 59 s after the first: all three are in the window.
    late = scan(policy, member_id=1, now=T0 + dt.timedelta(seconds=59))
    assert (late.action, late.counts["member_velocity"]) == ("hold", 3)
    # Member 2's is 60 s after: the first has just left the window (now - 60 s, now].
    on_time = scan(policy, member_id=2, now=T0 + dt.timedelta(seconds=60))
    assert (on_time.action, on_time.counts["member_velocity"]) == ("allow", 2)


def test_an_hour_later_a_held_device_is_rewarded_again(scan: Callable[..., Any]) -> None:
    policy = loose_policy(device_velocity={"max": 2, "window_seconds": 3600})
    assert [scan(policy, device="d").action for _ in range(3)] == ["allow", "allow", "hold"]
    later = scan(policy, device="d", now=T0 + dt.timedelta(hours=1))
    assert (later.action, later.counts["device_velocity"]) == ("allow", 1)


def test_counts_past_max_plus_one_stay_there_and_keep_hitting(scan: Callable[..., Any]) -> None:
    policy = loose_policy(ip_velocity={"max": 2, "window_seconds": 600})
    verdicts = [scan(policy, ip="198.51.100.7", member_id=m) for m in range(10)]
    assert [v.counts["ip_velocity"] for v in verdicts] == [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    assert all(v.action == "hold" for v in verdicts[2:])


def test_a_young_member_is_judged_on_every_scan_since_sign_up(scan: Callable[..., Any]) -> None:
    created = T0 - dt.timedelta(minutes=5)
    young = [scan(member_created_at=created, now=T0 + dt.timedelta(seconds=i)) for i in range(4)]
    assert [v.action for v in young] == ["allow", "allow", "allow", "hold"]
    assert young[-1].reasons == ("new_member_burst",)
    assert young[-1].counts["new_member_burst"] == 4
    # Ten minutes after sign-up the member is no longer new: that rule no longer counts.
    grown = scan(member_created_at=created, now=created + dt.timedelta(minutes=10))
    assert "new_member_burst" not in grown.counts
    assert grown.action == "allow"


def test_an_established_member_is_never_a_new_member_burst(scan: Callable[..., Any]) -> None:
    verdicts = [scan(now=T0 + dt.timedelta(seconds=i)) for i in range(6)]
    assert all(v.action == "allow" and "new_member_burst" not in v.counts for v in verdicts)


@pytest.mark.parametrize(
    ("region_check", "action"),
    [("outside", "deny"), ("unknown", "allow"), ("untargeted", "allow"), ("inside", "allow")],
)
def test_only_a_scan_provably_outside_the_regions_is_refused(
    scan: Callable[..., Any], region_check: str, action: str
) -> None:
    verdict = scan(region_check=region_check)
    assert verdict.action == action
    assert verdict.reasons == (("out_of_region",) if action == "deny" else ())


def test_the_out_of_region_action_is_the_campaigns_choice(scan: Callable[..., Any]) -> None:
    policy = check_policy({"out_of_region": {"action": "hold"}})
    assert scan(policy, region_check="outside").action == "hold"


# --- the verdict ---------------------------------------------------------------------------------


def test_the_strictest_action_wins_and_every_hit_is_a_reason(scan: Callable[..., Any]) -> None:
    policy = loose_policy(
        device_velocity={"max": 1, "window_seconds": 600, "action": "deny"},
        ip_velocity={"max": 1, "window_seconds": 600, "action": "claw_back"},
        members_per_device={"max": 1, "window_seconds": 600, "action": "hold"},
    )
    scan(policy, member_id=1, device="d", ip="192.0.2.1")
    verdict = scan(policy, member_id=2, device="d", ip="192.0.2.1")
    assert verdict.action == "claw_back"
    assert verdict.reasons == ("device_velocity", "ip_velocity", "members_per_device")
    assert verdict.counts == {
        "member_velocity": 1,
        "device_velocity": 2,
        "ip_velocity": 2,
        "members_per_device": 2,
    }
    # From another IP only the device rules hit: deny is stricter than hold.
    other = scan(policy, member_id=3, device="d", ip="192.0.2.2")
    assert (other.action, other.reasons) == ("deny", ("device_velocity", "members_per_device"))


def test_a_rule_whose_action_is_allow_only_reports(scan: Callable[..., Any]) -> None:
    policy = loose_policy(case_harvest={"max": 1, "window_seconds": 600, "action": "allow"})
    scan(policy, case="B1:9")
    verdict = scan(policy, case="B1:9")
    assert (verdict.action, verdict.reasons) == ("allow", ("case_harvest",))


def test_every_count_taken_is_reported(scan: Callable[..., Any]) -> None:
    verdict = scan(
        member_created_at=T0 - dt.timedelta(seconds=30),
        phone_block="86-139-1234-5",
        device="d",
        ip="192.0.2.9",
        case="B1:1",
    )
    assert verdict.counts == {
        "member_velocity": 1,
        "device_velocity": 1,
        "ip_velocity": 1,
        "phone_block_velocity": 1,
        "members_per_device": 1,
        "case_harvest": 1,
        "new_member_burst": 1,
    }
    assert (verdict.action, verdict.reasons) == ("allow", ())


def test_a_disabled_policy_allows_without_counting(scan: Callable[..., Any]) -> None:
    disabled = check_policy({"enabled": False, "member_velocity": {"max": 1}})
    verdicts = [scan(disabled, region_check="outside") for _ in range(5)]
    assert {(v.action, v.reasons) for v in verdicts} == {("allow", ())}
    assert verdicts[0].counts == {}
    assert scan().counts["member_velocity"] == 1  # nothing was recorded meanwhile


# --- counting is per tenant, across campaigns ----------------------------------------------------


def test_campaigns_of_a_brand_share_counts_and_brands_do_not(
    scan: Callable[..., Any], tenant: int
) -> None:
    for campaign in (1, 2, 3):
        scan(campaign_id=campaign, device="d")
    assert scan(campaign_id=None, device="d").counts["device_velocity"] == 4
    other_brand = scan(tenant_id=tenant + 1, device="d")
    assert other_brand.counts["device_velocity"] == 1
    if REDIS_URL:
        _clean(tenant + 1)


def test_a_campaign_with_a_shorter_rule_does_not_erase_anothers_history(
    scan: Callable[..., Any],
) -> None:
    hourly = loose_policy(member_velocity={"max": 5, "window_seconds": 3600})
    brief = loose_policy(member_velocity={"max": 1, "window_seconds": 60})
    for minute in (0, 10, 20):
        scan(hourly, now=T0 + dt.timedelta(minutes=minute))
    # The short rule sees only its minute, and its small cap must not trim the hour away.
    quick = scan(brief, campaign_id=2, now=T0 + dt.timedelta(minutes=30))
    assert (quick.action, quick.counts["member_velocity"]) == ("allow", 1)
    fifth = scan(hourly, now=T0 + dt.timedelta(minutes=40))
    assert (fifth.action, fifth.counts["member_velocity"]) == ("allow", 5)
    sixth = scan(hourly, now=T0 + dt.timedelta(minutes=50))
    assert (sixth.action, sixth.counts["member_velocity"]) == ("hold", 6)


# --- the stores ----------------------------------------------------------------------------------


def test_concurrent_scans_are_all_counted(counters: RewardCounters, tenant: int) -> None:
    policy = loose_policy()

    def facts(member: int) -> RewardFacts:
        return make_facts(tenant, member_id=member, device="busy-device")

    def worker(member: int) -> None:
        for _ in range(50):
            counters.record_and_check(facts(member), policy)

    threads = [threading.Thread(target=worker, args=(m,)) for m in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = counters.record_and_check(facts(99), policy)
    assert last.counts["device_velocity"] == 401
    assert last.counts["members_per_device"] == 9


def test_the_in_process_store_forgets_the_least_recently_used_logs(tenant: int) -> None:
    counters = RewardCounters(max_keys=10)
    policy = loose_policy()

    def member_scans(member: int) -> int:
        facts = make_facts(tenant, member_id=member)
        return counters.record_and_check(facts, policy).counts["member_velocity"]

    assert [member_scans(1) for _ in range(3)] == [1, 2, 3]
    for member in range(100, 120):
        member_scans(member)
    assert member_scans(119) == 2  # recent logs are kept
    assert member_scans(1) == 1  # the oldest was forgotten: memory stays bounded


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL: Redis keys and their expiry")
def test_redis_keys_are_per_tenant_and_expire_with_their_window(tenant: int) -> None:
    policy = loose_policy(
        device_velocity={"max": 5, "window_seconds": 600},
        members_per_device={"max": 5, "window_seconds": 7200},
    )
    client = redis.Redis.from_url(REDIS_URL or "")
    RewardCounters(client).record_and_check(make_facts(tenant, device="d", case="B1:1"), policy)
    keys = sorted(k.decode() for k in client.scan_iter(f"yima:fraud:{{{tenant}}}:*"))
    assert keys == [
        f"yima:fraud:{{{tenant}}}:{suffix}"
        for suffix in ("case:1:B1:1", "device-members:d", "device:d", "member:1")
    ]
    assert 0 < client.pttl(f"yima:fraud:{{{tenant}}}:device:d") <= 600_000
    assert 600_000 < client.pttl(f"yima:fraud:{{{tenant}}}:device-members:d") <= 7_200_000
    client.close()


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL: processes share counts")
def test_processes_share_counts_through_redis(tenant: int, tmp_path: Path) -> None:
    runtimes = [
        Runtime(make_settings(f"sqlite:///{tmp_path / f'{i}.db'}", tmp_path, redis_url=REDIS_URL))
        for i in range(2)
    ]
    policy = loose_policy(members_per_device={"max": 3, "window_seconds": 86400})
    try:
        verdicts = [
            reward_counters(runtimes[member % 2]).record_and_check(
                make_facts(tenant, campaign_id=member, member_id=member, device="farm"),
                policy,
            )
            for member in range(4)
        ]
    finally:
        for runtime in runtimes:
            runtime.close()
    assert [v.action for v in verdicts] == ["allow", "allow", "allow", "hold"]


@pytest.mark.skipif(not REDIS_URL, reason="set YIMA_TEST_REDIS_URL: Redis and memory agree")
def test_redis_and_the_in_process_store_count_alike(tenant: int) -> None:
    rng = random.Random(6)
    stores = [RewardCounters(), RewardCounters(redis.Redis.from_url(REDIS_URL or ""))]
    policies = [
        loose_policy(),
        FraudPolicy(),
        check_policy(
            {
                "member_velocity": {"max": 4, "window_seconds": 120},
                "members_per_device": {"max": 2, "window_seconds": 300},
                "case_harvest": {"max": 2, "window_seconds": 60},
                "new_member_burst": {"member_age_seconds": 900, "max": 5},
            }
        ),
    ]
    now = T0
    for _ in range(600):
        now += dt.timedelta(milliseconds=rng.choice([0, 1, 500, 20_000, 90_000]))
        member = rng.randrange(6)
        facts = make_facts(
            tenant,
            campaign_id=rng.randrange(3),
            member_id=member,
            member_created_at=T0 + dt.timedelta(minutes=member),
            phone_block=rng.choice([None, "b1", "b2"]),
            device=rng.choice([None, "d1", "d2", "d3"]),
            ip=rng.choice([None, "192.0.2.1", "192.0.2.2"]),
            case=rng.choice([None, "B1:1", "B1:2"]),
            now=now,
        )
        policy = rng.choice(policies)
        memory, shared = (store.record_and_check(facts, policy) for store in stores)
        assert memory == shared
    stores[1].close()


def test_redis_down_still_answers_from_process_memory(
    tenant: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = Runtime(
        make_settings(f"sqlite:///{tmp_path / 'y.db'}", tmp_path, redis_url="redis://127.0.0.1:1/0")
    )
    counters = reward_counters(runtime)
    assert counters.uses_redis and reward_counters(runtime) is counters
    with caplog.at_level(logging.WARNING, logger="yima.campaigns"):
        verdicts = [
            counters.record_and_check(
                make_facts(tenant, member_id=member, device="farm"),
                FraudPolicy(),
            )
            for member in range(4)
        ]
    assert [v.action for v in verdicts] == ["allow", "allow", "allow", "hold"]
    assert verdicts[-1].counts["members_per_device"] == 4
    assert counters.degraded
    assert len([r for r in caplog.records if "Redis unavailable" in r.message]) == 1
    runtime.close()
    fresh = Runtime(make_settings(f"sqlite:///{tmp_path / 'z.db'}", tmp_path))
    assert not reward_counters(fresh).uses_redis  # no Redis configured: process memory
    fresh.close()


def test_redis_is_probed_again_after_the_back_off(tenant: int) -> None:
    clock = [0.0]
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    attempts = []
    original = dead.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[0])
        return original(*args, **kwargs)

    dead.execute_command = counting  # type: ignore[method-assign]
    counters = RewardCounters(dead, backoff_seconds=5.0, clock=lambda: clock[0])

    def scan() -> str:
        facts = make_facts(tenant)
        return counters.record_and_check(facts, FraudPolicy()).action

    assert scan() == "allow" and counters.degraded
    tried = len(attempts)
    clock[0] = 4.9
    assert scan() == "allow" and len(attempts) == tried  # within the back-off: memory only
    clock[0] = 5.0
    assert scan() == "allow" and len(attempts) > tried  # one probe, which fails again
    assert counters.degraded


# --- the policy ----------------------------------------------------------------------------------


def test_an_empty_policy_is_the_documented_defaults() -> None:
    policy = check_policy({})
    assert policy == FraudPolicy()
    assert policy.model_dump() == {
        "member_velocity": {"max": 20, "window_seconds": 3600, "action": "hold"},
        "device_velocity": {"max": 30, "window_seconds": 3600, "action": "hold"},
        "ip_velocity": {"max": 60, "window_seconds": 3600, "action": "hold"},
        "phone_block_velocity": {"max": 100, "window_seconds": 3600, "action": "hold"},
        "members_per_device": {"max": 3, "window_seconds": 86400, "action": "hold"},
        "case_harvest": {"max": 6, "window_seconds": 600, "action": "hold"},
        "out_of_region": {"action": "deny"},
        "new_member_burst": {"member_age_seconds": 600, "max": 3, "action": "hold"},
        "enabled": True,
    }
    assert check_policy(policy.model_dump()) == policy  # what is stored reads back the same
    assert ACTIONS == ("allow", "hold", "deny", "claw_back")


def test_a_rule_given_in_part_keeps_its_other_defaults() -> None:
    policy = check_policy({"device_velocity": {"max": 50}, "new_member_burst": {"action": "deny"}})
    assert policy.device_velocity.model_dump() == {
        "max": 50,
        "window_seconds": 3600,
        "action": "hold",
    }
    assert (policy.new_member_burst.max, policy.new_member_burst.action) == (3, "deny")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"device_velocity": {"max": 0}}, "fraud.device_velocity.max"),
        ({"device_velocity": {"max": 1_000_001}}, "fraud.device_velocity.max"),
        ({"ip_velocity": {"max": "60"}}, "fraud.ip_velocity.max"),
        ({"member_velocity": {"window_seconds": 9}}, "fraud.member_velocity.window_seconds"),
        (
            {"case_harvest": {"window_seconds": 30 * 86400 + 1}},
            "fraud.case_harvest.window_seconds",
        ),
        ({"members_per_device": {"action": "ban"}}, "fraud.members_per_device.action"),
        ({"out_of_region": {"action": "block"}}, "fraud.out_of_region.action"),
        (
            {"new_member_burst": {"member_age_seconds": 0}},
            "fraud.new_member_burst.member_age_seconds",
        ),
        ({"phone_block_velocity": 100}, "fraud.phone_block_velocity"),
        ({"case_harvest": {"maximum": 6}}, "fraud.case_harvest.maximum"),
        ({"device_speed": {"max": 1}}, "fraud.device_speed"),
        ({"enabled": "yes"}, "fraud.enabled"),
    ],
)
def test_a_bad_policy_is_a_422_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        check_policy(raw)
    assert caught.value.status == 422
    assert list(caught.value.errors) == [field]
    assert caught.value.to_problem()["errors"][field]


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        check_policy({"device_velocity": {"max": 0, "action": "nope"}, "ip_velocity": {"max": -1}})
    assert set(caught.value.errors) == {
        "fraud.device_velocity.max",
        "fraud.device_velocity.action",
        "fraud.ip_velocity.max",
    }


def test_a_policy_that_is_not_an_object_is_a_422() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        check_policy([1, 2])  # type: ignore[arg-type]
    assert caught.value.errors == {"fraud": "must be an object"}


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RewardFacts(
            tenant_id=1,
            campaign_id=1,
            member_id=1,
            member_created_at=LONG_AGO,
            phone_block=None,
            device=None,
            ip=None,
            case=None,
            region_check="inside",
            now=dt.datetime(2025, 3, 1, 9, 0),
        )
