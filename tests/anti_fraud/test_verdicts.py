"""The verdict rules, as DESIGN.md §5 states them."""

from __future__ import annotations

import datetime as dt

from anti_fraud.verdicts import CodeFacts, Thresholds, judge

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def facts(**kw: object) -> CodeFacts:
    base: dict[str, object] = {
        "first_scan": False,
        "first_device": "phone-a",
        "scan_count": 2,
        "device_count": 1,
        "blacklist_reason": None,
    }
    base.update(kw)
    return CodeFacts(**base)  # type: ignore[arg-type]


def test_first_scan_is_genuine() -> None:
    j = judge(
        facts(first_scan=True, scan_count=1), device="phone-a", thresholds=Thresholds(), at=NOW
    )
    assert j.verdict == "genuine" and j.signals == ()


def test_the_first_device_rescanning_stays_genuine() -> None:
    j = judge(facts(scan_count=9), device="phone-a", thresholds=Thresholds(), at=NOW)
    assert j.verdict == "genuine"


def test_another_device_sees_already_verified() -> None:
    j = judge(facts(device_count=2), device="phone-b", thresholds=Thresholds(), at=NOW)
    assert j.verdict == "already_verified"


def test_many_devices_make_it_suspicious_at_the_tenant_threshold() -> None:
    thresholds = Thresholds(clone_device_threshold=3)
    assert (
        judge(facts(device_count=2), device="b", thresholds=thresholds, at=NOW).verdict
        == "already_verified"
    )
    j = judge(facts(device_count=3), device="c", thresholds=thresholds, at=NOW)
    assert j.verdict == "suspicious" and "many_devices" in j.signals
    # Even the first device is told: the code has been copied.
    assert (
        judge(facts(device_count=3), device="phone-a", thresholds=thresholds, at=NOW).verdict
        == "suspicious"
    )


def test_auto_blacklisting_once_past_its_threshold() -> None:
    thresholds = Thresholds(clone_device_threshold=5, auto_blacklist_device_threshold=8)
    j = judge(facts(device_count=8), device="x", thresholds=thresholds, at=NOW)
    assert j.auto_blacklist and "auto_blacklisted" in j.signals
    already = judge(
        facts(device_count=9, blacklist_reason="max_scan_count_exceeded"),
        device="x",
        thresholds=thresholds,
        at=NOW,
    )
    assert not already.auto_blacklist
    assert "blacklisted:max_scan_count_exceeded" in already.signals


def test_blacklisted_and_unactivated_codes_are_suspicious() -> None:
    assert judge(
        facts(first_scan=True, blacklist_reason="stolen"),
        device="a",
        thresholds=Thresholds(),
        at=NOW,
    ).signals == ("blacklisted:stolen",)
    j = judge(
        facts(first_scan=True, activated=False),
        device="a",
        thresholds=Thresholds(),
        at=NOW,
    )
    assert j.verdict == "suspicious" and j.signals == ("not_activated",)
    withdrawn = judge(
        facts(first_scan=True, activated=False, deactivated_reason="misprint"),
        device="a",
        thresholds=Thresholds(),
        at=NOW,
    )
    assert withdrawn.verdict == "suspicious"
    assert withdrawn.signals == ("deactivated:misprint",)


def test_impossible_travel_hangzhou_to_beijing_in_ten_minutes() -> None:
    hangzhou = {
        "prev_lat": 30.25,
        "prev_lon": 120.15,
        "prev_located_at": NOW - dt.timedelta(minutes=10),
    }
    j = judge(
        facts(**hangzhou), device="phone-a", thresholds=Thresholds(), lat=39.90, lon=116.40, at=NOW
    )
    assert j.verdict == "suspicious" and "impossible_travel" in j.signals
    five_hours = {**hangzhou, "prev_located_at": NOW - dt.timedelta(hours=5)}
    assert (
        judge(
            facts(**five_hours),
            device="phone-a",
            thresholds=Thresholds(),
            lat=39.90,
            lon=116.40,
            at=NOW,
        ).verdict
        == "genuine"
    )
    # Across town in a minute is GPS noise, not a signal.
    across_town = {**hangzhou, "prev_located_at": NOW - dt.timedelta(minutes=1)}
    assert (
        judge(
            facts(**across_town),
            device="phone-a",
            thresholds=Thresholds(),
            lat=30.30,
            lon=120.40,
            at=NOW,
        ).verdict
        == "genuine"
    )
