"""Test factories: they flush, never commit (the caller's unit of work does)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

import codegen
from core import services as core_services
from core.runtime import Runtime


@dataclass
class Brand:
    tenant_id: int
    slug: str
    admin_token: str
    product_id: int
    batch_id: int


def make_brand(
    session: Session,
    runtime: Runtime,
    *,
    slug: str = "acme",
    quantity: int = 2500,
    url_form: str = "short",
    role: str = "admin",
    **batch: Any,
) -> Brand:
    tenant = core_services.create_tenant(session, slug=slug, name=f"{slug} brand")
    token = core_services.create_api_key(
        session, tenant_id=tenant.id, name="tests", role=role
    ).token
    product = codegen.create_product(
        session,
        tenant_id=tenant.id,
        sku=f"{slug}-SKU-1",
        name="Green tea 250 g",
        gtin="06901234567892",
        specification="250 g",
    )
    made = codegen.create_batch(
        session,
        runtime=runtime,
        tenant_id=tenant.id,
        product_id=product.id,
        lot=batch.pop("lot", "L2026A"),
        quantity=quantity,
        url_form=url_form,
        production_date=dt.date(2026, 11, 1),
        **batch,
    )
    return Brand(tenant.id, slug, token, product.id, made.id)


def count_rows(session: Session) -> int:
    """Rows in every Yima table (the stateless-issuing check)."""
    from sqlalchemy import func, select

    from core.db import Base

    return sum(
        int(session.scalar(select(func.count()).select_from(table)) or 0)
        for table in Base.metadata.sorted_tables
    )
