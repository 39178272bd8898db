"""The member pages in a real browser (headless Chromium driven by Playwright), on a phone-sized
screen: sign in with an SMS code, see points and when they expire, check in, redeem a reward
(a double tap places one order), see the order and its coupon, sign out; then the English pages
and the erasure of one's own data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core import services as core_services
from core.db import utcnow
from core.runtime import Runtime
from members.ledger import Expiry, earn
from members.models import CatalogueItem, Member, Order, Tier
from members.otp import RecordingSmsSender, use_sms_sender
from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium

TZ = "Asia/Urumqi"  # UTC+6: neither the machine's UTC nor the default Asia/Shanghai
PHONE = "13812345678"


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    return sender


@pytest.fixture
def acme(runtime: Runtime) -> dict[str, int]:
    """The brand, a tier above the entry level, and four rewards."""
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        tenant.timezone = TZ
        session.flush()
        session.add(Tier(tenant_id=tenant.id, rank=1, name="金卡", min_growth=1000, benefits={}))

        def item(**values: object) -> int:
            row = CatalogueItem(tenant_id=tenant.id, description="", min_tier_rank=0, **values)
            session.add(row)
            session.flush()
            return row.id

        ids = {
            "tenant": tenant.id,
            "coupon": item(
                kind="coupon",
                name="满50减5元券",
                points_cost=50,
                stock=10,
                face_value_fen=500,
                coupon_valid_days=30,
            ),
            "goods": item(kind="goods", name="Tea cup", points_cost=100, stock=3),
            "dear": item(kind="coupon", name="Big coupon", points_cost=5000, face_value_fen=9900),
            "gone": item(kind="goods", name="Tea tin", points_cost=10, stock=0),
        }
    return ids


def _text(page: object, selector: str, contains: str) -> str:
    """Wait until ``selector`` shows ``contains``; its text."""
    page.locator(selector, has_text=contains).wait_for(timeout=15_000)  # type: ignore[attr-defined]
    return str(page.inner_text(selector))  # type: ignore[attr-defined]


def test_a_member_signs_in_earns_checks_in_and_redeems(
    runtime: Runtime,
    server: str,
    browser: object,
    sms: RecordingSmsSender,
    acme: dict[str, int],
    tmp_path: Path,
) -> None:
    phone_ctx = browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN",
        viewport={"width": 360, "height": 740},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = phone_ctx.new_page()
    problems: list[str] = []
    page.on(
        "console",  # an API's 4xx answer is logged too: only script errors count
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    # Not signed in: my account sends me to sign in, and back afterwards.
    page.goto(server + "/m/points?brand=acme")
    assert "/m/sign-in?" in page.url and "%2Fm%2Fpoints" in page.url
    page.goto(server + "/m/sign-in?brand=acme")
    assert page.inner_text("h1") == "会员登录" and "Acme Tea" in page.inner_text("main")

    # A malformed number is refused in Chinese, then a code is sent and the button counts down.
    page.fill("#phone", "12345")
    page.click("#send-code")
    assert "请输入正确的手机号" in _text(page, "#sign-in-message", "手机号")
    page.fill("#phone", PHONE)
    page.click("#send-code")
    _text(page, "#sign-in-message", "验证码已发送，5 分钟内有效")
    assert page.is_disabled("#send-code") and "秒后重新获取" in page.inner_text("#send-code")
    assert len(sms.sent) == 1

    # A wrong code says so; the right one signs in and lands on my account.
    code = sms.last_code(PHONE)
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#sign-in")
    _text(page, "#sign-in-message", "验证码错误")
    page.fill("#code", code)
    page.click("#sign-in")
    page.wait_for_url(server + "/m/", timeout=15_000)
    assert _text(page, "#points-active", "0") == "0"
    assert _text(page, "#phone", "138****5678") == "138****5678"
    assert page.inner_text("#points-expiry") == "暂无即将过期的积分"
    assert "距离「金卡」还需" in _text(page, "#tier-next", "金卡")
    assert page.is_visible("#tier-progress")
    page.screenshot(path=str(tmp_path / "account.png"))

    # The brand gives 200 points expiring in 30 days; a reload shows them and their expiry.
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        member_id = session.scalar(select(Member.id).where(Member.tenant_id == acme["tenant"]))
        assert member_id is not None
        earn(
            session,
            tenant_id=acme["tenant"],
            member_id=member_id,
            points=200,
            business_key="test:gift",
            expiry=Expiry("days", 30),
            timezone=TZ,
            reason="scan",
            now=now,
        )
        earn(  # a scan's points wait a day for the fraud checks
            session,
            tenant_id=acme["tenant"],
            member_id=member_id,
            points=30,
            business_key="test:scan",
            expiry=Expiry("days", 365),
            timezone=TZ,
            pending_for=dt.timedelta(days=1),
            reason="scan",
            now=now,
        )
    last_day = (now + dt.timedelta(days=30) - dt.timedelta(milliseconds=1)).astimezone(ZoneInfo(TZ))
    page.reload()
    assert _text(page, "#points-active", "200") == "200"
    assert page.inner_text("#points-expiry") == f"200 积分将于 {last_day:%Y-%m-%d} 过期"
    assert page.inner_text("#points-pending") == "待生效 30"

    # Check in: a point and a one-day streak; a second press the same day says so.
    page.click("#check-in-button")
    assert "签到成功，获得 1 积分" in _text(page, "#check-in-message", "签到成功")
    assert page.inner_text("#streak") == "已连续签到 1 天"
    _text(page, "#points-active", "201")
    page.click("#check-in-button")
    _text(page, "#check-in-message", "今日已签到")
    page.reload()
    _text(page, "#check-in-message", "今日已签到")

    # The invitation link names the brand, and copies.
    link = page.input_value("#referral-link")
    assert "/m/invite/" in link and "brand=acme" in link
    page.click("#copy-link")
    _text(page, "#copy-message", "已复制")

    # History: newest first, in the brand's local time.
    page.click("#history-link")
    page.wait_for_url(server + "/m/points")
    _text(page, "#history", "每日签到")
    rows = page.locator("#history li")
    assert rows.count() == 3
    assert "+1" in rows.nth(0).inner_text() and "每日签到" in rows.nth(0).inner_text()
    assert "+30" in rows.nth(1).inner_text()
    gift = rows.nth(2).inner_text()
    assert "获得 · 扫码积分" in gift and "+200" in gift
    assert now.astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M") in gift

    # The catalogue: sold out is closed; the coupon is redeemed once though tapped twice.
    page.goto(server + "/m/")
    page.click("#catalogue-link")
    page.wait_for_url(server + "/m/catalogue?brand=acme")
    _text(page, "#my-points", "201")
    gone = f"#item-{acme['gone']}"
    assert page.is_disabled(f"{gone} button.redeem")
    assert "已兑完" in page.inner_text(gone)
    coupon = f"#item-{acme['coupon']}"
    assert "50 积分" in page.inner_text(coupon) and "面值 5 元" in page.inner_text(coupon)
    page.click(f"{coupon} button.redeem")
    page.dblclick(f"{coupon} button.confirm")
    _text(page, f"{coupon} .msg", "兑换成功")
    assert page.get_attribute(f"{coupon} .msg a", "href") == "/m/orders"
    _text(page, "#my-points", "151")
    page.screenshot(path=str(tmp_path / "catalogue.png"))

    # Goods need an address; too dear says so in words.
    goods = f"#item-{acme['goods']}"
    page.click(f"{goods} button.redeem")
    page.click(f"{goods} button.confirm")
    _text(page, f"{goods} .msg", "请填写收货人、联系电话和收货地址")
    page.fill(f"#redeem-{acme['goods']}-name", "张三")
    page.fill(f"#redeem-{acme['goods']}-phone", "13900001111")
    page.fill(f"#redeem-{acme['goods']}-address", "杭州市西湖区龙井路 1 号")

    # The order is placed but its answer is lost on the way; the retry sends the same key.
    keys: list[str] = []

    def lose_the_answer(route: Any) -> None:
        keys.append(json.loads(route.request.post_data)["idempotency_key"])
        if len(keys) == 1:
            route.fetch()
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/me/orders", lose_the_answer)
    page.click(f"{goods} button.confirm")
    _text(page, f"{goods} .msg", "网络不稳定")
    page.click(f"{goods} button.confirm")
    _text(page, f"{goods} .msg", "兑换成功")
    page.unroute("**/api/v1/me/orders")
    assert len(keys) == 2 and keys[0] == keys[1]
    _text(page, "#my-points", "51")
    assert "剩余 2 件" in _text(page, f"{goods} .stock", "2")
    dear = f"#item-{acme['dear']}"
    page.click(f"{dear} button.redeem")
    page.click(f"{dear} button.confirm")
    _text(page, f"{dear} .msg", "积分不足")
    with runtime.db.unit_of_work() as session:
        placed = session.scalars(select(Order.item_id).where(Order.member_id == member_id))
        assert sorted(placed) == sorted([acme["coupon"], acme["goods"]])

    # My orders and the coupon, with its code and validity.
    page.goto(server + "/m/orders")
    _text(page, "#orders", "满50减5元券")
    assert page.locator("#orders li").count() == 2
    assert "已下单" in page.inner_text("#orders")
    coupons = _text(page, "#coupons", "未使用")
    assert "券码" in coupons and "有效期" in coupons
    assert page.locator("#coupons li").count() == 1
    page.screenshot(path=str(tmp_path / "orders.png"))

    # Sign out: back to sign-in, and my account is closed to this browser.
    page.goto(server + "/m/")
    page.click("#sign-out")
    page.wait_for_url(server + "/m/sign-in?brand=acme")
    page.goto(server + "/m/")
    assert page.url.startswith(server + "/m/sign-in?brand=acme&next=")
    assert page.inner_text("h1") == "会员登录"
    assert problems == []
    phone_ctx.close()


def test_an_english_member_signs_in_and_erases_their_data(
    runtime: Runtime,
    server: str,
    browser: object,
    sms: RecordingSmsSender,
    acme: dict[str, int],
    tmp_path: Path,
) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN", viewport={"width": 360, "height": 740}
    )
    page = context.new_page()
    page.goto(server + "/m/invite/NOPE42?brand=acme&lang=en")
    assert page.inner_text("h1") == "An invitation"
    page.click("#join")
    assert page.inner_text("h1") == "Member sign-in"
    assert page.inner_text("#invited") == "You are joining on a friend's invitation."
    assert page.inner_text("#send-code") == "Send code"
    page.fill("#phone", "139 1234 5678")
    page.click("#send-code")
    _text(page, "#sign-in-message", "Code sent. It is valid for 5 minutes.")
    assert page.inner_text("#send-code").startswith("Resend in ")

    # Asking again within the minute (the page reloaded, its countdown lost) is a wait.
    page.reload()
    page.fill("#phone", "13912345678")
    page.click("#send-code")
    assert "Please wait" in _text(page, "#sign-in-message", "Too many tries")
    assert page.is_disabled("#send-code")
    page.screenshot(path=str(tmp_path / "sign-in-en.png"))
    page.fill("#code", sms.last_code("13912345678"))
    page.click("#sign-in")
    page.wait_for_url(server + "/m/", timeout=15_000)
    assert _text(page, "#points-active", "0") == "0"
    assert "Available points" in page.inner_text("#summary")
    assert page.inner_text("#points-expiry") == "No points expiring soon"
    page.click("#check-in-button")
    _text(page, "#check-in-message", "Checked in: +1")
    assert page.inner_text("#streak") == "1-day streak"
    page.click("#check-in-button")
    _text(page, "#check-in-message", "Already checked in today")
    assert _text(page, "#points-expiry", "Expiring").endswith(": 1")

    page.goto(server + "/m/catalogue?brand=acme")
    assert "Rewards" in page.inner_text("h1")
    _text(page, f"#item-{acme['coupon']}", "50 points")

    # Delete my data: a confirmation first, then the account is gone.
    page.goto(server + "/m/")
    page.click("#erase")
    assert "deleted for good" in page.inner_text("#erase-confirm")
    page.click("#erase-cancel")
    assert page.is_hidden("#erase-confirm")
    page.click("#erase")
    page.screenshot(path=str(tmp_path / "account-en.png"), full_page=True)
    page.click("#erase-yes")
    page.wait_for_url("**/m/sign-in?**erased=1**", timeout=15_000)
    assert page.inner_text("#erased") == "Your data has been deleted."
    with runtime.db.unit_of_work() as session:
        erased = session.scalar(
            select(func.count()).select_from(Member).where(Member.status == "erased")
        )
        assert erased == 1
    page.goto(server + "/m/")
    assert "/m/sign-in?" in page.url
    context.close()
