"""Field errors in the reader's language: the management API answers its problem+json field
errors in Chinese when the request asks for it (Accept-Language: zh, as the console's pages do)
and in English otherwise, with the same machine-readable code per field either way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from tests.console.conftest import Browser, Staff

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


def _campaign(**draw: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "name": "Spring",
        "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
        "ends_at": (now + dt.timedelta(days=10)).isoformat(),
    }
    if draw:
        body["draw"] = draw
    return body


def _prize(key: str, probability: str, **more: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "kind": "points", "points": 10, "probability": probability} | (
        more
    )


def _goods(value_fen: int, stock: int = 5) -> dict[str, Any]:
    return {
        "key": "kettle",
        "name": "Kettle",
        "kind": "goods",
        "value_fen": value_fen,
        "stock": stock,
        "probability": "0.01",
    }


def _send(browser: Browser, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    answer = browser.client.open(
        f"/api/v1{path}",
        method=method,
        json=body,
        headers={"X-CSRF-Token": browser.csrf, **headers},
    )
    return answer


# (the campaign, the field named, its code, the English message, the Chinese message)
CASES = [
    (
        _campaign(prizes=[_prize("a", "0.6"), _prize("b", "0.5")]),
        "draw.prizes",
        "probabilities_above_one",
        "the probabilities add up to 1.1, more than 1",
        "各奖品的概率之和为 1.1，超过 1。",
    ),
    (
        _campaign(prizes=[_goods(1000, stock=-3)]),
        "draw.prizes[0].stock",
        "greater_than_equal",
        "Input should be greater than or equal to 0",
        "不能小于 0。",
    ),
    (
        _campaign(prizes=[_goods(20_000)], budget_fen=10_000),
        "draw.prizes[0].value_fen",
        "prize_above_budget",
        "a prize above the campaign budget (¥100.00)",
        "奖品价值超过活动预算（¥100.00）。",
    ),
    (
        _campaign(prizes=[_goods(5_000_001)]),
        "draw.prizes[0].value_fen",
        "prize_above_legal_cap",
        "worth ¥50,000.01, above the legal cap of ¥50,000.00 for a prize draw "
        "(反不正当竞争法 第十条)",
        "奖品价值 ¥50,000.01，超过抽奖式有奖销售的法定上限 ¥50,000.00"
        "（《反不正当竞争法》第十条）。",
    ),
]


@pytest.mark.parametrize(("body", "field", "code", "english", "chinese"), CASES)
def test_a_campaigns_field_errors_follow_the_readers_language(
    body: dict[str, Any],
    field: str,
    code: str,
    english: str,
    chinese: str,
    acme: Staff,
    signed_in: Callable[[int], Browser],
) -> None:
    browser = signed_in(acme.users["admin"])
    zh = _send(browser, "POST", "/campaigns", body, ZH)
    assert zh.status_code == 422
    assert zh.get_json()["errors"][field] == chinese
    assert zh.get_json()["error_codes"][field] == code
    assert zh.get_json()["detail"] == f"{field}: {chinese}"
    # English when asked, and when the request names no language (what API clients read).
    for headers in (EN, {}):
        en = _send(browser, "POST", "/campaigns", body, headers)
        assert en.status_code == 422
        assert en.get_json()["errors"][field] == english
        assert en.get_json()["error_codes"][field] == code
    assert _send(browser, "POST", "/campaigns?lang=zh", body, {}).get_json()["errors"][field] == (
        chinese
    )


def test_overlapping_windows_are_refused_in_the_readers_language(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    first = _send(browser, "POST", "/campaigns", _campaign(), ZH)
    assert first.status_code == 201
    zh = _send(browser, "POST", "/campaigns", _campaign(), ZH).get_json()
    assert zh["code"] == "campaign_overlap"
    campaign_id = first.get_json()["id"]
    assert zh["errors"]["priority"] == f"与活动 {campaign_id} 时间重叠，且优先级同为 100。"
    assert zh["error_codes"]["priority"] == "campaign_overlap"
    assert zh["detail"].startswith(f"活动时间与活动 {campaign_id}（Spring）重叠")
    en = _send(browser, "POST", "/campaigns", _campaign(), EN).get_json()
    assert en["errors"]["priority"] == f"campaign {campaign_id} overlaps at priority 100"


def test_a_running_campaigns_odds_are_refused_in_the_readers_language(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    body = _campaign(prizes=[_prize("a", "0.1")])
    made = _send(browser, "POST", "/campaigns", body, ZH)
    campaign_id = made.get_json()["id"]
    running = _send(browser, "POST", f"/campaigns/{campaign_id}/schedule", {}, ZH)
    assert running.get_json()["status"] == "running"
    config = made.get_json()["config"]
    config["draw"]["prizes"][0]["probability"] = "0.5"
    zh = _send(browser, "PUT", f"/campaigns/{campaign_id}", config, ZH)
    assert zh.status_code == 409
    assert zh.get_json()["errors"] == {"draw": "活动排期后不能更改。"}
    assert zh.get_json()["error_codes"] == {"draw": "campaign_locked"}
    assert zh.get_json()["detail"] == "活动进行中：draw 受已公布的抽奖承诺约束，不能更改。"
    en = _send(browser, "PUT", f"/campaigns/{campaign_id}", config, {}).get_json()
    assert en["errors"] == {"draw": "cannot change after scheduling"}
    # What the API allows of a running campaign still changes.
    config["draw"]["prizes"][0]["probability"] = "0.1"
    config["name"] = "Spring (extended copy)"
    renamed = _send(browser, "PUT", f"/campaigns/{campaign_id}", config, ZH)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Spring (extended copy)"


def test_the_other_forms_errors_are_in_chinese_too(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    product = _send(browser, "POST", "/products", {"sku": "", "name": "Tea"}, ZH).get_json()
    assert product["errors"]["sku"] == "不能为空。"
    distributor = _send(
        browser,
        "POST",
        "/trace/distributors",
        {"code": "D1", "name": "Hangzhou", "level": "city", "regions": ["CN-XX"]},
        ZH,
    ).get_json()
    assert distributor["errors"]["regions"] == "“CN-XX”：CN-XX 不是中国的省级行政区。"
    assert distributor["error_codes"]["regions"] == "region_province"
    tier = _send(browser, "POST", "/tiers", {"name": "", "rank": -1}, ZH).get_json()
    assert tier["errors"] == {"name": "不能为空。", "rank": "不能小于 0。"}
    item = _send(browser, "POST", "/catalogue/items", {"name": "Cup", "points_cost": 0}, ZH)
    assert item.get_json()["errors"]["points_cost"] == "不能小于 1。"
    rule = _send(browser, "POST", "/alert-rules", {"name": "x", "kinds": []}, ZH).get_json()
    assert rule["errors"]["kinds"] == "至少 1 项。"
