"""How far a brand's batches have come: codes activated at the line and codes shipped out.

Both read what is stored as ranges and units (activation spans; shipped ranges, and shipped cases
and pallets with everything packed in them now), so the answer costs O(spans + units), never
O(codes).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from traceability.models import ActivationSpan, Shipment, ShipmentRange

_SHIPPED_UNITS = text(
    "WITH RECURSIVE shipped(batch_id, serial) AS ("
    " SELECT u.batch_id, u.serial FROM trace_shipment_units u"
    " JOIN trace_shipments s ON s.id = u.shipment_id"
    " WHERE s.tenant_id = :tenant_id AND s.kind = 'shipment' AND s.from_distributor_id IS NULL"
    " UNION"
    " SELECT p.child_batch_id, p.child_serial FROM trace_packings p"
    " JOIN shipped ON p.parent_batch_id = shipped.batch_id AND p.parent_serial = shipped.serial"
    " WHERE p.unpacked_at IS NULL)"
    " SELECT batch_id, count(*) FROM shipped WHERE batch_id IN :batch_ids GROUP BY batch_id"
).bindparams(bindparam("batch_ids", expanding=True))


def batch_coverage(
    session: Session, *, tenant_id: int, batch_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Per batch: codes active now (activated and not deactivated) and codes the brand shipped
    to distributors (loose ranges, and units with their current contents)."""
    out = {b: {"activated": 0, "shipped": 0} for b in batch_ids}
    if not batch_ids:
        return out
    span = ActivationSpan
    for batch_id, n in session.execute(
        select(span.batch_id, func.sum(span.last_serial - span.first_serial + 1))
        .where(span.batch_id.in_(batch_ids), span.active.is_(True))
        .group_by(span.batch_id)
    ):
        out[int(batch_id)]["activated"] = int(n or 0)
    r, s = ShipmentRange, Shipment
    for batch_id, n in session.execute(
        select(r.batch_id, func.sum(r.last_serial - r.first_serial + 1))
        .join(s, s.id == r.shipment_id)
        .where(
            s.tenant_id == tenant_id,
            s.kind == "shipment",
            s.from_distributor_id.is_(None),
            r.batch_id.in_(batch_ids),
        )
        .group_by(r.batch_id)
    ):
        out[int(batch_id)]["shipped"] += int(n or 0)
    for batch_id, n in session.execute(
        _SHIPPED_UNITS, {"tenant_id": tenant_id, "batch_ids": list(batch_ids)}
    ):
        out[int(batch_id)]["shipped"] += int(n or 0)
    return out
