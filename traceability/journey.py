"""A code's journey and the trail a scan needs: activation, packing, shipments, holder.

:func:`code_trail` is what the scan orchestrator calls (one per valid scan): whether the code is
active, who holds it and where that party may sell, and the journey in steps the scan page puts
into words (:func:`describe`). A brand that never recorded any traceability skips every query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import UTCDateTime, fetch_all
from core.runtime import Runtime
from traceability.activation import ActivationState
from traceability.codes import CodeRef
from traceability.distributors import party
from traceability.packing import MAX_DEPTH, PackedInto
from traceability.settings import get_trace_config
from traceability.shipments import Movement, holding_units_from, movements_of

STEP_KINDS = ("activated", "deactivated", "packed", "unpacked", "shipped", "received", "returned")


@dataclass(frozen=True)
class JourneyStep:
    """One thing that happened to a code (or to the case or pallet that held it)."""

    kind: str  # one of STEP_KINDS
    at: dt.datetime
    line: str = ""
    site: str = ""
    reason: str | None = None
    level: int = 0  # packing: 1 the code itself, 2 its case onto a pallet, ...
    parent: CodeRef | None = None
    distributor_id: int | None = None
    distributor: str | None = None  # the receiving party's name
    from_distributor: str | None = None
    shipment_id: int | None = None
    reference: str | None = None


@dataclass(frozen=True)
class CodeTrail:
    """What traceability knows of a code at scan time."""

    active: bool
    deactivated_reason: str | None = None
    activated_at: dt.datetime | None = None
    holder_id: int | None = None
    holder_name: str | None = None
    shipment_id: int | None = None
    region_owner_id: int | None = None
    regions: tuple[str, ...] = ()
    steps: tuple[JourneyStep, ...] = field(default_factory=tuple)


# The code's activation (the span holding its serial, with its act) and every packing of the code
# and of what held it, in one statement: the scan path's first of two.
_FACTS = text(
    "WITH RECURSIVE up(b, s, depth) AS ("
    " SELECT CAST(:b AS BIGINT), CAST(:s AS BIGINT), 0"
    " UNION"
    " SELECT p.parent_batch_id, p.parent_serial, up.depth + 1 FROM trace_packings p"
    " JOIN up ON p.child_batch_id = up.b AND p.child_serial = up.s"
    f" WHERE up.depth < {MAX_DEPTH})"
    " SELECT 'p' AS k, p.child_batch_id AS n1, p.child_serial AS n2, p.parent_batch_id AS n3,"
    " p.parent_serial AS n4, p.packed_at AS t1, p.unpacked_at AS t2, p.line AS w1,"
    " CAST(NULL AS VARCHAR) AS w2, CAST(NULL AS VARCHAR) AS w3, u.depth + 1 AS n5"
    " FROM (SELECT b, s, min(depth) AS depth FROM up GROUP BY b, s) u"
    " JOIN trace_packings p ON p.child_batch_id = u.b AND p.child_serial = u.s"
    " UNION ALL"
    " SELECT 'a', sp.last_serial, sp.activation_id, CASE WHEN sp.active THEN 1 ELSE 0 END,"
    " NULL, a.at, NULL, a.line, a.site, a.reason, NULL"
    " FROM (SELECT last_serial, activation_id, active FROM trace_activation_spans"
    " WHERE batch_id = :b AND first_serial <= :s ORDER BY first_serial DESC LIMIT 1) sp"
    " JOIN trace_activations a ON a.id = sp.activation_id"
).columns(t1=UTCDateTime(), t2=UTCDateTime())


def _facts(session: Session, code: CodeRef) -> tuple[ActivationState | None, list[PackedInto]]:
    state: ActivationState | None = None
    history: list[PackedInto] = []
    for k, n1, n2, n3, n4, t1, t2, w1, w2, w3, n5 in fetch_all(
        session, _FACTS, {"b": code.batch_id, "s": code.serial}
    ):
        if k == "a":
            if n1 >= code.serial:
                state = ActivationState(bool(n3), int(n2), t1, w3, w1 or "", w2 or "")
        else:
            history.append(PackedInto(CodeRef(n1, n2), CodeRef(n3, n4), t1, t2, w1, n5))
    history.sort(key=lambda p: (p.packed_at, p.depth))
    return state, history


def journey_steps(
    session: Session, code: CodeRef, runtime: Runtime
) -> tuple[list[JourneyStep], list[Movement], ActivationState | None]:
    """Every step of the code's journey, oldest first, its movements and activation state."""
    steps: list[JourneyStep] = []
    state, history = _facts(session, code)
    if state is not None:
        steps.append(
            JourneyStep(
                kind="activated" if state.active else "deactivated",
                at=state.at,
                line=state.line,
                site=state.site,
                reason=state.reason,
            )
        )
    held = holding_units_from(history, code)
    for p in history:
        # A case's packings count only while the code was inside it.
        inside = held.get(p.child, ())
        if p.child != code and not any(lo <= p.packed_at < hi for lo, hi in inside):
            continue
        steps.append(
            JourneyStep(kind="packed", at=p.packed_at, line=p.line, level=p.depth, parent=p.parent)
        )
        if p.unpacked_at is not None and p.depth == 1:
            steps.append(JourneyStep(kind="unpacked", at=p.unpacked_at, level=1, parent=p.parent))
    moves = movements_of(session, code, held)

    def name(i: int | None) -> str | None:
        found = party(runtime, session, i) if i is not None else None
        return found.name if found is not None else None

    for m in moves:
        steps.append(
            JourneyStep(
                kind="returned" if m.kind == "return" else "shipped",
                at=m.shipped_at,
                distributor_id=m.to_distributor_id,
                distributor=name(m.to_distributor_id),
                from_distributor=name(m.from_distributor_id),
                shipment_id=m.shipment_id,
                reference=m.reference,
            )
        )
        if m.received_at is not None:
            steps.append(
                JourneyStep(
                    kind="received",
                    at=m.received_at,
                    distributor_id=m.to_distributor_id,
                    distributor=name(m.to_distributor_id),
                    shipment_id=m.shipment_id,
                    reference=m.reference,
                )
            )
    steps.sort(key=lambda s: s.at)
    return steps, moves, state


def code_trail(runtime: Runtime, session: Session, *, tenant_id: int, code: CodeRef) -> CodeTrail:
    """The trail a scan of ``code`` needs (no query at all for a brand without traceability)."""
    config = get_trace_config(runtime, tenant_id, session)
    if not config.in_use:
        return CodeTrail(active=not config.require_activation)
    steps, moves, state = journey_steps(session, code, runtime)
    deactivated = next((s.reason for s in reversed(steps) if s.kind == "deactivated"), None)
    active = not config.require_activation if state is None else state.active
    activated_at = next((s.at for s in steps if s.kind == "activated"), None)
    if not moves:
        return CodeTrail(
            active=active,
            deactivated_reason=deactivated if not active else None,
            activated_at=activated_at,
            steps=tuple(steps),
        )
    last = moves[-1]
    holder = last.to_distributor_id
    holder_party = party(runtime, session, holder) if holder is not None else None
    owner = holder_party.region_owner_id if holder_party else None
    regions = list(holder_party.regions) if holder_party else []
    holder_name = holder_party.name if holder_party else None
    return CodeTrail(
        active=active,
        deactivated_reason=deactivated if not active else None,
        activated_at=activated_at,
        holder_id=holder,
        holder_name=holder_name,
        shipment_id=last.shipment_id,
        region_owner_id=owner,
        regions=tuple(regions),
        steps=tuple(steps),
    )


# --- words ----------------------------------------------------------------------------------

_ZH = {
    "activated": "在{where}生产并激活",
    "deactivated": "已被品牌停用（{reason}）",
    "packed": "装箱",
    "packed_up": "随箱装上托盘",
    "unpacked": "拆箱",
    "shipped": "发往{to}",
    "returned": "由{frm}退回{to}",
    "received": "{to}已收货",
}
_EN = {
    "activated": "Made and activated at {where}",
    "deactivated": "Withdrawn by the brand ({reason})",
    "packed": "Packed into a case",
    "packed_up": "Its case was packed onto a pallet",
    "unpacked": "Unpacked",
    "shipped": "Shipped to {to}",
    "returned": "Returned by {frm} to {to}",
    "received": "Received by {to}",
}
_REASONS_ZH = {
    "misprint": "印刷错误",
    "overprint": "多印",
    "damaged": "损坏",
    "not_sold": "未销售",
    "stolen": "被盗",
    "recalled": "召回",
    "expired": "过期",
    "other": "其他原因",
}


def describe(step: JourneyStep, lang: str) -> str:
    """A step in plain words for the consumer (zh-CN by default, or English)."""
    words = _EN if lang == "en" else _ZH
    brand = "the brand" if lang == "en" else "品牌方"
    line = " ".join(x for x in (step.site, step.line) if x)
    where = line or ("the factory" if lang == "en" else "工厂")
    reason = step.reason or "other"
    if lang != "en":
        reason = _REASONS_ZH.get(reason, reason)
    key = step.kind
    if key == "packed" and step.level > 1:
        key = "packed_up"
    return words[key].format(
        where=where,
        reason=reason,
        to=step.distributor or brand,
        frm=step.from_distributor or brand,
    )
