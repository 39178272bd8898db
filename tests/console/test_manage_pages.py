"""The console's management pages (console/manage_pages.py): each renders for the roles that
may open it and answers 403 to the others, 404 for another brand's object, carries no inline
script, speaks Chinese by default and English on request; the API keys page creates a key shown
once (which then works) and revokes it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import campaigns
import codegen
import members
from console.manage_pages import SECTIONS
from console.manage_texts import MANAGE_TEXTS
from core.auth import PERMISSIONS
from core.models import ROLES
from core.runtime import Runtime
from tests.console.conftest import Browser, Staff


@dataclass
class Objects:
    batch_id: int
    campaign_id: int
    member_id: int


def _objects(runtime: Runtime, staff: Staff) -> Objects:
    with runtime.db.unit_of_work() as session:
        product = codegen.create_product(
            session, tenant_id=staff.tenant_id, sku=f"{staff.slug}-TEA", name="Green tea"
        )
        batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=staff.tenant_id,
            product_id=product.id,
            lot="L1",
            quantity=10,
        )
        now = dt.datetime.now(dt.UTC)
        campaign = campaigns.create_campaign(
            session,
            tenant_id=staff.tenant_id,
            raw={
                "name": f"{staff.slug} spring",
                "starts_at": now.isoformat(),
                "ends_at": (now + dt.timedelta(days=10)).isoformat(),
            },
            actor="tests",
        )
        member = members.enrol_member(
            session, runtime, tenant_id=staff.tenant_id, phone="13800138000"
        ).member
        return Objects(batch.id, campaign.id, member.id)


@pytest.fixture
def acme_objects(runtime: Runtime, acme: Staff) -> Objects:
    return _objects(runtime, acme)


@pytest.fixture
def rival_objects(runtime: Runtime, rival: Staff) -> Objects:
    return _objects(runtime, rival)


# page path -> the permission its role needs (an object's page is filled in per test)
PAGES = {
    "/products": "read",
    "/batches": "read",
    "/batches/{batch_id}": "read",
    "/distributors": "read",
    "/campaigns": "campaigns",
    "/campaigns/{campaign_id}": "campaigns",
    "/reviews": "campaigns",
    "/members": "members",
    "/members/{member_id}": "members",
    "/loyalty": "members",
    "/alert-rules": "read",
    "/api-keys": "keys",
}


def _path(template: str, objects: Objects) -> str:
    return template.format(
        batch_id=objects.batch_id, campaign_id=objects.campaign_id, member_id=objects.member_id
    )


def _inline_script(html: str) -> list[str]:
    """Inline code a CSP of script-src 'self' / style-src 'self' would refuse."""
    found = [s for s in re.findall(r"<script([^>]*)>", html) if "src=" not in s]
    found += re.findall(r"\son[a-z]+\s*=", html)
    found += re.findall(r"\sstyle\s*=", html)
    found += re.findall(r"<style", html)
    found += re.findall(r"javascript:", html)
    return found


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_the_pages_it_may_and_is_refused_the_others(
    role: str,
    acme: Staff,
    acme_objects: Objects,
    signed_in: Callable[[int], Browser],
) -> None:
    browser = signed_in(acme.users[role])
    allowed = PERMISSIONS[role]
    for template, permission in PAGES.items():
        page = browser.client.get(_path(template, acme_objects))
        html = page.get_data(as_text=True)
        if permission in allowed:
            assert page.status_code == 200, (template, role)
            assert 'id="manage"' in html and "manage.js?v=" in html
            assert _inline_script(html) == [], template
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        else:
            assert page.status_code == 403, (template, role)
            assert "manage.js" not in html
    # The navigation offers exactly the pages the role may open.
    home = browser.client.get("/").get_data(as_text=True)
    for section in SECTIONS:
        nav_id = f'id="nav-manage-{section.endpoint.replace("_", "-")}"'
        assert (nav_id in home) == (section.permission in allowed), (section.endpoint, role)


def test_another_brands_objects_are_not_found(
    acme: Staff,
    acme_objects: Objects,
    rival_objects: Objects,
    signed_in: Callable[[int], Browser],
) -> None:
    browser = signed_in(acme.users["admin"])
    for template in ("/batches/{batch_id}", "/campaigns/{campaign_id}", "/members/{member_id}"):
        mine = browser.client.get(_path(template, acme_objects))
        theirs = browser.client.get(_path(template, rival_objects))
        assert mine.status_code == 200
        assert theirs.status_code == 404, template
        assert "manage.js" not in theirs.get_data(as_text=True)
    assert browser.client.get("/batches/2147483647").status_code == 404


def test_a_visitor_is_sent_to_sign_in(app: object, acme: Staff) -> None:
    client = app.test_client()  # type: ignore[attr-defined]
    answer = client.get("/campaigns")
    assert answer.status_code == 303
    assert "/sign-in?next=/campaigns" in answer.headers["Location"]


def test_pages_speak_chinese_by_default_and_english_on_request(
    acme: Staff, acme_objects: Objects, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    zh = browser.client.get(f"/batches/{acme_objects.batch_id}").get_data(as_text=True)
    assert '<h1 id="page-title">批次 L1</h1>' in zh and "生成印刷文件" in zh
    en = browser.client.get("/campaigns?lang=en").get_data(as_text=True)
    assert '<h1 id="page-title">Campaigns</h1>' in en and "Create campaign (draft)" in en
    # The script gets the same words, in the page's language.
    assert "&#34;create_campaign&#34;: &#34;Create campaign (draft)&#34;" in en or (
        '"create_campaign": "Create campaign (draft)"' in en
    )


def test_both_languages_have_every_text() -> None:
    zh, en = MANAGE_TEXTS["zh"], MANAGE_TEXTS["en"]
    assert set(zh) == set(en)
    assert all(value.strip() for value in en.values())


def test_a_factory_operator_sees_no_forms_it_may_not_use(
    acme: Staff, acme_objects: Objects, signed_in: Callable[[int], Browser]
) -> None:
    analyst = signed_in(acme.users["analyst"])
    html = analyst.client.get("/products").get_data(as_text=True)
    assert 'id="new-product"' not in html  # read only
    batch = analyst.client.get(f"/batches/{acme_objects.batch_id}").get_data(as_text=True)
    assert 'id="new-export"' not in batch and 'id="no-export"' in batch
    operator = signed_in(acme.users["factory_operator"])
    html = operator.client.get(f"/batches/{acme_objects.batch_id}").get_data(as_text=True)
    assert 'id="new-export"' in html
    rules = analyst.client.get("/alert-rules").get_data(as_text=True)
    assert 'id="rule-form"' in rules  # analysts hold alert_rules
    service = signed_in(acme.users["customer_service"])
    assert 'id="new-campaign"' not in service.client.get("/campaigns").get_data(as_text=True)


def test_an_api_key_is_shown_once_works_and_is_revoked(
    acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    browser = signed_in(acme.users["admin"])
    refused = browser.client.post("/api-keys", data={"name": "erp", "role": "analyst"})
    assert refused.status_code == 403  # no CSRF token

    empty = browser.client.post(
        "/api-keys", data={"name": " ", "role": "analyst", "csrf_token": browser.csrf}
    )
    assert empty.status_code == 422
    assert 'id="key-name-error"' in empty.get_data(as_text=True)

    made = browser.client.post(
        "/api-keys", data={"name": "ERP sync", "role": "analyst", "csrf_token": browser.csrf}
    )
    html = made.get_data(as_text=True)
    assert made.status_code == 200
    token = re.search(r'<code id="key-token">(yk_[^<]+)</code>', html)
    assert token, "the new key's token is shown"
    me = browser.client.application.test_client().get(
        "/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"}
    )
    assert me.status_code == 200 and me.get_json()["role"] == "analyst"

    listed = browser.client.get("/api-keys").get_data(as_text=True)
    assert "ERP sync" in listed and token.group(1) not in listed  # shown once only
    key_id = int(re.findall(r'id="revoke-key-(\d+)"', listed)[0])

    revoked = browser.client.post(f"/api-keys/{key_id}/revoke", data={"csrf_token": browser.csrf})
    assert revoked.status_code == 303
    page = browser.client.get(revoked.headers["Location"]).get_data(as_text=True)
    assert "密钥已吊销" in page and f'id="revoke-key-{key_id}"' not in page
    again = browser.client.application.test_client().get(
        "/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"}
    )
    assert again.status_code == 401

    audit = browser.client.get("/api/v1/users").status_code  # the session still works
    assert audit == 200


def test_another_brands_api_key_cannot_be_revoked(
    runtime: Runtime, acme: Staff, rival: Staff, signed_in: Callable[[int], Browser]
) -> None:
    from core import services as core_services

    with runtime.db.unit_of_work() as session:
        theirs = core_services.create_api_key(
            session, tenant_id=rival.tenant_id, name="rival key", role="admin"
        ).key.id
    browser = signed_in(acme.users["admin"])
    answer = browser.client.post(f"/api-keys/{theirs}/revoke", data={"csrf_token": browser.csrf})
    assert answer.status_code == 404
    analyst = signed_in(acme.users["analyst"])
    refused = analyst.client.post(
        "/api-keys", data={"name": "x", "role": "admin", "csrf_token": analyst.csrf}
    )
    assert refused.status_code == 403
