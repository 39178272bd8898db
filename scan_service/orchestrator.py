"""The scan orchestrator: one function that reads top to bottom.

verify the code offline → load the code's state → its trail (activation, packing, shipments)
→ verdict and record → the signed-in member's points → answer. Each step is a call into its
domain; the draw (issue 6) plugs in beside the points without reshaping it. A bad code is a verdict,
never an error; a flooding client gets :class:`anti_fraud.RateLimitedError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

import anti_fraud
import campaigns
import codegen
import members
import traceability
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
    """What the consumer is told (signals and reasons stay with the brand)."""

    verdict: str
    product: ProductView | None = None
    lot: str | None = None
    production_date: str | None = None
    scan_id: str | None = None
    first_scan_at: dt.datetime | None = None
    first_place: dict[str, object] | None = None
    scan_count: int = 0
    timezone: str = "Asia/Shanghai"
    journey: tuple[traceability.JourneyStep, ...] = ()
    tenant_id: int | None = None
    brand: str | None = None  # the tenant's slug
    reward: campaigns.ScanReward | None = None  # None: nobody signed in
    # For the brand and the logs only, never rendered to a consumer:
    reason: str | None = None
    signals: tuple[str, ...] = ()
    diverted: bool | None = None


def scan(
    session: Session,
    runtime: Runtime,
    request: anti_fraud.ScanRequest,
    verification: codegen.Verification | None = None,
    member: Callable[[], members.SignedIn | None] | None = None,
) -> ScanAnswer:
    """Answer one scan; a valid scan is recorded in ``session`` (committed before the answer).
    ``verification`` is step 1's result when the caller already has it (the WSGI fast path);
    ``member`` finds the signed-in member scanning, who may earn the code's points: asked only
    at step 5, so a forged code costs no lookup whatever credentials it carries."""
    # 1. Verify from the code alone: a forged code never reaches the database, and a client
    #    flooding us with them is told to wait.
    if verification is None:
        verification = codegen.verify(runtime, request.code)
    if isinstance(verification, codegen.InvalidToken):
        return _counterfeit(runtime, request, verification.reason)

    # 2. Load the code's state: batch and product, cached.
    context = codegen.load_code_context(runtime, session, verification.batch_id)
    if (
        context is None
        or context.tenant_id != verification.tenant_id
        or verification.serial > context.quantity
    ):
        return _counterfeit(runtime, request, "unknown_code", verification.tenant_id)
    if context.batch_status != "active":
        return _counterfeit(runtime, request, "revoked_batch", verification.tenant_id)

    # 3. The code's trail: activated at the line? packed, shipped, held by which distributor
    #    with which authorised regions? (No query for a brand that does not trace.)
    trail = traceability.code_trail(
        runtime,
        session,
        tenant_id=context.tenant_id,
        code=traceability.CodeRef(context.batch_id, verification.serial),
    )

    # 4. Count, judge and record the scan (first scan decided by the database; a scan outside
    #    the holder's regions is flagged diverted, for the brand).
    outcome = anti_fraud.record_valid_scan(
        session,
        runtime,
        tenant_id=context.tenant_id,
        batch_id=context.batch_id,
        serial=verification.serial,
        request=request,
        trail=trail,
    )

    # 5. The signed-in member's reward: points by the campaigns' earn rules and a draw, once per
    #    code ever, after the reward-fraud rules (the verdict and the place go as values).
    reward = None
    signed_in = member() if member is not None else None
    if signed_in is not None:
        reward = campaigns.reward_scan(
            session,
            runtime,
            member=signed_in,
            facts=campaigns.ScanFacts(
                tenant_id=context.tenant_id,
                batch_id=context.batch_id,
                serial=verification.serial,
                sku=context.sku,
                verdict=outcome.verdict,
                timezone=context.timezone,
                located=anti_fraud.located_of(outcome.place),
                case=_case_of(trail),
                device=outcome.device,
                ip=outcome.ip,  # in the form the brand's IP policy stores
                region=anti_fraud.place_label(outcome.place, "zh") if outcome.place else None,
            ),
        )

    return ScanAnswer(
        verdict=outcome.verdict,
        product=ProductView(
            name=context.product_name,
            sku=context.sku,
            gtin=context.gtin,
            specification=context.specification,
            image_url=context.image_url,
        ),
        lot=context.lot,
        production_date=context.production_date,
        scan_id=outcome.scan_id,
        first_scan_at=outcome.first_scan_at,
        first_place=outcome.first_place,
        scan_count=outcome.scan_count,
        timezone=context.timezone,
        journey=trail.steps,
        tenant_id=context.tenant_id,
        brand=context.brand,
        reward=reward,
        signals=outcome.signals,
        diverted=outcome.diverted,
    )


def _case_of(trail: traceability.CodeTrail) -> str | None:
    """The case the item is packed in now ("batch:serial"), for the case-harvesting rule."""
    case = None
    for step in trail.steps:
        if step.level == 1 and step.parent is not None:
            case = f"{step.parent.batch_id}:{step.parent.serial}" if step.kind == "packed" else None
    return case


def answer_invalid(runtime: Runtime, request: anti_fraud.ScanRequest, reason: str) -> ScanAnswer:
    """Step 1's answer for a code that failed verification (also used by the WSGI fast path)."""
    return _counterfeit(runtime, request, reason)


def _counterfeit(
    runtime: Runtime, request: anti_fraud.ScanRequest, reason: str, tenant_id: int | None = None
) -> ScanAnswer:
    if tenant_id is None:
        tenant_id = codegen.tenant_of_code(runtime, request.code)
    wait = anti_fraud.note_invalid_scan(runtime, request, reason=reason, tenant_id=tenant_id)
    if wait:
        raise anti_fraud.RateLimitedError(wait)
    return ScanAnswer(verdict="counterfeit", reason=reason)
