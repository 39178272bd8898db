"""The scan orchestrator: one function that reads top to bottom.

verify the code offline → load the code's state → verdict → answer. Later capabilities plug
their steps in here (anti-fraud signals and the scan record, the journey, points, the draw)
without reshaping it. A bad code is a verdict, never an error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

import codegen
from core.runtime import Runtime


@dataclass(frozen=True)
class ProductView:
    name: str
    sku: str
    gtin: str | None
    specification: str
    image_url: str | None


@dataclass(frozen=True)
class ScanAnswer:
    verdict: str  # genuine | counterfeit (suspicious / already_verified arrive with anti_fraud)
    reason: str | None = None
    product: ProductView | None = None
    lot: str | None = None
    production_date: dt.date | None = None
    serial: int | None = None


def scan(session: Session, runtime: Runtime, code: str) -> ScanAnswer:
    """Answer one scan of ``code`` (a token, short URL or GS1 Digital Link URL)."""
    # 1. Verify from the code alone: a forged code never reaches the database.
    verification = codegen.verify(runtime, code)
    if isinstance(verification, codegen.InvalidToken):
        return ScanAnswer(verdict="counterfeit", reason=verification.reason)
    # 2. Load the code's state.
    batch = codegen.get_batch(
        session, tenant_id=verification.tenant_id, batch_id=verification.batch_id
    )
    if batch is None or verification.serial > batch.quantity:
        return ScanAnswer(verdict="counterfeit", reason="unknown_code")
    if batch.status != "active":
        return ScanAnswer(verdict="counterfeit", reason="revoked_batch")
    product = codegen.get_product(session, tenant_id=batch.tenant_id, product_id=batch.product_id)
    assert product is not None
    # 3. Verdict, 4. record, 5. trace, points and draw: filled in by later capabilities.
    return ScanAnswer(
        verdict="genuine",
        product=ProductView(
            name=product.name,
            sku=product.sku,
            gtin=product.gtin,
            specification=product.specification,
            image_url=product.image_url,
        ),
        lot=batch.lot,
        production_date=batch.production_date,
        serial=verification.serial,
    )
