"""The console's sign-in and shell in a real browser (headless Chromium driven by Playwright),
served under /console as ``yima serve`` does: an admin signs in, sees the overview (its
script asks the API who is signed in, with the session cookie), turns on two-step
verification by scanning nothing but reading the key, signs out and in again with a code,
adds a colleague on the users page; a factory operator is refused the users page."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from core import services as core_services
from core.runtime import Runtime
from tests.e2e.browser import needs_chromium

pytestmark = needs_chromium

PASSWORD = "correct horse battery"


@pytest.fixture
def acme(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        core_services.create_user(
            session, tenant_id=tenant.id, email="boss@acme.cn", role="admin", password=PASSWORD
        )
        core_services.create_user(
            session,
            tenant_id=tenant.id,
            email="line@acme.cn",
            role="factory_operator",
            password=PASSWORD,
        )


def _code(secret: str, at: float) -> str:
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return TOTP(raw, 6, SHA1(), 30).generate(at).decode()


def _watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",  # a refused API call is logged too: only script errors count
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _sign_in(page: Any, base: str, email: str) -> None:
    page.goto(base + "/sign-in")
    page.fill("#brand", "acme")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def test_an_admin_signs_in_with_two_steps_and_manages_users(
    console_server: str, browser: Any, acme: None
) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    problems = _watch(page)
    base = console_server

    # Not signed in: the users page sends me to sign in, and back afterwards.
    page.goto(base + "/users")
    assert "/console/sign-in?next=" in page.url and page.inner_text("h1") == "登录控制台"
    page.fill("#brand", "acme")
    page.fill("#email", "boss@acme.cn")
    page.fill("#password", "not my password")
    page.click("#sign-in")
    assert page.inner_text("#sign-in-error") == "品牌标识、邮箱或密码不正确。"
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(base + "/users")
    assert page.inner_text("h1") == "用户与角色"

    # The overview: who, which brand, which role; its script reads /api/v1/me with my session.
    page.click("#nav-overview")
    page.wait_for_url(base + "/")
    assert page.inner_text("#overview-user") == "boss@acme.cn"
    assert page.inner_text("#overview-tenant") == "Acme Tea (acme)"
    assert page.inner_text("#overview-role") == "管理员"
    page.locator("#api-me", has_text="boss@acme.cn").wait_for(timeout=15_000)
    assert "admin" in page.inner_text("#api-me")
    nav = page.locator("nav.side a").all_inner_texts()
    shell = ["概览", "用户与角色", "操作日志", "我的账号"]
    assert [item for item in nav if item in shell] == shell

    # Two-step verification: start, read the key, confirm with the app's code.
    page.click("#nav-account")
    page.click("#totp-start")
    assert page.is_visible("#totp-qr")
    assert page.evaluate("document.getElementById('totp-qr').naturalWidth") > 0
    secret = page.inner_text("#totp-secret")
    page.fill("#totp-code", "000000" if _code(secret, time.time()) != "000000" else "111111")
    page.click("#totp-enable")
    assert "不正确" in page.inner_text("#totp-code-error")
    page.fill("#totp-code", _code(secret, time.time()))
    page.click("#totp-enable")
    assert page.inner_text("#account-message") == "两步验证已开启。"

    # Signing out and in again asks for a code after the password.
    page.click("#sign-out")
    assert page.inner_text("#signed-out") == "您已退出登录。"
    _sign_in(page, base, "boss@acme.cn")
    page.wait_for_url(base + "/sign-in/code")
    page.fill("#code", _code(secret, time.time() + 30))  # the next code: the last one is spent
    page.click("#verify")
    page.wait_for_url(base + "/")
    assert page.inner_text("#overview-user") == "boss@acme.cn"

    # Users & roles: add a colleague; the generated password is shown once.
    page.click("#nav-users")
    page.fill("#new-email", "analyst@acme.cn")
    page.select_option("#new-role", "analyst")
    assert page.is_hidden("#new-distributor")  # only a distributor needs one
    page.click("#create-user")
    assert "已添加用户 analyst@acme.cn" in page.inner_text("#users-message")
    assert "临时密码" in page.inner_text("#users-secret")
    assert "数据分析师" in page.inner_text("#users")

    # The page's script calls the API with the session, and must send the CSRF token.
    made = page.evaluate(
        "yima.api('POST', '/users', {email: 'cs@acme.cn', role: 'customer_service'})"
        ".then(a => a.status)"
    )
    assert made == 201
    forged = page.evaluate(
        "fetch(document.body.dataset.api + '/users', {method: 'POST', credentials: 'same-origin',"
        " headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({email: 'x@acme.cn', role: 'admin'})}).then(r => r.status)"
    )
    assert forged == 403

    # Disabling asks first; cancelling keeps the user.
    row = page.locator("tr[data-email='cs@acme.cn']")
    page.reload()
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.locator("button.danger").click()
    assert row.locator(".status").inner_text() == "正常"
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.danger").click()
    assert "已停用 cs@acme.cn" in page.inner_text("#users-message")
    assert row.locator(".status").inner_text() == "已停用"

    # The audit log has it all.
    page.click("#nav-audit")
    actions = page.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-action'))"
    )
    assert actions[:3] == ["user.disable", "user.create", "user.create"]
    assert {"user.totp_enable", "user.sign_in", "user.sign_out"} <= set(actions)
    assert problems == []
    context.close()


def test_a_factory_operator_is_refused_the_users_page(
    console_server: str, browser: Any, acme: None
) -> None:
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    problems = _watch(page)
    _sign_in(page, console_server, "line@acme.cn")
    page.wait_for_url(console_server + "/")
    assert page.inner_text("#overview-role") == "Factory operator"
    nav = page.locator("nav.side a").all_inner_texts()
    assert "Overview" in nav and "My account" in nav
    assert "Users & roles" not in nav and "Audit log" not in nav
    answer = page.goto(console_server + "/users")
    assert answer is not None and answer.status == 403
    assert page.inner_text("#error-title") == "Not allowed"
    assert "Factory operator" in page.inner_text("#error-message")
    api = page.evaluate(
        "fetch(document.body.dataset.api + '/users', {credentials: 'same-origin'})"
        ".then(r => r.status)"
    )
    assert api == 403
    assert problems == []
    context.close()
