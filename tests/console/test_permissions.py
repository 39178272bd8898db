"""What each role sees in the console: its navigation, the pages and API calls it may make (and
the 403 it gets for the rest), and a distributor user's view of only its own shipments and
diversion alerts."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from flask import Flask

import traceability
from anti_fraud.models import DiversionAlert
from core.runtime import Runtime
from tests.console.conftest import Browser, Staff
from traceability.models import Shipment

ROLES = ("admin", "factory_operator", "analyst", "customer_service", "distributor")

# (method, path, roles answered 2xx; every other role gets 403)
MATRIX = [
    ("GET", "/", set(ROLES)),
    ("GET", "/account", set(ROLES)),
    ("GET", "/users", {"admin"}),
    ("GET", "/audit", {"admin"}),
    ("GET", "/api/v1/me", set(ROLES)),
    ("GET", "/api/v1/users", {"admin"}),
    ("POST", "/api/v1/users", {"admin"}),
    ("GET", "/api/v1/products", {"admin", "factory_operator", "analyst"}),
    ("POST", "/api/v1/products", {"admin", "factory_operator"}),
    ("GET", "/api/v1/members", {"admin", "analyst", "customer_service"}),
    ("GET", "/api/v1/campaigns", {"admin", "analyst", "customer_service"}),
    ("GET", "/api/v1/trace/shipments", {"admin", "factory_operator", "analyst", "distributor"}),
    ("GET", "/api/v1/diversion/alerts", {"admin", "factory_operator", "analyst", "distributor"}),
    ("GET", "/api/v1/alerts", {"admin", "factory_operator", "analyst"}),
]

NAV = {
    "admin": ["overview", "users", "audit", "account"],
    "factory_operator": ["overview", "account"],
    "analyst": ["overview", "account"],
    "customer_service": ["overview", "account"],
    "distributor": ["overview", "account"],
}


def _body(path: str, role: str) -> dict[str, object] | None:
    if path == "/api/v1/users":
        return {"email": f"made-by-{role}@acme.example.com", "role": "analyst"}
    if path == "/api/v1/products":
        return {"sku": f"SKU-{role}", "name": "Tea", "gtin": "06901234567892"}
    return None


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_its_pages_and_calls_and_is_refused_the_rest(
    role: str, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    me = signed_in(acme.users[role])
    home = me.client.get("/?lang=en")
    shell = [n for n in re.findall(r'id="nav-([a-z_]+)"', home.text) if n in NAV["admin"]]
    assert shell == NAV[role]
    for method, path, allowed in MATRIX:
        answer = me.client.open(
            path, method=method, json=_body(path, role), headers={"X-CSRF-Token": me.csrf}
        )
        if role in allowed:
            assert 200 <= answer.status_code < 300, (role, method, path, answer.text[:300])
        else:
            assert answer.status_code == 403, (role, method, path, answer.status_code)
            if path.startswith("/api/"):
                assert answer.json["code"] == "permission_denied"  # type: ignore[index]
            else:
                assert "Not allowed" in answer.text and "Ask your brand" in answer.text


def test_a_distributor_user_sees_only_its_own_shipments_and_alerts(
    app: Flask, runtime: Runtime, acme: Staff, signed_in: Callable[[int], Browser]
) -> None:
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    with runtime.db.unit_of_work() as session:
        other = traceability.create_distributor(
            session,
            tenant_id=acme.tenant_id,
            code="ACME-JS",
            name="江苏经销商",
            level="provincial",
            regions=["CN-JS"],
        )
        ids = {}
        for name, distributor_id in (("mine", acme.distributor_id), ("theirs", other.id)):
            shipment = Shipment(
                tenant_id=acme.tenant_id,
                reference=f"DN-{name}",
                to_distributor_id=distributor_id,
                shipped_at=now,
                shipped_by="test",
            )
            session.add(shipment)
            session.flush()
            alert = DiversionAlert(
                tenant_id=acme.tenant_id,
                distributor_id=distributor_id,
                shipment_id=shipment.id,
                score=0.9,
                code_count=3,
                scan_count=3,
                first_seen_at=now,
                last_seen_at=now,
            )
            session.add(alert)
            session.flush()
            ids[name] = (shipment.id, alert.id)
    me = signed_in(acme.users["distributor"])
    shipments = me.client.get("/api/v1/trace/shipments").json
    assert [s["reference"] for s in shipments["items"]] == ["DN-mine"]  # type: ignore[index]
    alerts = me.client.get("/api/v1/diversion/alerts").json
    assert [a["id"] for a in alerts["items"]] == [ids["mine"][1]]  # type: ignore[index]
    assert me.client.get(f"/api/v1/diversion/alerts/{ids['mine'][1]}").status_code == 200
    assert me.client.get(f"/api/v1/diversion/alerts/{ids['theirs'][1]}").status_code == 404
    assert me.client.get(f"/api/v1/trace/shipments/{ids['theirs'][0]}").status_code == 404
    asked = me.client.get(f"/api/v1/diversion/alerts?distributor_id={other.id}")
    assert asked.status_code == 403
    # The brand's admin sees both; the distributor may not review alerts.
    admin = signed_in(acme.users["admin"])
    assert len(admin.client.get("/api/v1/diversion/alerts").json["items"]) == 2  # type: ignore[index]
    review = me.client.post(
        f"/api/v1/diversion/alerts/{ids['mine'][1]}/review",
        json={"status": "dismissed", "note": "not us"},
        headers={"X-CSRF-Token": me.csrf},
    )
    assert review.status_code == 403
    home = me.client.get("/")
    assert re.search(r'id="overview-distributor">\s*' + str(acme.distributor_id), home.text)
