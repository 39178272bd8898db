"""The draw as a phone meets it, through HTTP: a signed-in member scans codes of a brand running a
campaign and sees each draw in the scan's answer (the same draw when asking again, nothing for
anyone else), lists the prizes, claims the goods one; anyone reads the campaign's rules with their
exact odds and commitments, and after the end its seed and every draw, recomputable."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import campaigns
import codegen
import scan_service
from campaigns.draws import draw_inputs
from campaigns.fulfilment import mark_shipped, shipping_of
from campaigns.lifecycle import campaign_seed, create_campaign, end_campaign, spec_of
from campaigns.models import Campaign, Fulfilment
from core.db import utcnow
from core.ratelimit import MemoryRateLimiter
from core.runtime import Runtime
from members.otp import RecordingSmsSender, use_rate_limiter, use_sms_sender
from scan_service.schemas import ScanOut
from tests.campaigns.helpers import config, live_campaign
from tests.factories import Brand, make_brand

ALICE = "13912345678"
BOB = "13987654321"
PRIZES = [
    {
        "key": "cash",
        "name": "红包",
        "kind": "cash",
        "probability": "1/4",
        "stock": 10,
        "amount_fen": 500,
    },
    {"key": "p50", "name": "50 积分", "kind": "points", "probability": "1/4", "points": 50},
    {
        "key": "mug",
        "name": "马克杯",
        "kind": "goods",
        "probability": "1/4",
        "stock": 10,
        "value_fen": 3900,
    },
]


def window() -> dict[str, str]:
    now = utcnow()
    return {
        "starts_at": (now - dt.timedelta(hours=1)).isoformat(),
        "ends_at": (now + dt.timedelta(days=9)).isoformat(),
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    use_rate_limiter(runtime, MemoryRateLimiter(clock=Clock()))
    return sender


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return scan_service.create_app()


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, slug="acme", quantity=200)


@pytest.fixture
def campaign_id(runtime: Runtime, brand: Brand) -> int:
    with runtime.db.unit_of_work() as session:
        made = live_campaign(
            session, runtime, brand, draw={"prizes": PRIZES, "fallback": None}, **window()
        )
        return made.id


class Phone:
    """A phone signed in to the brand: its own cookies, its member's token and id."""

    def __init__(self, app: Flask, sms: RecordingSmsSender, number: str) -> None:
        self.http: FlaskClient = app.test_client()
        sent = self.http.post("/api/v1/members/otp", json={"brand": "acme", "phone": number})
        assert sent.status_code == 202, sent.get_json()
        done = self.http.post(
            "/api/v1/members/sign-in",
            json={"brand": "acme", "phone": number, "code": sms.last_code(number)},
        )
        assert done.status_code == 200, done.get_json()
        self.token = done.get_json()["token"]
        self.member_id = int(done.get_json()["member"]["id"])
        self.device = f"device-{number}"

    def call(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.open(f"/api/v1{path}", method=method, headers=headers, **kw)

    def scan(self, url: str, **kw: Any) -> dict[str, Any]:
        answer = self.call("POST", "/scans", json={"code": url, "device_id": self.device}, **kw)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        body: dict[str, Any] = answer.get_json()
        ScanOut.model_validate(body)
        return body


def code_url(runtime: Runtime, brand: Brand, serial: int) -> str:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=brand.tenant_id, batch_id=brand.batch_id
        )
        return codegen.code_for_serial(
            runtime, batch=batch, gtin=None, serial=serial, host="yima.example.com"
        ).url


def serials_drawing(
    runtime: Runtime, brand: Brand, campaign_id: int, member_id: int
) -> dict[str | None, int]:
    """For each prize key (None: no prize), a serial whose draw by this member lands on it:
    the draw is a function of the seed and the inputs, so the test knows it in advance."""
    with runtime.db.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        seed = campaign_seed(session, runtime, campaign)
        odds = spec_of(campaign).odds()
    assert seed is not None and odds is not None
    found: dict[str | None, int] = {}
    for serial in range(1, 201):
        inputs = draw_inputs(campaign_id, brand.batch_id, serial, member_id)
        found.setdefault(campaigns.draw(seed, inputs, odds), serial)
    assert set(found) == {"cash", "p50", "mug", None}
    return found


def test_a_member_wins_sees_the_same_draw_again_and_claims_the_goods(
    runtime: Runtime, app: Flask, sms: RecordingSmsSender, brand: Brand, campaign_id: int
) -> None:
    alice = Phone(app, sms, ALICE)
    serial = serials_drawing(runtime, brand, campaign_id, alice.member_id)

    # A cash red envelope, in words, on its way.
    cash = alice.scan(code_url(runtime, brand, serial["cash"]))
    assert cash["points"]["status"] == "earned" and cash["points"]["earned"] == 10
    draw = cash["draw"]
    assert draw["outcome"] == "won" and draw["won"] is True
    assert draw["prize"] == {
        "key": "cash",
        "name": "红包",
        "kind": "cash",
        "amount_fen": 500,
        "points": None,
    }
    assert draw["text"] == "恭喜获得 现金红包 ¥5.00"
    assert draw["status"] == "pending" and draw["status_text"] == "红包发放中"
    assert draw["claim_url"] is None and draw["campaign_id"] == campaign_id

    # Goods wait for the winner's address; points go straight to the account; a miss is a miss.
    mug = alice.scan(code_url(runtime, brand, serial["mug"]))["draw"]
    assert mug["text"] == "恭喜获得 马克杯" and mug["status"] == "claim_wanted"
    assert mug["claim_url"] == f"/m/prizes/{mug['reward_id']}/claim"
    assert mug["status_text"] == "填写收货信息，领取奖品"
    points = alice.scan(code_url(runtime, brand, serial["p50"]))["draw"]
    assert points["text"] == "恭喜获得 50 积分" and points["status_text"] == "已发放到您的账户"
    nothing = alice.scan(code_url(runtime, brand, serial[None]))
    assert nothing["draw"]["outcome"] == "nothing" and nothing["draw"]["won"] is False
    assert nothing["draw"]["prize"] is None and nothing["draw"]["text"] == "谢谢参与"
    assert nothing["points"]["earned"] == 10

    # Asking again: the same draw (the envelope has been sent since), no new points.
    again = alice.scan(
        code_url(runtime, brand, serial["cash"]), headers={"Accept-Language": "en-US"}
    )
    assert again["points"]["status"] == "already_yours"
    assert again["points"]["text"] == "This code's points are already yours"
    assert again["draw"]["reward_id"] == draw["reward_id"]
    assert again["draw"]["text"] == "You won a cash red envelope of ¥5.00"
    assert again["draw"]["status"] == "done"
    assert again["draw"]["status_text"] == "Your red envelope has been sent"
    zh_again = alice.scan(code_url(runtime, brand, serial["mug"]))
    assert zh_again["points"]["text"] == "此码的积分已归您所有"
    assert zh_again["draw"] == mug

    # Another member scanning the same code gets neither points nor a draw.
    bob = Phone(app, sms, BOB)
    other = bob.scan(code_url(runtime, brand, serial["mug"]))
    assert other["verdict"] == "already_verified"
    assert other["points"]["status"] == "already_claimed" and other["draw"] is None

    # My prizes: the three that gave something, newest first, a page at a time.
    listed = alice.call("GET", "/me/prizes")
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [i["prize"]["key"] for i in items] == ["p50", "mug", "cash"]
    assert [i["claim_needed"] for i in items] == [False, True, False]
    assert items[1]["reward_id"] == mug["reward_id"]
    assert items[1]["campaign"] == {"id": campaign_id, "name": "双十一扫码有礼", "brand": "acme"}
    assert items[0]["status"] == "done" and items[2]["status"] == "done"
    first = alice.call("GET", "/me/prizes?limit=2").get_json()
    assert len(first["items"]) == 2 and first["next_after"] == mug["reward_id"]
    rest = alice.call("GET", f"/me/prizes?limit=2&after={first['next_after']}").get_json()
    assert [i["prize"]["key"] for i in rest["items"]] == ["cash"] and rest["next_after"] is None
    assert bob.call("GET", "/me/prizes").get_json()["items"] == []
    assert bob.call("GET", f"/me/prizes/{mug['reward_id']}").status_code == 404
    assert app.test_client().get("/api/v1/me/prizes").status_code == 401
    assert alice.call("GET", f"/me/prizes/{nothing['draw']['reward_id']}").status_code == 404

    # The claim: wrong details are named field by field; someone else's prize is not found.
    claim = f"/me/prizes/{mug['reward_id']}/claim"
    wrong = alice.call("POST", claim, json={"name": "", "phone": "12345", "address": "杭州"})
    assert wrong.status_code == 422
    assert wrong.headers["Content-Type"] == "application/problem+json"
    assert set(wrong.get_json()["errors"]) == {"name", "phone", "address"}
    missing = alice.call("POST", claim, json={"name": "张三", "phone": "13900001111"})
    assert missing.status_code == 422 and set(missing.get_json()["errors"]) == {"address"}
    details = {"name": "张三", "phone": "139 0000 1111", "address": "杭州市西湖区龙井路 1 号"}
    assert bob.call("POST", claim, json=details).status_code == 404
    done = alice.call("POST", claim, json=details)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "claimed" and done.get_json()["claim_needed"] is False
    assert alice.call("POST", claim, json=details).status_code == 200  # a repeat is harmless

    # A cash prize takes no address; a shipped one no longer does.
    refused = alice.call("POST", f"/me/prizes/{draw['reward_id']}/claim", json=details)
    assert refused.status_code == 409 and refused.get_json()["code"] == "claim_state"
    with runtime.db.unit_of_work() as session:
        row = session.scalars(
            select(Fulfilment).where(Fulfilment.reward_id == mug["reward_id"])
        ).one()
        assert shipping_of(session, runtime, row) == {
            "name": "张三",
            "phone": "+8613900001111",  # normalised
            "address": "杭州市西湖区龙井路 1 号",
        }
        mark_shipped(
            session, tenant_id=brand.tenant_id, reward_id=mug["reward_id"], tracking_no="SF1234"
        )
    late = alice.call("POST", claim, json=details)
    assert late.status_code == 409 and late.get_json()["code"] == "claim_state"
    shipped = alice.call("GET", f"/me/prizes/{mug['reward_id']}").get_json()
    assert shipped["status"] == "shipped" and shipped["tracking_no"] == "SF1234"


def test_the_rules_show_exact_odds_and_commitments_then_the_seed_and_every_draw(
    runtime: Runtime, app: Flask, sms: RecordingSmsSender, brand: Brand, campaign_id: int
) -> None:
    anyone = app.test_client()
    rules = anyone.get(f"/api/v1/campaigns/acme/{campaign_id}")
    assert rules.status_code == 200, rules.get_json()
    body = rules.get_json()
    assert body["name"] == "双十一扫码有礼" and body["brand_name"] == "acme brand"
    assert body["status"] == "running" and body["timezone"] == "Asia/Shanghai"
    assert [(p["key"], p["stock"], p["probability"], p["percent"]) for p in body["prizes"]] == [
        ("cash", 10, "1/4", "25%"),
        ("p50", None, "1/4", "25%"),
        ("mug", 10, "1/4", "25%"),
    ]
    assert body["prizes"][0]["value"] == "现金红包 ¥5.00"
    assert body["nothing"] == {"probability": "1/4", "percent": "25%"}
    assert any("抽奖：马克杯" in line and "共 10 份" in line for line in body["rules"])
    # The commitments are checkable by hand: the table hashes to the published hash.
    commitments = body["commitments"]
    assert commitments["table"] == '[["cash","1/4"],["p50","1/4"],["mug","1/4"]]'
    table_hash = hashlib.sha256(b"yima-draw-v1\x00table\x00" + commitments["table"].encode())
    assert commitments["table_hash"] == table_hash.hexdigest()
    with runtime.db.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and commitments["seed_hash"] == campaign.seed_hash
    assert body["revealed"] is None
    early = anyone.get(f"/api/v1/campaigns/acme/{campaign_id}/draws")
    assert early.status_code == 409 and early.get_json()["code"] == "seed_not_revealed"
    english = anyone.get(f"/api/v1/campaigns/acme/{campaign_id}?lang=en").get_json()
    assert english["prizes"][0]["value"] == "cash red envelope ¥5.00"
    assert english["rules"][0].startswith("Runs from ")

    # Two members draw; the campaign ends and reveals its seed.
    for number, serials in ((ALICE, (1, 2, 3)), (BOB, (4, 5))):
        member = Phone(app, sms, number)
        for s in serials:
            member.scan(code_url(runtime, brand, s))
    with runtime.db.unit_of_work() as session:
        end_campaign(session, runtime, tenant_id=brand.tenant_id, campaign_id=campaign_id)
    ended = anyone.get(f"/api/v1/campaigns/acme/{campaign_id}").get_json()
    assert ended["status"] == "ended"
    revealed = ended["revealed"]
    seed = bytes.fromhex(revealed["seed"])
    seed_hash = hashlib.sha256(b"yima-draw-v1\x00seed\x00" + seed).hexdigest()
    assert seed_hash == ended["commitments"]["seed_hash"]
    assert revealed["seed_matches"] is True and revealed["table_matches"] is True
    assert revealed["draws"] == 5 and sum(revealed["outcomes"].values()) == 5
    assert revealed["verify_command"] == f"yima draws verify {campaign_id}"
    assert revealed["draws_url"] == f"/api/v1/campaigns/acme/{campaign_id}/draws"

    # Every draw recomputes from the seed and its recorded inputs.
    draws = anyone.get(revealed["draws_url"] + "?limit=3").get_json()
    rest = anyone.get(revealed["draws_url"] + f"?after={draws['next_after']}").get_json()
    records = draws["items"] + rest["items"]
    assert len(records) == 5 and rest["next_after"] is None
    odds = campaigns.exact_odds([(str(p["key"]), p["probability"]) for p in PRIZES])
    assert draws["slots"] == odds.slots == 4
    for record in records:
        assert campaigns.drawn_slot(seed, record["inputs"], odds.slots) == record["slot"]
        assert odds.prize_of(record["slot"]) == record["drawn_key"]
        assert record["outcome"] == ("nothing" if record["drawn_key"] is None else "won")
    assert sorted(r["inputs"]["serial"] for r in records) == [1, 2, 3, 4, 5]


def test_drafts_and_other_brands_campaigns_are_not_public(
    runtime: Runtime, app: Flask, brand: Brand, campaign_id: int
) -> None:
    with runtime.db.unit_of_work() as session:
        draft = create_campaign(
            session,
            tenant_id=brand.tenant_id,
            raw=config(priority=5, **window()),
            actor="t",
        )
        make_brand(session, runtime, slug="rival", quantity=1)
    anyone = app.test_client()
    for path in (
        f"acme/{draft.id}",
        f"rival/{campaign_id}",
        f"nobody/{campaign_id}",
        f"acme%00/{campaign_id}",
        f"%3Cscript%3E/{campaign_id}",
    ):
        answer = anyone.get(f"/api/v1/campaigns/{path}")
        assert answer.status_code == 404 and answer.get_json()["code"] == "campaign_not_found"
    page = anyone.get(f"/campaigns/acme/{draft.id}")
    assert page.status_code == 404 and "未找到该活动" in page.get_data(as_text=True)


def test_the_rules_page_is_server_rendered_with_fractions_and_percents(
    runtime: Runtime, app: Flask, brand: Brand, campaign_id: int
) -> None:
    anyone = app.test_client()
    page = anyone.get(f"/campaigns/acme/{campaign_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html and "<script" not in html
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert "马克杯" in html and "1/4" in html and "25%" in html and "公平性承诺" in html
    assert "活动结束后将在此公布种子" in html
    english = anyone.get(f"/campaigns/acme/{campaign_id}?lang=en").get_data(as_text=True)
    assert "Prizes and odds" in english and "Fairness commitments" in english


def test_the_scan_api_documents_the_draw_and_the_prize_endpoints(
    runtime: Runtime, app: Flask
) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert "draw" in spec["components"]["schemas"]["ScanOut"]["properties"]
    for path in (
        "/api/v1/me/prizes",
        "/api/v1/me/prizes/{reward_id}",
        "/api/v1/me/prizes/{reward_id}/claim",
        "/api/v1/campaigns/{brand}/{campaign_id}",
        "/api/v1/campaigns/{brand}/{campaign_id}/draws",
    ):
        assert path in paths, sorted(paths)
    assert paths["/api/v1/me/prizes"]["get"]["security"] == [{"memberToken": []}]
    assert paths["/api/v1/campaigns/{brand}/{campaign_id}"]["get"]["security"] == []


def test_held_and_denied_scans_say_so_and_a_held_prize_waits(
    runtime: Runtime, app: Flask, sms: RecordingSmsSender, brand: Brand
) -> None:
    # The second rewarded scan within the hour is held for review, the third denied.
    strict = {
        "enabled": True,
        "member_velocity": {"max": 1, "window_seconds": 3600, "action": "hold"},
        "new_member_burst": {"member_age_seconds": 3600, "max": 2, "action": "deny"},
    }
    mug = {**PRIZES[2], "probability": "1"}
    with runtime.db.unit_of_work() as session:
        live_campaign(
            session,
            runtime,
            brand,
            draw={"prizes": [mug], "fallback": None},
            fraud=strict,
            **window(),
        )
    alice = Phone(app, sms, ALICE)
    first = alice.scan(code_url(runtime, brand, 1))
    assert first["points"]["status"] == "earned"
    assert first["draw"]["status"] == "claim_wanted"

    held = alice.scan(code_url(runtime, brand, 2))
    assert held["points"]["status"] == "held" and held["points"]["text"] == "积分审核中"
    assert held["draw"]["text"] == "恭喜获得 马克杯"
    assert held["draw"]["status"] == "held" and held["draw"]["status_text"] == "奖品审核中"
    assert held["draw"]["claim_url"] is None
    waiting = alice.call("GET", f"/me/prizes/{held['draw']['reward_id']}").get_json()
    assert waiting["status"] == "held" and waiting["claim_needed"] is False
    claim = f"/me/prizes/{held['draw']['reward_id']}/claim"
    details = {"name": "张三", "phone": "13900001111", "address": "杭州市西湖区龙井路 1 号"}
    assert alice.call("POST", claim, json=details).status_code == 409

    # The scan page says the same in words (the member's token works on the page too).
    denied_path = urlsplit(code_url(runtime, brand, 3)).path
    page = alice.http.get(denied_path, headers={"Authorization": f"Bearer {alice.token}"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "此次扫码不符合活动规则" in html
    assert 'id="draw"' not in html  # a denied scan draws nothing
    en = alice.scan(code_url(runtime, brand, 2), headers={"Accept-Language": "en"})
    assert en["points"]["text"] == "This code's points are already yours"
    assert en["draw"]["status_text"] == "Your prize is being reviewed"
