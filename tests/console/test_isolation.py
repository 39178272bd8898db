"""Tenant isolation, walked over every route of the console: a signed-in admin of one brand
sends every method of every route with the IDs of another brand's objects (its users,
distributor, product, batch) and is answered 403, 404 or a 4xx about its input — never
another brand's data, never a 500."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from flask import Flask

import codegen
from core.runtime import Runtime
from tests.console.conftest import Browser, Staff

_ARG = re.compile(r"<(?:(\w+):)?(\w+)>")
RIVAL_MARKS = ("Rival Tea", "rival.example.com", "rival-SKU", "RIVAL-ZJ", "rival of")


def _rival_objects(runtime: Runtime, rival: Staff) -> dict[str, int]:
    with runtime.db.unit_of_work() as session:
        product = codegen.create_product(
            session,
            tenant_id=rival.tenant_id,
            sku="rival-SKU-1",
            name="Rival Tea 250 g",
            gtin="06901234567892",
        )
        batch = codegen.create_batch(
            session,
            runtime=runtime,
            tenant_id=rival.tenant_id,
            product_id=product.id,
            lot="R2026",
            quantity=100,
            url_form="short",
            production_date=dt.date(2026, 11, 1),
        )
        return {
            "user_id": rival.users["admin"],
            "distributor_id": rival.distributor_id,
            "product_id": product.id,
            "batch_id": batch.id,
        }


def test_no_route_gives_one_brand_another_brands_objects(
    app: Flask,
    runtime: Runtime,
    acme: Staff,
    rival: Staff,
    signed_in: Callable[[int], Browser],
) -> None:
    theirs = _rival_objects(runtime, rival)
    admin = signed_in(acme.users["admin"])
    checked = 0
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.rule in ("/healthz", "/readyz"):
            continue
        args = {name: (converter, name) for converter, name in _ARG.findall(rule.rule)}
        if not args:
            continue
        values = {
            name: theirs.get(name, 1) if converter in ("id", "int") else "RIVAL-CODE"
            for name, (converter, _) in args.items()
        }
        path = _ARG.sub(lambda m, v=values: str(v[m.group(2)]), rule.rule)  # type: ignore[misc]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            answer = admin.client.open(
                path,
                method=method,
                json={} if method != "GET" else None,
                headers={"X-CSRF-Token": admin.csrf},
            )
            where = f"{method} {path} -> {answer.status_code}: {answer.text[:200]}"
            assert answer.status_code < 500, where
            assert not 200 <= answer.status_code < 300, where
            if method == "GET":
                assert answer.status_code in (403, 404), where
            for mark in RIVAL_MARKS:
                assert mark not in answer.text, where
            checked += 1
    assert checked >= 50  # the walk reached the routes with IDs, every method of each


def test_lists_show_only_the_callers_brand(
    app: Flask,
    runtime: Runtime,
    acme: Staff,
    rival: Staff,
    signed_in: Callable[[int], Browser],
) -> None:
    _rival_objects(runtime, rival)
    admin = signed_in(acme.users["admin"])
    for path in (
        "/users",
        "/audit",
        "/",
        "/api/v1/users",
        "/api/v1/products",
        "/api/v1/batches",
        "/api/v1/trace/distributors",
        "/api/v1/trace/shipments",
        "/api/v1/diversion/alerts",
        "/api/v1/me",
    ):
        answer = admin.client.get(path)
        assert answer.status_code == 200, path
        for mark in RIVAL_MARKS:
            assert mark not in answer.text, (path, mark)
    assert "admin@acme.example.com" in admin.client.get("/users").text
