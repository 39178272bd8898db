"""The campaigns management API as a brand's console uses it: create, schedule, run and end a
campaign, read its rules, pools, budget, stats and draws, verify it, decide the review queue,
ship prizes and see what the brand owes — scoped to the brand, audited, and every bad input a
problem+json, never a 500."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

import console
import members
from campaigns.fulfilment import claim_goods
from campaigns.verify import verify_export
from core import services as core_services
from core.models import AuditEntry
from core.runtime import Runtime
from tests.campaigns.helpers import brand_with_members, config, scan_reward
from tests.factories import Brand

Call = Any

START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
END = START + dt.timedelta(days=7)


def window(**changes: Any) -> dict[str, Any]:
    """helpers.config() in a window around now (the API schedules and ends by the clock)."""
    return config(starts_at=START.isoformat(), ends_at=END.isoformat(), **changes)


def only_prize(kind: str, **prize: Any) -> dict[str, Any]:
    return {
        "prizes": [
            {"key": "p", "name": "奖品", "kind": kind, "probability": "1", **prize},
            {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
        ],
        "fallback": "thanks",
    }


def console_app() -> Flask:
    app = console.create_app()
    return app


def client(token: str | None) -> Call:
    """Call the console's API as the holder of ``token`` (None: no credentials)."""
    http = console_app().test_client()
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(method: str, path: str, **kw: Any) -> Any:
        return http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    return call


@pytest.fixture
def brand_and_people(runtime: Runtime) -> tuple[Brand, list[members.SignedIn]]:
    with runtime.db.unit_of_work() as session:
        return brand_with_members(session, runtime)


@pytest.fixture
def brand(brand_and_people: tuple[Brand, list[members.SignedIn]]) -> Brand:
    return brand_and_people[0]


@pytest.fixture
def people(brand_and_people: tuple[Brand, list[members.SignedIn]]) -> list[members.SignedIn]:
    return brand_and_people[1]


@pytest.fixture
def api(brand: Brand) -> Call:
    return client(brand.admin_token)


def key(runtime: Runtime, brand: Brand, role: str) -> str:
    with runtime.db.unit_of_work() as session:
        return core_services.create_api_key(
            session, tenant_id=brand.tenant_id, name=role, role=role
        ).token


def scan(runtime: Runtime, brand: Brand, member: members.SignedIn, serial: int) -> Any:
    with runtime.db.unit_of_work() as session:
        return scan_reward(session, runtime, brand, member, serial, now=dt.datetime.now(dt.UTC))


def audited(runtime: Runtime, prefix: str) -> list[str]:
    with runtime.db.read_only() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.startswith(prefix))
                .order_by(AuditEntry.id)
            )
        )


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


# --- a campaign's life --------------------------------------------------------------------------


def test_a_brand_runs_a_campaign_over_http_and_then_anyone_can_verify_it(
    runtime: Runtime, brand: Brand, people: list[members.SignedIn], api: Call
) -> None:
    spec = window(draw={"budget_fen": 100_000})
    made = ok(api("POST", "/campaigns", json=spec), 201)
    cid = made["id"]
    assert (made["status"], made["seed_hash"], made["has_draw"]) == ("draft", None, True)
    assert made["config"]["draw"]["prizes"][0]["key"] == "cash"
    listed = ok(api("GET", "/campaigns"))
    assert [c["id"] for c in listed["items"]] == [cid] and listed["next_after"] is None

    spec["name"] = "双十二扫码有礼"  # a draft changes freely
    assert ok(api("PUT", f"/campaigns/{cid}", json=spec))["name"] == "双十二扫码有礼"
    scheduled = ok(api("POST", f"/campaigns/{cid}/schedule"))
    assert scheduled["status"] == "running" and len(scheduled["seed_hash"]) == 64

    # Now the odds are bound by the published commitment; the name is not.
    richer = copy.deepcopy(spec)
    richer["draw"]["prizes"][0]["probability"] = "1/2"
    locked = api("PUT", f"/campaigns/{cid}", json=richer)
    assert locked.status_code == 409 and locked.get_json()["code"] == "campaign_locked"
    assert "draw" in locked.get_json()["errors"]
    spec["name"] = "双十二"
    assert ok(api("PUT", f"/campaigns/{cid}", json=spec))["name"] == "双十二"

    rules_en = ok(api("GET", f"/campaigns/{cid}/rules?lang=en"))
    assert rules_en["lines"][0].startswith("Runs from")
    assert [(p["key"], p["probability"], p["percent"]) for p in rules_en["prizes"]][:2] == [
        ("cash", "1/10", "10%"),
        ("p50", "1/5", "20%"),
    ]
    commitments = rules_en["commitments"]
    assert commitments["seed_hash"] == scheduled["seed_hash"] and commitments["seed"] is None
    assert commitments["table"][0] == ["cash", "1/10"]
    assert ok(api("GET", f"/campaigns/{cid}/rules"))["lines"][0].startswith("活动时间")
    early = api("GET", f"/campaigns/{cid}/verify")
    assert early.status_code == 409 and early.get_json()["code"] == "seed_not_revealed"
    assert api("GET", f"/campaigns/{cid}/draws.json").status_code == 409

    assert ok(api("POST", f"/campaigns/{cid}/pause"))["status"] == "paused"
    assert ok(api("POST", f"/campaigns/{cid}/resume"))["status"] == "running"
    again = api("POST", f"/campaigns/{cid}/resume")
    assert again.status_code == 409 and again.get_json()["code"] == "campaign_state"

    for serial in range(1, 31):
        scan(runtime, brand, people[serial % 3], serial)

    pools = {p["key"]: p for p in ok(api("GET", f"/campaigns/{cid}/prizes"))["items"]}
    cash = pools["cash"]
    assert cash["stock"] == 3 and cash["issued"] == cash["won"] <= 3
    assert cash["left"] == 3 - cash["issued"] and cash["unit_value_fen"] == 500
    assert pools["thanks"]["left"] is None  # unlimited
    budget = ok(api("GET", f"/campaigns/{cid}/budget"))
    given = sum(p["issued"] * p["unit_value_fen"] for p in pools.values())
    assert budget["budget_fen"] == 100_000 and budget["spent_fen"] == given
    assert budget["left_fen"] == 100_000 - given and budget["timezone"] == "Asia/Shanghai"
    assert sum(d["spent_fen"] for d in budget["by_day"]) == given
    stats = ok(api("GET", f"/campaigns/{cid}/stats"))
    assert (stats["rewards"], stats["points"], stats["draws"]) == (30, 300, 30)
    assert sum(stats["outcomes"].values()) == 30 and stats["held"] == stats["denied"] == 0

    first = ok(api("GET", f"/campaigns/{cid}/draws?limit=20"))
    rest = ok(api("GET", f"/campaigns/{cid}/draws?limit=20&after={first['next_after']}"))
    ids = [d["reward_id"] for d in first["items"] + rest["items"]]
    assert len(ids) == 30 and ids == sorted(ids, reverse=True) and rest["next_after"] is None
    won = ok(api("GET", f"/campaigns/{cid}/draws?outcome=won&limit=200"))["items"]
    assert won and all(d["outcome"] == "won" and d["prize_key"] for d in won)
    assert won[0]["inputs"]["campaign"] == cid

    ended = ok(api("POST", f"/campaigns/{cid}/end"))
    assert ended["status"] == "ended" and len(ended["seed_revealed"]) == 64
    verified = ok(api("GET", f"/campaigns/{cid}/verify"))
    assert verified["ok"] and verified["draws"] == 30 and verified["problems"] == []
    assert verified["commitments_ok"] and verified["seed_hex"] == ended["seed_revealed"]
    download = api("GET", f"/campaigns/{cid}/draws.json")
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    assert verify_export(download.get_json()).ok

    assert audited(runtime, "campaigns.") == [
        "campaigns.create",
        "campaigns.update",
        "campaigns.schedule",
        "campaigns.update",
        "campaigns.pause",
        "campaigns.resume",
        "campaigns.end",
    ]


def test_the_openapi_document_describes_the_campaigns_api(brand: Brand) -> None:
    app = console_app()
    with app.test_client() as http:
        spec = http.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert (
        "post" in paths["/api/v1/campaigns"] and "put" in paths["/api/v1/campaigns/{campaign_id}"]
    )
    assert "/api/v1/campaigns/{campaign_id}/verify" in paths
    assert "/api/v1/fulfilments/{reward_id}/shipping" in paths
    assert "CampaignSpec" in spec["components"]["schemas"]


def test_a_campaign_without_a_draw_has_nothing_to_verify(
    runtime: Runtime, brand: Brand, people: list[members.SignedIn], api: Call
) -> None:
    cid = ok(api("POST", "/campaigns", json=window(draw=None)), 201)["id"]
    ok(api("POST", f"/campaigns/{cid}/schedule"))
    assert scan(runtime, brand, people[0], 1).points == 10
    rules_zh = ok(api("GET", f"/campaigns/{cid}/rules"))
    assert rules_zh["prizes"] == [] and rules_zh["commitments"]["table"] is None
    assert ok(api("GET", f"/campaigns/{cid}/prizes"))["items"] == []
    budget = ok(api("GET", f"/campaigns/{cid}/budget"))
    assert (budget["budget_fen"], budget["spent_fen"], budget["by_day"]) == (None, 0, [])
    stats = ok(api("GET", f"/campaigns/{cid}/stats"))
    assert (stats["rewards"], stats["points"], stats["draws"], stats["winners"]) == (1, 10, 0, 0)
    ok(api("POST", f"/campaigns/{cid}/end"))
    nothing = api("GET", f"/campaigns/{cid}/verify")
    assert nothing.status_code == 409 and "has no draw" in nothing.get_json()["detail"]


# --- bad input ----------------------------------------------------------------------------------


def _with_prize(index: int, **changes: Any) -> dict[str, Any]:
    spec = window(priority=7)
    spec["draw"]["prizes"][index].update(changes)
    return spec


def test_every_bad_input_is_a_problem_never_a_500(
    runtime: Runtime, brand: Brand, api: Call
) -> None:
    cid = ok(api("POST", "/campaigns", json=window()), 201)["id"]
    with runtime.db.unit_of_work() as session:
        rival, _ = brand_with_members(session, runtime, slug="rival", count=1)
    rival_id = ok(client(rival.admin_token)("POST", "/campaigns", json=window()), 201)["id"]
    over_one = window(priority=7)
    over_one["draw"]["prizes"][3]["probability"] = "0.7"  # 0.1 + 0.2 + 0.05 + 0.7 > 1
    nul = window(priority=7, name="bad\u0000name")

    cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        (
            "POST",
            "/campaigns",
            {"data": "{not json", "content_type": "application/json"},
            422,
            "body",
        ),
        ("POST", "/campaigns", {"data": "name=x", "content_type": "text/plain"}, 415, None),
        ("POST", "/campaigns", {"json": [1, 2]}, 422, None),
        ("POST", "/campaigns", {"json": over_one}, 422, "draw.prizes"),
        ("POST", "/campaigns", {"json": _with_prize(0, stock=-1)}, 422, "draw.prizes[0].stock"),
        (
            "POST",
            "/campaigns",
            {"json": window(priority=7, draw={"budget_fen": 400})},
            422,
            "draw.prizes[0].amount_fen",
        ),
        (
            "POST",
            "/campaigns",
            {"json": _with_prize(2, value_fen=5_000_001)},
            422,
            "draw.prizes[2].value_fen",
        ),
        ("POST", "/campaigns", {"json": window()}, 422, "priority"),  # overlaps at priority 100
        ("POST", "/campaigns", {"json": nul}, 422, None),
        (  # a time that leaves datetime's range once it is put in UTC
            "POST",
            "/campaigns",
            {"json": {**window(priority=7), "starts_at": "0001-01-01T00:00:00+08:00"}},
            422,
            "starts_at",
        ),
        ("PUT", f"/campaigns/{cid}", {"json": {"name": "x"}}, 422, "starts_at"),
        ("GET", "/campaigns/999999", {}, 404, None),
        ("GET", f"/campaigns/{2**31}", {}, 404, None),
        ("GET", "/campaigns/abc", {}, 404, None),
        ("GET", f"/campaigns/{rival_id}", {}, 404, None),
        ("PUT", f"/campaigns/{rival_id}", {"json": window(priority=9)}, 404, None),
        ("POST", f"/campaigns/{rival_id}/schedule", {}, 404, None),
        ("GET", f"/campaigns/{rival_id}/draws", {}, 404, None),
        ("GET", "/campaigns?status=bogus", {}, 422, "status"),
        ("GET", "/campaigns?after=-1", {}, 422, "after"),
        ("GET", "/campaigns?limit=100000", {}, 422, "limit"),
        ("GET", f"/campaigns/{cid}/rules?lang=fr", {}, 422, "lang"),
        ("GET", f"/campaigns/{cid}/draws?outcome=maybe", {}, 422, "outcome"),
        ("GET", f"/campaigns/{cid}/verify", {}, 409, None),
        ("POST", f"/campaigns/{cid}/resume", {}, 409, None),
        ("POST", "/reviews/999999", {"json": {"decision": "release"}}, 404, None),
        ("POST", "/reviews/1", {"json": {"decision": "maybe"}}, 422, "decision"),
        ("POST", "/reviews/1", {"json": {"decision": "deny", "extra": 1}}, 422, "extra"),
        ("GET", "/fulfilments?status=bogus", {}, 422, "status"),
        ("GET", f"/fulfilments?campaign_id={rival_id}", {}, 404, None),
        ("GET", "/fulfilments/999999/shipping", {}, 404, None),
        ("POST", "/fulfilments/999999/ship", {"json": {"tracking_no": "SF1"}}, 404, None),
        ("POST", "/fulfilments/1/ship", {"json": {"tracking_no": ""}}, 422, "tracking_no"),
        ("GET", "/liability?points_per_yuan=0", {}, 422, "points_per_yuan"),
    ]
    for method, path, kw, status, field in cases:
        response = api(method, path, **kw)
        where = f"{method} {path} {kw}"
        assert response.status_code == status, (where, response.get_json())
        assert response.mimetype == "application/problem+json", where
        if field is not None:
            assert field in response.get_json()["errors"], (where, response.get_json())
    overlap = api("POST", "/campaigns", json=window())
    assert overlap.get_json()["code"] == "campaign_overlap"
    # Nothing was made by the refused requests.
    assert [c["id"] for c in ok(api("GET", "/campaigns"))["items"]] == [cid]


def test_roles_decide_who_reads_writes_and_sees_shipping(runtime: Runtime, brand: Brand) -> None:
    analyst = client(key(runtime, brand, "analyst"))
    service = client(key(runtime, brand, "customer_service"))
    factory = client(key(runtime, brand, "factory_operator"))
    nobody = client(None)
    assert analyst("GET", "/campaigns").status_code == 200
    assert analyst("GET", "/liability").status_code == 200
    assert analyst("POST", "/campaigns", json=window()).status_code == 403
    assert analyst("GET", "/fulfilments/1/shipping").status_code == 403
    assert service("GET", "/reviews").status_code == 200
    assert service("POST", "/reviews/1", json={"decision": "deny"}).status_code == 403
    assert factory("GET", "/campaigns").status_code == 403
    assert nobody("GET", "/campaigns").status_code == 401


# --- the review queue ---------------------------------------------------------------------------


def test_a_reviewer_releases_and_denies_held_rewards(
    runtime: Runtime, brand: Brand, people: list[members.SignedIn], api: Call
) -> None:
    fraud = {"member_velocity": {"max": 1, "window_seconds": 3600, "action": "hold"}}
    spec = window(fraud=fraud, draw=only_prize("points", stock=10, points=50))
    cid = ok(api("POST", "/campaigns", json=spec), 201)["id"]
    ok(api("POST", f"/campaigns/{cid}/schedule"))
    alice = people[0]
    assert [scan(runtime, brand, alice, s).why for s in (1, 2, 3)] == ["earned", "held", "held"]

    page = ok(api("GET", "/reviews?limit=1"))
    held = page["items"][0]
    assert held["reasons"] == ["member_velocity"] and held["counts"]["member_velocity"] == 2
    assert held["draw"] == {"campaign_id": cid, "outcome": "won", "prize_key": "p"}
    assert held["member_id"] == alice.member_id and held["points"] == 10
    second = ok(api("GET", f"/reviews?after={page['next_after']}"))["items"]
    assert len(second) == 1 and second[0]["id"] > held["id"]

    released = ok(api("POST", f"/reviews/{held['id']}", json={"decision": "release", "note": "ok"}))
    assert released["status"] == "granted" and released["review_note"] == "ok"
    assert released["reviewed_by"].startswith("api-key:")
    twice = api("POST", f"/reviews/{held['id']}", json={"decision": "deny"})
    assert twice.status_code == 409 and twice.get_json()["code"] == "review_state"
    denied = ok(api("POST", f"/reviews/{second[0]['id']}", json={"decision": "deny"}))
    assert denied["status"] == "denied"
    assert ok(api("GET", "/reviews"))["items"] == []

    stats = ok(api("GET", f"/campaigns/{cid}/stats"))
    assert (stats["held"], stats["denied"], stats["statuses"]["granted"]) == (0, 1, 2)
    assert audited(runtime, "campaigns.review") == ["campaigns.review", "campaigns.review"]
    with runtime.db.read_only() as session:
        assert members.balance_of(session, alice.member_id).pending == 20  # 10 + the released


# --- prizes to deliver and what the brand owes --------------------------------------------------


def test_a_goods_prize_is_claimed_shipped_and_leaves_the_liability(
    runtime: Runtime, brand: Brand, people: list[members.SignedIn], api: Call
) -> None:
    spec = window(draw=only_prize("goods", stock=2, value_fen=3900))
    cid = ok(api("POST", "/campaigns", json=spec), 201)["id"]
    ok(api("POST", f"/campaigns/{cid}/schedule"))
    alice = people[0]
    won = scan(runtime, brand, alice, 1)
    assert won.draw is not None and won.draw.status == "claim_wanted"
    reward_id = won.draw.reward_id

    owed = ok(api("GET", "/liability"))
    assert (owed["points_pending"], owed["points_fen"]) == (10, 10)  # 10 points at 100 a yuan
    assert owed["prizes"] == [
        {"kind": "goods", "status": "claim_wanted", "count": 1, "value_fen": 3900}
    ]
    assert owed["total_fen"] == 3910
    assert ok(api("GET", "/liability?points_per_yuan=10"))["points_fen"] == 100

    nothing_yet = ok(api("GET", f"/fulfilments/{reward_id}/shipping"))
    assert nothing_yet["shipping"] is None and nothing_yet["status"] == "claim_wanted"
    early = api("POST", f"/fulfilments/{reward_id}/ship", json={"tracking_no": "SF1"})
    assert early.status_code == 409 and early.get_json()["code"] == "claim_state"

    with runtime.db.unit_of_work() as session:
        claim_goods(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            member_id=alice.member_id,
            reward_id=reward_id,
            shipping={
                "name": "王小明",
                "phone": "13800138000",
                "address": "杭州市西湖区文三路 1 号",
            },
        )
    claimed = ok(api("GET", "/fulfilments?status=claimed"))["items"]
    assert [(f["reward_id"], f["prize_key"], f["has_shipping"]) for f in claimed] == [
        (reward_id, "p", True)
    ]
    details = ok(api("GET", f"/fulfilments/{reward_id}/shipping"))["shipping"]
    assert details == {
        "name": "王小明",
        "phone": "+8613800138000",
        "address": "杭州市西湖区文三路 1 号",
    }
    assert audited(runtime, "campaigns.shipping") == ["campaigns.shipping.view"]

    with runtime.db.unit_of_work() as session:
        rival, _ = brand_with_members(session, runtime, slug="rival", count=1)
    rival_api = client(rival.admin_token)
    assert rival_api("GET", f"/fulfilments/{reward_id}/shipping").status_code == 404
    assert (
        rival_api("POST", f"/fulfilments/{reward_id}/ship", json={"tracking_no": "X1"}).status_code
        == 404
    )

    shipped = ok(
        api("POST", f"/fulfilments/{reward_id}/ship", json={"tracking_no": "SF1234567890"})
    )
    assert (shipped["status"], shipped["tracking_no"]) == ("shipped", "SF1234567890")
    repeat = api("POST", f"/fulfilments/{reward_id}/ship", json={"tracking_no": "SF1234567890"})
    assert repeat.status_code == 200
    assert ok(api("GET", f"/fulfilments?status=shipped&campaign_id={cid}"))["items"][0]["done_at"]
    after = ok(api("GET", "/liability"))
    assert after["prizes"] == [] and after["total_fen"] == 10
