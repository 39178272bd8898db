"""The member pages (``/m/...``) as a phone sees them before any script runs: the language, the
headers, who is sent to sign in, and where sign-in may send them back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

import members
import scan_service
from core import services as core_services
from core.runtime import Runtime
from members.models import ENTRY_KINDS, ORDER_STATUSES
from members.sessions import open_session
from scan_service.member_pages import SCRIPT, safe_next
from scan_service.member_texts import EN, ZH


def member_app() -> Flask:
    return scan_service.create_app()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        tenant.timezone = "Asia/Urumqi"
        core_services.create_tenant(session, slug="other", name="Other Brand")
    with member_app().test_client() as test_client:
        yield test_client


def sign_in_as_member(client: FlaskClient, runtime: Runtime, slug: str = "acme") -> None:
    with runtime.db.unit_of_work() as session:
        tenant_id = core_services.get_tenant_by_slug_or_raise(session, slug).id
        member = members.create_member(session, tenant_id=tenant_id)
        token = open_session(session, tenant_id=tenant_id, member_id=member.id)
    client.set_cookie(members.MEMBER_COOKIE, token)


def test_sign_in_page_is_chinese_by_default_with_the_brand(client: FlaskClient) -> None:
    page = client.get("/m/sign-in?brand=acme")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in html
    assert "会员登录" in html and "获取验证码" in html and "Acme Tea" in html
    assert 'data-brand="acme"' in html and 'data-tz="Asia/Urumqi"' in html
    assert 'data-next="/m/"' in html


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("query", {"query_string": {"brand": "acme", "lang": "en"}}),
        ("header", {"query_string": {"brand": "acme"}, "headers": {"Accept-Language": "en-US"}}),
    ],
)
def test_sign_in_page_in_english(client: FlaskClient, how: str, kwargs: dict[str, object]) -> None:
    page = client.get("/m/sign-in", **kwargs)
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Send code" in html and "Member sign-in" in html and "获取验证码" not in html
    if how == "query":  # the choice is remembered for the next pages
        assert "yima_lang=en" in page.headers["Set-Cookie"]
        assert "Member sign-in" in client.get("/m/sign-in?brand=acme").get_data(as_text=True)


def test_the_language_switch_keeps_the_page_arguments(client: FlaskClient) -> None:
    html = client.get("/m/sign-in?brand=acme&next=/m/points").get_data(as_text=True)
    assert 'href="/m/sign-in?brand=acme&amp;next=%2Fm%2Fpoints&amp;lang=en"' in html


def test_pages_send_strict_headers_and_load_only_their_own_script(client: FlaskClient) -> None:
    page = client.get("/m/sign-in?brand=acme")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "<script nonce" not in html
    src = html.split('<script src="', 1)[1].split('"', 1)[0]
    assert src.startswith("/static/member.js?v=")
    with client.get(src.replace("&amp;", "&")) as script:
        assert script.status_code == 200
        assert "javascript" in script.headers["Content-Type"]
        assert "max-age=31536000" in script.headers["Cache-Control"]
        assert "/members/sign-in" in script.get_data(as_text=True)


def test_an_unknown_brand_says_so(client: FlaskClient) -> None:
    page = client.get("/m/sign-in?brand=nobody")
    assert page.status_code == 404
    assert "未找到该品牌" in page.get_data(as_text=True)
    assert client.get("/m/sign-in").status_code == 404
    assert client.get("/m/catalogue").status_code == 404


@pytest.mark.parametrize("path", ["/m/", "/m/points", "/m/orders"])
def test_a_stranger_is_sent_to_sign_in_and_back(client: FlaskClient, path: str) -> None:
    page = client.get(path + "?brand=acme")
    assert page.status_code == 303
    assert page.headers["Cache-Control"] == "no-store"
    target = urlsplit(page.headers["Location"])
    assert target.path == "/m/sign-in"
    args = parse_qs(target.query)
    assert args["brand"] == ["acme"]
    assert args["next"] == [path + "?brand=acme"]


def test_a_signed_out_visitor_signs_in_at_the_brand_last_used(client: FlaskClient) -> None:
    client.get("/m/sign-in?brand=acme")
    page = client.get("/m/points")
    assert page.status_code == 303
    assert parse_qs(urlsplit(page.headers["Location"]).query) == {
        "brand": ["acme"],
        "next": ["/m/points"],
    }


def test_the_member_sees_their_pages(client: FlaskClient, runtime: Runtime) -> None:
    sign_in_as_member(client, runtime)
    for path, words in [
        ("/m/", ("我的会员", "签到", "删除我的数据", "积分明细")),
        ("/m/points", ("积分明细", "加载更多")),
        ("/m/orders", ("我的兑换", "我的优惠券")),
        ("/m/catalogue", ("积分商城",)),
    ]:
        page = client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == 200, path
        assert all(word in html for word in words), path
        assert 'data-brand="acme"' in html and 'data-tz="Asia/Urumqi"' in html
    # Signed in already: the sign-in page goes straight on.
    page = client.get("/m/sign-in?brand=acme&next=/m/points")
    assert page.status_code == 303 and page.headers["Location"] == "/m/points"


def test_a_member_of_another_brand_signs_in_again(client: FlaskClient, runtime: Runtime) -> None:
    sign_in_as_member(client, runtime, "other")
    page = client.get("/m/?brand=acme")
    assert page.status_code == 303
    assert parse_qs(urlsplit(page.headers["Location"]).query)["brand"] == ["acme"]
    catalogue = client.get("/m/catalogue?brand=acme").get_data(as_text=True)
    assert 'data-signed-in=""' in catalogue and "登录后兑换" in catalogue


def test_the_catalogue_is_open_to_anyone_and_offers_sign_in(client: FlaskClient) -> None:
    page = client.get("/m/catalogue?brand=acme&lang=en")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Rewards" in html and "Sign in to redeem" in html
    assert 'data-signed-in=""' in html


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "m/points",
        "",
    ],
)
def test_sign_in_never_sends_the_member_to_another_site(
    client: FlaskClient, runtime: Runtime, next_path: str
) -> None:
    assert safe_next(next_path) == "/m/"
    page = client.get("/m/sign-in", query_string={"brand": "acme", "next": next_path})
    assert 'data-next="/m/"' in page.get_data(as_text=True)
    sign_in_as_member(client, runtime)
    page = client.get("/m/sign-in", query_string={"brand": "acme", "next": next_path})
    assert page.headers["Location"] == "/m/"


def test_sign_in_keeps_a_path_of_this_site() -> None:
    assert safe_next("/c/AbC123?x=1") == "/c/AbC123?x=1"
    assert safe_next("/m/catalogue?brand=acme") == "/m/catalogue?brand=acme"


def test_an_invitation_leads_to_sign_in_with_the_code(client: FlaskClient) -> None:
    page = client.get("/m/invite/K7Q2ZP?brand=acme")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "好友邀请" in html and "Acme Tea" in html
    join = html.split('id="join" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    args = parse_qs(urlsplit(join).query)
    assert args["ref"] == ["K7Q2ZP"] and args["brand"] == ["acme"]
    sign_in = client.get(join).get_data(as_text=True)
    assert 'data-ref="K7Q2ZP"' in sign_in and "好友邀请" in sign_in
    assert client.get("/m/invite/K7Q2ZP").status_code == 404  # which brand?
    assert client.get("/m/invite/%3Cscript%3E?brand=acme").status_code == 404


def test_every_word_the_pages_print_exists_in_both_languages() -> None:
    assert ZH.keys() == EN.keys()
    # ``t.copy`` in a template would print a dict method, not the word.
    assert not set(ZH) & set(dir(dict))
    script = SCRIPT.read_text(encoding="utf-8")
    used = set(re.findall(r'\bt\("([a-z_]+)"\s*[,)]', script))
    used |= set(re.findall(r':\s*"((?:err|sold|already)_[a-z_]+)"', script))
    used |= {f"kind_{kind}" for kind in ENTRY_KINDS}
    used |= {f"order_{status}" for status in ORDER_STATUSES}
    used |= {f"coupon_{status}" for status in ("unused", "used", "expired", "void")}
    assert used - set(ZH) == set()
