"""A distributor's API key from the API keys page: it must act for one of the brand's active
distributors, sees only that distributor's data, and the page says whose key it is."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select

import traceability
from core.models import AuditEntry
from core.runtime import Runtime
from tests.console.conftest import Browser, Staff


def _post(browser: Browser, **form: str) -> tuple[int, str]:
    answer = browser.client.post("/api-keys", data={**form, "csrf_token": browser.csrf})
    return answer.status_code, answer.get_data(as_text=True)


def test_a_distributor_key_acts_for_one_of_the_brands_distributors(
    runtime: Runtime, acme: Staff, rival: Staff, signed_in: Callable[[int], Browser]
) -> None:
    admin = signed_in(acme.users["admin"])
    status, html = _post(admin, name="仓库手机", role="distributor")
    assert status == 422
    assert "经销商角色的密钥须绑定本品牌一个启用中的经销商" in html
    status, html = _post(
        admin, name="仓库手机", role="distributor", distributor_id=str(rival.distributor_id)
    )
    assert status == 422 and 'id="key-distributor-error"' in html  # another brand's
    status, html = _post(admin, name="ERP", role="analyst", distributor_id=str(acme.distributor_id))
    assert status == 422 and "只有经销商角色的密钥可以绑定经销商" in html

    status, html = _post(
        admin, name="仓库手机", role="distributor", distributor_id=str(acme.distributor_id)
    )
    assert status == 200
    token = re.search(r'<code id="key-token">(yk_[^<]+)</code>', html)
    assert token is not None
    key_id = int(re.findall(r'id="revoke-key-(\d+)"', html)[0])
    shown = re.search(rf'id="key-{key_id}-distributor">([^<]+)<', html)
    assert shown is not None and shown.group(1) == "ACME-ZJ · Acme Tea 浙江经销商"

    # The key acts for that distributor: its shipments, and no one else's alerts.
    api = admin.client.application.test_client()
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert api.get("/api/v1/me", headers=bearer).get_json()["role"] == "distributor"
    assert api.get("/api/v1/trace/shipments", headers=bearer).status_code == 200
    with runtime.db.unit_of_work() as session:
        other = traceability.create_distributor(
            session, tenant_id=acme.tenant_id, code="ACME-JS", name="江苏", level="provincial"
        )
        assert traceability.distributor_of_api_key(session, key_id) == acme.distributor_id
        detail = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "api_key.create")
        ).one()
        assert detail["distributor_id"] == acme.distributor_id
    asked = api.get(f"/api/v1/diversion/alerts?distributor_id={other.id}", headers=bearer)
    assert asked.status_code == 403
