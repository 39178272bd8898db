"""The console's pages through HTTP: sign-in (validation, lock-out, the TOTP step), the shell,
users & roles, my account, the audit log, CSRF, expired sessions and the security headers."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from flask import Flask
from sqlalchemy import select, update

from core import services as core_services
from core.auth import SESSION_COOKIE
from core.models import AuditEntry, ConsoleSession, User
from core.runtime import Runtime
from tests.console.conftest import PASSWORD, Browser, Staff, form_token, sign_in_through_form


def _texts(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"no #{element_id} on the page"
    return found.group(1).strip()


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


SHELL_PAGES = ("overview", "users", "audit", "account")


def _nav(html: str) -> list[str]:
    """The shell's own pages in the side navigation, in order (sections add their own)."""
    return [name for name in re.findall(r'id="nav-([a-z_]+)"', html) if name in SHELL_PAGES]


def test_signing_in_lands_on_the_overview_with_who_where_and_what_role(
    app: Flask, acme: Staff
) -> None:
    client = app.test_client()
    first = client.get("/users")
    assert first.status_code == 303 and _query(first.headers["Location"]) == {"next": ["/users"]}
    page = client.get("/sign-in")
    assert page.status_code == 200 and "登录控制台" in page.text
    assert 'lang="zh-CN"' in page.text
    answer = client.post(
        "/sign-in",
        data={
            "csrf_token": form_token(page.text),
            "brand": "acme",
            "email": "Admin@Acme.Example.com ",
            "password": PASSWORD,
            "next": "/users",
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/users"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=cs_")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here (see the TLS test)
    home = client.get("/")
    assert _texts(home.text, "overview-user").startswith("admin@acme.example.com")
    assert _texts(home.text, "overview-tenant") == "Acme Tea (acme)"
    assert _texts(home.text, "overview-role") == "管理员"
    assert _nav(home.text) == ["overview", "users", "audit", "account"]
    english = client.get("/?lang=en")
    assert _texts(english.text, "overview-role") == "Admin" and 'lang="en"' in english.text
    assert "yima_lang=en" in english.headers["Set-Cookie"]
    assert "Overview" in client.get("/").text  # the cookie keeps the language


def test_every_field_of_the_sign_in_form_is_checked_in_the_readers_language(
    app: Flask, acme: Staff
) -> None:
    client = app.test_client()
    token = form_token(client.get("/sign-in").text)
    bad = client.post(
        "/sign-in", data={"csrf_token": token, "brand": "A", "email": "nobody", "password": ""}
    )
    assert bad.status_code == 422
    assert _texts(bad.text, "brand-error").startswith("请输入品牌标识")
    assert _texts(bad.text, "email-error") == "请输入有效的邮箱地址。"
    assert _texts(bad.text, "password-error") == "请输入密码。"
    assert 'value="nobody"' in bad.text  # what was typed stays in the form
    english = client.post(
        "/sign-in?lang=en",
        data={"csrf_token": token, "brand": "acme", "email": "x@y", "password": "p"},
    )
    assert _texts(english.text, "email-error") == "Enter a valid e-mail address."
    # A form without its token (another site posting it) is refused, in the chosen language.
    forged = client.post(
        "/sign-in", data={"brand": "acme", "email": "admin@acme.example.com", "password": PASSWORD}
    )
    assert forged.status_code == 403 and "This page has expired" in forged.text
    assert SESSION_COOKIE not in forged.headers.get("Set-Cookie", "")


def test_wrong_passwords_lock_the_account_with_the_same_words_as_an_unknown_one(
    app: Flask, acme: Staff
) -> None:
    client = app.test_client()
    answers = [
        sign_in_through_form(
            client, brand="acme", email="admin@acme.example.com", password="wrong horse"
        )
        for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [401] * 4 + [429]  # type: ignore[attr-defined]
    assert _texts(answers[0].text, "sign-in-error") == "品牌标识、邮箱或密码不正确。"  # type: ignore[attr-defined]
    locked = answers[-1]
    assert "已暂时锁定，请于 15 分钟后再试" in _texts(locked.text, "sign-in-error")  # type: ignore[attr-defined]
    assert 890 <= int(locked.headers["Retry-After"]) <= 900  # type: ignore[attr-defined]
    right = sign_in_through_form(
        client, brand="acme", email="admin@acme.example.com", password=PASSWORD
    )
    assert right.status_code == 429  # type: ignore[attr-defined]
    unknown = app.test_client()
    ghosts = [
        sign_in_through_form(
            unknown, brand="acme", email="ghost@acme.example.com", password="x" * 9
        )
        for _ in range(5)
    ]
    assert [a.status_code for a in ghosts] == [401] * 4 + [429]  # type: ignore[attr-defined]
    assert _texts(ghosts[0].text, "sign-in-error") == _texts(answers[0].text, "sign-in-error")  # type: ignore[attr-defined]


def _code(secret: str, at: float) -> str:
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return TOTP(raw, 6, SHA1(), 30).generate(at).decode()


def test_two_step_enrolment_and_sign_in(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser], runtime: Runtime
) -> None:
    me = signed_in(acme.users["analyst"])
    account = me.client.get("/account")
    assert 'id="totp-start"' in account.text
    me.client.post("/account/totp/start", data={"csrf_token": me.csrf})
    pending = me.client.get("/account")
    secret = _texts(pending.text, "totp-secret")
    qr = re.search(
        r'id="totp-qr" class="qr" src="data:image/svg\+xml;base64,([^"]+)"', pending.text
    )
    assert qr and b"<svg" in base64.b64decode(qr.group(1))
    wrong = me.client.post("/account/totp/confirm", data={"csrf_token": me.csrf, "code": "12345"})
    assert wrong.status_code == 422 and _texts(wrong.text, "totp-code-error").startswith("请输入")
    now = dt.datetime.now(dt.UTC).timestamp()
    done = me.client.post(
        "/account/totp/confirm", data={"csrf_token": me.csrf, "code": _code(secret, now)}
    )
    assert done.status_code == 303
    shown = me.client.get(done.headers["Location"]).text
    assert _texts(shown, "account-message") == "两步验证已开启。" and 'id="totp-on"' in shown

    # Signing in now asks for a code after the password; the used code is refused.
    client = app.test_client()
    step = sign_in_through_form(
        client, brand="acme", email="analyst@acme.example.com", password=PASSWORD
    )
    assert step.headers["Location"].endswith("/sign-in/code")  # type: ignore[attr-defined]
    blocked = client.get("/")  # the password alone opens nothing but the code step
    assert blocked.status_code == 303 and blocked.headers["Location"].startswith("/sign-in/code")
    code_page = client.get("/sign-in/code")
    token = form_token(code_page.text)
    used = client.post("/sign-in/code", data={"csrf_token": token, "code": _code(secret, now)})
    assert used.status_code == 401 and "已使用" in _texts(used.text, "code-error")
    fresh = _code(secret, now + 30)
    ok = client.post("/sign-in/code", data={"csrf_token": token, "code": fresh})
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    assert _texts(client.get("/").text, "overview-user").startswith("analyst@")
    with runtime.db.unit_of_work() as session:
        actions = [e.action for e in core_services.list_audit(session, tenant_id=acme.tenant_id)]
    assert actions[0] == "user.sign_in" and "user.totp_enable" in actions


def test_users_page_creates_changes_resets_and_disables_with_an_audit_trail(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser], runtime: Runtime
) -> None:
    admin = signed_in(acme.users["admin"])
    page = admin.client.get("/users?lang=en")
    assert page.status_code == 200 and page.text.count('id="user-') == 5
    # Every field is checked, in the reader's language.
    bad = admin.client.post(
        "/users",
        data={"csrf_token": admin.csrf, "email": "not-mail", "role": "boss", "password": "short"},
    )
    assert bad.status_code == 422
    assert _texts(bad.text, "new-email-error") == "Enter a valid e-mail address."
    assert "8 to 256 characters" in _texts(bad.text, "new-password-error")
    no_distributor = admin.client.post(
        "/users",
        data={"csrf_token": admin.csrf, "email": "d@acme.example.com", "role": "distributor"},
    )
    assert "distributor role needs" in _texts(no_distributor.text, "new-distributor-error")
    taken = admin.client.post(
        "/users",
        data={"csrf_token": admin.csrf, "email": "analyst@acme.example.com", "role": "analyst"},
    )
    assert taken.status_code == 409 and "already a user" in _texts(taken.text, "new-email-error")
    # A new user with a generated password, shown once.
    made = admin.client.post(
        "/users",
        data={
            "csrf_token": admin.csrf,
            "email": "new@acme.example.com",
            "name": "新同事",
            "role": "factory_operator",
        },
    )
    assert made.status_code == 200
    secret = re.search(r'id="users-secret">[^\n]*\n(\S+)</pre>', made.text)
    assert secret, made.text
    newcomer = app.test_client()
    answer = sign_in_through_form(
        newcomer, brand="acme", email="new@acme.example.com", password=secret.group(1)
    )
    assert answer.status_code == 303  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        new_id = session.scalar(select(User.id).where(User.email == "new@acme.example.com"))
    # A new role signs the user out at once.
    changed = admin.client.post(
        f"/users/{new_id}/role",
        data={"csrf_token": admin.csrf, "role": "analyst"},
    )
    assert changed.status_code == 303
    shown = admin.client.get(changed.headers["Location"] + "&lang=en")
    assert "The role of new@acme.example.com was changed" in _texts(shown.text, "users-message")
    assert newcomer.get("/").status_code == 303  # signed out
    # A distributor user needs one of this brand's distributors.
    as_distributor = admin.client.post(
        f"/users/{new_id}/role",
        data={"csrf_token": admin.csrf, "role": "distributor", "distributor_id": "99999"},
    )
    assert as_distributor.status_code == 422
    assert (
        admin.client.post(
            f"/users/{new_id}/role",
            data={
                "csrf_token": admin.csrf,
                "role": "distributor",
                "distributor_id": str(acme.distributor_id),
            },
        ).status_code
        == 303
    )
    reset = admin.client.post(f"/users/{new_id}/password", data={"csrf_token": admin.csrf})
    assert reset.status_code == 200 and "Temporary password of new@" in reset.text
    disabled = admin.client.post(f"/users/{new_id}/disable", data={"csrf_token": admin.csrf})
    assert disabled.status_code == 303
    shown = admin.client.get(disabled.headers["Location"] + "&lang=zh")
    assert _texts(shown.text, "users-message") == "已停用 new@acme.example.com。"
    # The last admin cannot demote itself; nobody disables itself (no button either).
    last = admin.client.post(
        f"/users/{acme.users['admin']}/role", data={"csrf_token": admin.csrf, "role": "analyst"}
    )
    assert last.status_code == 409 and "至少需要保留一位" in _texts(last.text, "users-error")
    with runtime.db.unit_of_work() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.target_id == str(new_id)).order_by(AuditEntry.id)
        ).all()
        assert [r.action for r in rows] == [
            "user.create",
            "user.sign_in",
            "user.role_change",
            "user.role_change",
            "user.password_reset",
            "user.disable",
        ]
        assert {r.actor for r in rows if r.action != "user.sign_in"} == {
            f"user:{acme.users['admin']}:admin@acme.example.com"
        }
        assert rows[3].detail["to"] == {
            "role": "distributor",
            "distributor_id": acme.distributor_id,
        }
        assert all(secret.group(1) not in str(r.detail) for r in rows)


def test_my_account_changes_the_password_and_signs_out_other_devices(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    laptop = signed_in(acme.users["analyst"])
    phone = signed_in(acme.users["analyst"])
    wrong = laptop.client.post(
        "/account/password",
        data={
            "csrf_token": laptop.csrf,
            "current_password": "nope nope",
            "new_password": "a brand new one",
            "confirm_password": "a brand new one",
        },
    )
    assert (
        wrong.status_code == 422
        and _texts(wrong.text, "current-password-error") == "当前密码不正确。"
    )
    mismatch = laptop.client.post(
        "/account/password",
        data={
            "csrf_token": laptop.csrf,
            "current_password": PASSWORD,
            "new_password": "a brand new one",
            "confirm_password": "another one",
        },
    )
    assert _texts(mismatch.text, "confirm-password-error") == "两次输入的新密码不一致。"
    done = laptop.client.post(
        "/account/password",
        data={
            "csrf_token": laptop.csrf,
            "current_password": PASSWORD,
            "new_password": "a brand new one",
            "confirm_password": "a brand new one",
        },
    )
    assert done.status_code == 303 and SESSION_COOKIE in done.headers["Set-Cookie"]
    assert "密码已修改" in laptop.client.get(done.headers["Location"]).text  # this one goes on
    gone = phone.client.get("/account")
    assert gone.status_code == 303 and "ended=1" in gone.headers["Location"]
    assert phone.client.get(gone.headers["Location"]).text.count("登录已失效") == 1


def test_the_audit_log_filters_by_action_and_day_and_pages(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser], runtime: Runtime
) -> None:
    with runtime.db.unit_of_work() as session:
        for i in range(60):
            entry = core_services.record_audit(
                session,
                tenant_id=acme.tenant_id,
                actor="cli",
                action="user.create" if i % 2 else "batch.create",
                target_type="user",
                target_id=i,
            )
            entry.at = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=i % 3)
    admin = signed_in(acme.users["admin"])
    everything = admin.client.get("/audit")
    assert everything.text.count("<tr data-action=") == 50
    older = re.search(r'<a href="([^"]+)" id="audit-older"', everything.text)
    assert older
    rest = admin.client.get(older.group(1).replace("&amp;", "&"))
    assert rest.text.count("<tr data-action=") == 10 and 'id="audit-newest"' in rest.text
    created = admin.client.get("/audit?action=user.create")
    assert created.text.count('<tr data-action="user.create">') == 30
    assert '<tr data-action="batch.create">' not in created.text
    one_day = admin.client.get("/audit?since=2026-11-02&until=2026-11-02")
    assert one_day.text.count("<tr data-action=") == 20
    bad = admin.client.get("/audit?since=yesterday&action=drop-table")
    assert bad.status_code == 422
    assert _texts(bad.text, "since-error") == "请按 YYYY-MM-DD 格式输入日期。"
    assert _texts(bad.text, "action-error") == "请选择列表中的操作。"
    year_one = admin.client.get("/audit?since=0001-01-01")  # before year 1 once in UTC
    assert year_one.status_code == 422
    assert _texts(year_one.text, "since-error") == "请按 YYYY-MM-DD 格式输入日期。"


def test_pages_and_api_refuse_unsafe_requests_without_the_csrf_token(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    admin = signed_in(acme.users["admin"])
    forged = admin.client.post("/users", data={"email": "x@acme.example.com", "role": "analyst"})
    assert forged.status_code == 403 and "页面已过期" in forged.text
    api = admin.client.post(
        "/api/v1/users", json={"email": "x@acme.example.com", "role": "analyst"}
    )
    assert api.status_code == 403 and api.json["code"] == "csrf_token_invalid"  # type: ignore[index]
    wrong = admin.client.patch(
        f"/api/v1/users/{acme.users['analyst']}",
        json={"role": "admin"},
        headers={"X-CSRF-Token": "A" * 43},
    )
    assert wrong.status_code == 403
    ok = admin.client.post(
        "/api/v1/users",
        json={"email": "x@acme.example.com", "role": "analyst"},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert ok.status_code == 201 and len(ok.json["password"]) == 16  # type: ignore[index]
    assert admin.client.get("/api/v1/users").status_code == 200  # reads need no token
    signed_out = admin.client.post("/sign-out")
    assert signed_out.status_code == 403  # even signing out needs it (no forced sign-outs)
    assert admin.client.post("/sign-out", data={"csrf_token": admin.csrf}).status_code == 303
    assert admin.client.get("/").status_code == 303


def test_an_expired_session_redirects_pages_and_answers_401_to_the_api(
    acme: Staff, signed_in: Callable[[int], Browser], runtime: Runtime
) -> None:
    me = signed_in(acme.users["analyst"])
    assert me.client.get("/api/v1/me").json["user"]["email"] == "analyst@acme.example.com"  # type: ignore[index]
    with runtime.db.unit_of_work() as session:
        session.execute(
            update(ConsoleSession).values(
                last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
            )
        )
    page = me.client.get("/audit?lang=en")
    assert page.status_code == 303
    assert page.headers["Location"].startswith("/sign-in?")
    assert _query(page.headers["Location"]) == {"next": ["/audit?lang=en"], "ended": ["1"]}
    assert f"{SESSION_COOKIE}=;" in page.headers["Set-Cookie"]  # the dead cookie goes
    api = signed_in(acme.users["analyst"])
    with runtime.db.unit_of_work() as session:
        session.execute(update(ConsoleSession).values(revoked_at=dt.datetime.now(dt.UTC)))
    answer = api.client.get("/api/v1/products")
    assert answer.status_code == 401 and answer.mimetype == "application/problem+json"
    assert "sign in again" in answer.json["detail"]  # type: ignore[index]


def test_every_console_answer_carries_the_security_headers(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    client = app.test_client()
    admin = signed_in(acme.users["admin"])
    for answer in (
        client.get("/sign-in"),
        admin.client.get("/users"),
        admin.client.get("/api/v1/users"),
        client.get("/api/v1/products"),  # a 401
        client.get("/no/such/page"),
    ):
        csp = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in answer.headers
    page = admin.client.get("/users")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    script = re.search(r'<script src="([^"]+)"', page.text)
    assert script and "v=" in script.group(1)
    static = client.get(script.group(1))
    static.close()
    assert static.status_code == 200 and "immutable" in static.headers["Cache-Control"]
    # Behind TLS (the proxy says https): HSTS, and the session cookie is Secure.
    secure = app.test_client()
    page = secure.get("/sign-in", base_url="https://console.example.com")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    answer = secure.post(
        "/sign-in",
        base_url="https://console.example.com",
        data={
            "csrf_token": form_token(page.text),
            "brand": "acme",
            "email": "admin@acme.example.com",
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 303 and "; Secure" in answer.headers["Set-Cookie"]


def test_under_a_prefix_links_and_cookies_follow_the_mount_point(app: Flask, acme: Staff) -> None:
    client = app.test_client()
    base = "http://localhost/console"  # what yima serve's dispatcher makes of /console/...
    page = client.get("/sign-in", base_url=base)
    assert 'action="/console/sign-in"' in page.text and "/console/static/console.css" in page.text
    answer = client.post(
        "/sign-in",
        base_url=base,
        data={
            "csrf_token": form_token(page.text),
            "brand": "acme",
            "email": "admin@acme.example.com",
            "password": PASSWORD,
        },
    )
    assert answer.headers["Location"] == "/console/"
    assert "Path=/console" in answer.headers["Set-Cookie"]


def test_odd_input_gets_an_answer_never_a_500(
    app: Flask, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    admin = signed_in(acme.users["admin"])
    nul = admin.client.post(
        "/users",
        data={
            "csrf_token": admin.csrf,
            "email": "n@acme.example.com",
            "name": "a\x00b",
            "role": "analyst",
        },
    )
    assert nul.status_code == 422
    long = admin.client.post(
        "/users",
        data={
            "csrf_token": admin.csrf,
            "email": "l@acme.example.com",
            "name": "名" * 300,
            "role": "analyst",
            "distributor_id": "-1",
        },
    )
    assert long.status_code == 422 and "姓名最多 200 个字符" in long.text
    for path in (
        "/users?after=abc",
        "/users?after=99999999999999999999",
        "/audit?before=-1&since=2026-13-45",
        "/audit?until=2026-1-1",
        "/account?done=<script>",
    ):
        answer = admin.client.get(path)
        assert answer.status_code in (200, 422), (path, answer.status_code)
        assert "<script>" not in answer.text.replace('<script src="', "")
    client = app.test_client()
    page = client.get("/sign-in?next=//evil.example/x")
    assert 'name="next"' not in page.text  # not carried on to after the sign-in
    answer = client.post(
        "/sign-in",
        data={
            "csrf_token": form_token(page.text),
            "brand": "acme",
            "email": "admin@acme.example.com",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    fresh = app.test_client()  # no session at all: the code step sends it to sign in
    assert fresh.post("/sign-in/code", data={"code": "123456"}).headers["Location"] == "/sign-in"
