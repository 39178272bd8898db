"""EPCIS 2.0 JSON-LD export: a code's history and a shipment as GS1 EPCIS events (DESIGN §6).

What maps to what (CBV 2.0 short names, as the EPCIS 2.0 JSON-LD context defines them):

* an activation covering the code: ObjectEvent ``ADD``, bizStep ``commissioning``, disposition
  ``active``, ilmd ``cbvmda:lotNumber``; readPoint the line, bizLocation the site (the batch's
  factory and line when the act names none);
* a deactivation: ObjectEvent ``DELETE``, bizStep ``decommissioning``, disposition ``inactive``
  (a code can be activated again, which is a new commissioning); a reason CBV names (damaged,
  stolen, recalled, expired) also goes into ``persistentDisposition``;
* a packing of the code, of a unit holding it (while it held it), or into the code: an
  AggregationEvent ``ADD`` bizStep ``packing`` per packing row (parentID, childEPCs); its
  unpacking: AggregationEvent ``DELETE`` bizStep ``unpacking``;
* a movement (:func:`traceability.shipments.movements_of`): ObjectEvent ``OBSERVE`` bizStep
  ``shipping``, disposition ``in_transit`` (``returned`` for a return), then bizStep
  ``receiving``, disposition ``in_progress``, once received. A code's document lists the unit
  that was shipped (the pallet that carried it; the aggregation events say what was inside), a
  shipment's document lists every unit and loose range, plus an AggregationEvent ``OBSERVE``
  per unit saying what it held at ship time. Both carry the delivery note (bizTransaction
  ``desadv``) and the sender and receiver as ``owning_party`` and ``possessing_party``.

Identifiers. An instance is a GS1 Digital Link URI on ``id.gs1.org`` for gs1 and gs1-digsig
batches (``/01/<GTIN-14>/21/<serial>``, the serial as printed in AI 21), and the printed short URL
with a lower-case host for short batches (``https://<scan host>/c/<TOKEN>``). A class (a loose
range too large to list) is ``/01/<GTIN-14>/10/<lot>`` or the batch under the brand's namespace.
Parties, sites, lines and delivery notes have no GLN in Yima, so they are HTTPS URIs under the
brand's namespace ``https://<scan host>/brands/<tenant id>/`` (identifiers, not pages), which the
schema accepts: it asks any URI of a party or a location. A code of a batch whose key is retired
can no longer be minted and is named ``.../batches/<batch id>/codes/<serial>`` instead.

Event IDs are ``urn:uuid:`` UUIDv5 of the source row and of the event's content, so exporting
twice gives the same IDs, and a code's view of a shipment (its pallet only) and the shipment's
full event, being different events, have different IDs. Times are shown in the brand's time zone.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

import codegen
from core.db import utcnow
from core.runtime import Runtime
from traceability.activation import SerialRange, activation_state
from traceability.codes import CodeRef
from traceability.errors import CodeUnknownError
from traceability.models import Activation, Packing, Shipment
from traceability.packing import IN_CHUNK, MAX_DEPTH
from traceability.shipments import Movement, get_shipment_or_raise, movements_of, shipment_contents

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
GS1_RESOLVER = "https://id.gs1.org"
MAX_LISTED_RANGE = 1_000  # a loose range up to this many serials is listed EPC by EPC
MAX_LISTED_EPCS = 10_000  # ... while a shipment's listed loose EPCs stay within this
# Deactivation reasons that are CBV dispositions too (the rest have no CBV word).
CBV_REASONS = frozenset({"damaged", "stolen", "recalled", "expired"})

_EVENT_IDS = uuid.UUID("5f0c7c1e-2b1a-5d7e-9a51-3f6f1d0e7c42")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FOREVER = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
# Events at the same instant are listed in the order things happen at the line and the dock.
_COMMISSION, _PACK, _UNPACK, _CONTENTS, _SHIP, _RECEIVE = range(6)


# --- identifiers ----------------------------------------------------------------------------


class _Names:
    """EPCIS identifiers of one brand's codes, classes, parties and places."""

    def __init__(self, session: Session, runtime: Runtime, *, tenant_id: int, scan_host: str):
        self.session = session
        self.runtime = runtime
        self.tenant_id = tenant_id
        self.host = scan_host.strip().lower()
        self.base = f"https://{self.host}/brands/{tenant_id}"
        self._batches: dict[int, tuple[Any, str | None]] = {}
        self._epcs: dict[CodeRef, str] = {}
        self._zone: dt.tzinfo | None = None

    def batch(self, batch_id: int) -> tuple[Any, str | None]:
        """The brand's batch and its product's GTIN; :class:`CodeUnknownError` otherwise."""
        if batch_id not in self._batches:
            batch = codegen.get_batch(self.session, tenant_id=self.tenant_id, batch_id=batch_id)
            if batch is None:
                raise CodeUnknownError(
                    f"batch {batch_id} is not a batch of this brand",
                    errors={"code": "not a code of this brand"},
                )
            product = codegen.get_product(
                self.session, tenant_id=self.tenant_id, product_id=batch.product_id
            )
            self._batches[batch_id] = (batch, product.gtin if product is not None else None)
        return self._batches[batch_id]

    def check(self, code: CodeRef) -> None:
        batch, _ = self.batch(code.batch_id)
        if not 1 <= code.serial <= batch.quantity:
            raise CodeUnknownError(
                f"batch {code.batch_id} has no serial {code.serial}",
                errors={"code": "not a code of this brand"},
            )

    def epc(self, code: CodeRef) -> str:
        if code not in self._epcs:
            self._epcs[code] = self._mint(code)
        return self._epcs[code]

    def _mint(self, code: CodeRef) -> str:
        batch, gtin = self.batch(code.batch_id)
        try:
            issued = codegen.code_for_serial(
                self.runtime,
                batch=batch,
                gtin=gtin,
                serial=code.serial,
                host=self.host,
                session=self.session,
            )
        except ValueError:  # a retired key mints nothing, not even a past code's token
            return f"{self.base}/batches/{code.batch_id}/codes/{code.serial}"
        if batch.url_form == "short":
            return f"https://{self.host}/c/{issued.code}"
        return f"{GS1_RESOLVER}/01/{gtin}/21/{issued.code}"

    def epc_class(self, batch_id: int) -> str:
        batch, gtin = self.batch(batch_id)
        if batch.url_form != "short" and gtin:
            return f"{GS1_RESOLVER}/01/{gtin}/10/{quote(batch.lot, safe='')}"
        return f"{self.base}/batches/{batch_id}"

    def party(self, distributor_id: int | None) -> str:
        return self.base if distributor_id is None else f"{self.base}/distributors/{distributor_id}"

    def site(self, site: str) -> str:
        return f"{self.base}/sites/{quote(site, safe='')}"

    def line(self, site: str, line: str) -> str:
        if site:
            return f"{self.site(site)}/lines/{quote(line, safe='')}"
        return f"{self.base}/lines/{quote(line, safe='')}"

    def delivery_note(self, reference: str) -> str:
        return f"{self.base}/delivery-notes/{quote(reference, safe='')}"

    def time(self, at: dt.datetime, batch_id: int) -> tuple[str, str]:
        """``eventTime`` in the brand's time zone, and that zone's offset then."""
        if self._zone is None:
            context = codegen.load_code_context(self.runtime, self.session, batch_id)
            try:
                self._zone = ZoneInfo(context.timezone if context else "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                self._zone = dt.UTC
        local = at.astimezone(self._zone)
        offset = local.strftime("%z")
        return local.isoformat(timespec="milliseconds"), f"{offset[:3]}:{offset[3:]}"


@dataclass(frozen=True)
class _Event:
    at: dt.datetime
    rank: int
    body: dict[str, Any]


def _event(
    names: _Names, *, kind: str, key: str, at: dt.datetime, batch_id: int, rank: int, **fields: Any
) -> _Event:
    """One event; its ID hashes where it comes from and everything it says."""
    time, offset = names.time(at, batch_id)
    body = {"eventTime": time, "eventTimeZoneOffset": offset, **fields}
    content = json.dumps(body, sort_keys=True, ensure_ascii=False)
    event_id = uuid.uuid5(_EVENT_IDS, f"{names.tenant_id}:{key}\n{content}")
    return _Event(at, rank, {"type": kind, "eventID": f"urn:uuid:{event_id}", **body})


def _document(events: Iterable[_Event]) -> dict[str, Any]:
    ordered = sorted(events, key=lambda e: (e.at, e.rank))
    return {
        "@context": [CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "epcisBody": {"eventList": [e.body for e in ordered]},
    }


# --- a code's history -----------------------------------------------------------------------


def code_document(
    session: Session, runtime: Runtime, *, tenant_id: int, code: CodeRef, scan_host: str
) -> dict[str, Any]:
    """An EPCISDocument of every event that concerns ``code`` (its activations, packings of it,
    of the units holding it and into it, and its movements), oldest first.

    :class:`CodeUnknownError` when the code is not one of ``tenant_id``'s codes.
    """
    names = _Names(session, runtime, tenant_id=tenant_id, scan_host=scan_host)
    names.check(code)
    events = [
        *_activation_events(session, names, code),
        *_packing_events(session, names, code),
        *_movement_events(session, names, code),
    ]
    return _document(events)


def _activation_events(session: Session, names: _Names, code: CodeRef) -> list[_Event]:
    """Acts whose recorded range covers the code, and the act that governs it now.

    An act's row keeps the span of its first batch only (a case act may span several batches
    and leave gaps), so the act currently governing the code is read from the span map too.
    """
    acts = {
        a.id: a
        for a in session.scalars(
            select(Activation).where(
                Activation.tenant_id == names.tenant_id,
                Activation.batch_id == code.batch_id,
                Activation.first_serial <= code.serial,
                Activation.last_serial >= code.serial,
            )
        )
    }
    state = activation_state(session, code)
    if state is not None and state.activation_id not in acts:
        current = session.get(Activation, state.activation_id)
        if current is not None and current.tenant_id == names.tenant_id:
            acts[current.id] = current
    batch, _ = names.batch(code.batch_id)
    epc = names.epc(code)
    out: list[_Event] = []
    for act in acts.values():
        site = act.site or batch.factory
        line = act.line or batch.line
        where: dict[str, Any] = {}
        if line or site:
            where["readPoint"] = {"id": names.line(site, line) if line else names.site(site)}
        if site:
            where["bizLocation"] = {"id": names.site(site)}
        if act.action == "activate":
            out.append(
                _event(
                    names,
                    kind="ObjectEvent",
                    key=f"activation:{act.id}",
                    at=act.at,
                    batch_id=code.batch_id,
                    rank=_COMMISSION,
                    epcList=[epc],
                    action="ADD",
                    bizStep="commissioning",
                    disposition="active",
                    **where,
                    ilmd={"cbvmda:lotNumber": batch.lot},
                )
            )
        else:
            reason = act.reason
            persistent = (
                {"persistentDisposition": {"set": [reason]}} if reason in CBV_REASONS else {}
            )
            out.append(
                _event(
                    names,
                    kind="ObjectEvent",
                    key=f"activation:{act.id}",
                    at=act.at,
                    batch_id=code.batch_id,
                    rank=_COMMISSION,
                    epcList=[epc],
                    action="DELETE",
                    bizStep="decommissioning",
                    disposition="inactive",
                    **persistent,
                    **where,
                )
            )
    return out


@dataclass(frozen=True)
class _PackRow:
    id: int
    parent: CodeRef
    child: CodeRef
    packed_at: dt.datetime
    unpacked_at: dt.datetime | None
    line: str


_PACK_COLUMNS = (
    Packing.id,
    Packing.parent_batch_id,
    Packing.parent_serial,
    Packing.child_batch_id,
    Packing.child_serial,
    Packing.packed_at,
    Packing.unpacked_at,
    Packing.line,
)


def _pack_row(row: Any) -> _PackRow:
    rid, pb, ps, cb, cs, packed_at, unpacked_at, line = row
    return _PackRow(rid, CodeRef(pb, ps), CodeRef(cb, cs), packed_at, unpacked_at, line)


def _rows_holding(session: Session, tenant_id: int, code: CodeRef) -> dict[CodeRef, list[_PackRow]]:
    """Every packing row of the code and of every unit that ever held it, by child."""
    by_child: dict[CodeRef, list[_PackRow]] = defaultdict(list)
    known: set[CodeRef] = set()
    frontier = {code}
    for _ in range(MAX_DEPTH + 1):
        frontier -= known
        if not frontier:
            break
        known |= frontier
        keys = sorted(frontier)
        frontier = set()
        for i in range(0, len(keys), IN_CHUNK):
            part = keys[i : i + IN_CHUNK]
            rows = session.execute(
                select(*_PACK_COLUMNS).where(
                    Packing.tenant_id == tenant_id,
                    tuple_(Packing.child_batch_id, Packing.child_serial).in_(
                        [(k.batch_id, k.serial) for k in part]
                    ),
                )
            ).all()
            for row in rows:
                packed = _pack_row(row)
                by_child[packed.child].append(packed)
                frontier.add(packed.parent)
    return by_child


def _packing_events(session: Session, names: _Names, code: CodeRef) -> list[_Event]:
    """Packings into and out of every unit while it held the code, and the code's contents."""
    by_child = _rows_holding(session, names.tenant_id, code)
    packed: dict[int, _PackRow] = {}
    unpacked: dict[int, _PackRow] = {}
    stack = [(code, _EPOCH, _FOREVER, 0)]
    while stack:
        node, lo, hi, depth = stack.pop()
        if depth >= MAX_DEPTH:
            continue
        for row in by_child.get(node, ()):
            end = row.unpacked_at or _FOREVER
            a, b = max(lo, row.packed_at), min(hi, end)
            if a >= b:  # the unit held the code neither before nor after this packing
                continue
            packed[row.id] = row
            if row.unpacked_at is not None and lo < row.unpacked_at <= hi:
                unpacked[row.id] = row
            stack.append((row.parent, a, b, depth + 1))
    contents = session.execute(
        select(*_PACK_COLUMNS).where(
            Packing.tenant_id == names.tenant_id,
            Packing.parent_batch_id == code.batch_id,
            Packing.parent_serial == code.serial,
        )
    ).all()
    for raw in contents:
        row = _pack_row(raw)
        packed[row.id] = row
        if row.unpacked_at is not None:
            unpacked[row.id] = row
    out: list[_Event] = []
    for row in packed.values():
        where = {"readPoint": {"id": names.line("", row.line)}} if row.line else {}
        out.append(
            _event(
                names,
                kind="AggregationEvent",
                key=f"packing:{row.id}:packed",
                at=row.packed_at,
                batch_id=code.batch_id,
                rank=_PACK,
                parentID=names.epc(row.parent),
                childEPCs=[names.epc(row.child)],
                action="ADD",
                bizStep="packing",
                **where,
            )
        )
    for row in unpacked.values():
        assert row.unpacked_at is not None
        out.append(
            _event(
                names,
                kind="AggregationEvent",
                key=f"packing:{row.id}:unpacked",
                at=row.unpacked_at,
                batch_id=code.batch_id,
                rank=_UNPACK,
                parentID=names.epc(row.parent),
                childEPCs=[names.epc(row.child)],
                action="DELETE",
                bizStep="unpacking",
            )
        )
    return out


def _movement_events(session: Session, names: _Names, code: CodeRef) -> list[_Event]:
    moves = movements_of(session, code)
    ids = [m.shipment_id for m in moves]
    mine = set(
        session.scalars(
            select(Shipment.id).where(Shipment.tenant_id == names.tenant_id, Shipment.id.in_(ids))
        )
    )
    out: list[_Event] = []
    for m in moves:
        if m.shipment_id in mine:
            shipped = names.epc(m.via if m.via is not None else code)
            out.extend(_shipment_events(names, m, code.batch_id, {"epcList": [shipped]}, key=""))
    return out


def _shipment_events(
    names: _Names, m: Movement, batch_id: int, what: dict[str, Any], *, key: str
) -> list[_Event]:
    """The shipping event of a movement and, once received, its receiving event."""
    parties: dict[str, Any] = {
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": names.delivery_note(m.reference)}
        ],
        "sourceList": [
            {"type": kind, "source": names.party(m.from_distributor_id)}
            for kind in ("owning_party", "possessing_party")
        ],
        "destinationList": [
            {"type": kind, "destination": names.party(m.to_distributor_id)}
            for kind in ("owning_party", "possessing_party")
        ],
    }
    out = [
        _event(
            names,
            kind="ObjectEvent",
            key=f"shipment:{m.shipment_id}:shipped{key}",
            at=m.shipped_at,
            batch_id=batch_id,
            rank=_SHIP,
            **what,
            action="OBSERVE",
            bizStep="shipping",
            disposition="returned" if m.kind == "return" else "in_transit",
            **parties,
        )
    ]
    if m.received_at is not None:
        out.append(
            _event(
                names,
                kind="ObjectEvent",
                key=f"shipment:{m.shipment_id}:received{key}",
                at=m.received_at,
                batch_id=batch_id,
                rank=_RECEIVE,
                **what,
                action="OBSERVE",
                bizStep="receiving",
                disposition="in_progress",
                **parties,
            )
        )
    return out


# --- a shipment -----------------------------------------------------------------------------


def shipment_document(
    session: Session, runtime: Runtime, *, tenant_id: int, shipment_id: int, scan_host: str
) -> dict[str, Any]:
    """An EPCISDocument of one shipment: what each unit held at ship time, the shipping event
    and, once received, the receiving event.

    Units are listed EPC by EPC; a loose range of at most :data:`MAX_LISTED_RANGE` serials too
    (while the listed loose EPCs stay within :data:`MAX_LISTED_EPCS`), larger ones are counted
    per class in ``quantityList``. :class:`ShipmentNotFoundError` for another brand's shipment.
    """
    shipment = get_shipment_or_raise(session, tenant_id=tenant_id, shipment_id=shipment_id)
    names = _Names(session, runtime, tenant_id=tenant_id, scan_host=scan_host)
    units, ranges = shipment_contents(session, shipment)
    units.sort()
    ranges.sort(key=lambda r: (r.batch_id, r.first))
    anchor = units[0].batch_id if units else ranges[0].batch_id
    events: list[_Event] = []
    held = _contents_at(session, tenant_id=tenant_id, units=units, at=shipment.shipped_at)
    for parent, children in held.items():
        events.append(
            _event(
                names,
                kind="AggregationEvent",
                key=f"shipment:{shipment.id}:contents:{parent.batch_id}:{parent.serial}",
                at=shipment.shipped_at,
                batch_id=anchor,
                rank=_CONTENTS,
                parentID=names.epc(parent),
                childEPCs=[names.epc(c) for c in children],
                action="OBSERVE",
                bizStep="shipping",
            )
        )
    move = Movement(
        shipment_id=shipment.id,
        reference=shipment.reference,
        kind=shipment.kind,
        from_distributor_id=shipment.from_distributor_id,
        to_distributor_id=shipment.to_distributor_id,
        status=shipment.status,
        shipped_at=shipment.shipped_at,
        received_at=shipment.received_at,
        via=None,
    )
    events.extend(_shipment_events(names, move, anchor, _listing(names, units, ranges), key=":all"))
    return _document(events)


def _listing(
    names: _Names, units: Sequence[CodeRef], ranges: Sequence[SerialRange]
) -> dict[str, Any]:
    epcs = [names.epc(u) for u in units]
    budget = MAX_LISTED_EPCS
    counted: dict[str, int] = {}
    for r in ranges:
        if r.count <= MAX_LISTED_RANGE and r.count <= budget:
            epcs.extend(names.epc(CodeRef(r.batch_id, s)) for s in range(r.first, r.last + 1))
            budget -= r.count
        else:
            epc_class = names.epc_class(r.batch_id)
            counted[epc_class] = counted.get(epc_class, 0) + r.count
    what: dict[str, Any] = {}
    if epcs:
        what["epcList"] = list(dict.fromkeys(epcs))
    if counted:
        what["quantityList"] = [{"epcClass": c, "quantity": n} for c, n in counted.items()]
    return what


def _contents_at(
    session: Session, *, tenant_id: int, units: Sequence[CodeRef], at: dt.datetime
) -> dict[CodeRef, list[CodeRef]]:
    """What each unit (and each unit inside it, any depth) held directly at ``at``, top first."""
    held: dict[CodeRef, list[CodeRef]] = {}
    seen = set(units)
    frontier = list(units)
    for _ in range(MAX_DEPTH + 1):
        if not frontier:
            break
        found: dict[CodeRef, list[CodeRef]] = defaultdict(list)
        for i in range(0, len(frontier), IN_CHUNK):
            part = frontier[i : i + IN_CHUNK]
            rows = session.execute(
                select(
                    Packing.parent_batch_id,
                    Packing.parent_serial,
                    Packing.child_batch_id,
                    Packing.child_serial,
                ).where(
                    Packing.tenant_id == tenant_id,
                    tuple_(Packing.parent_batch_id, Packing.parent_serial).in_(
                        [(k.batch_id, k.serial) for k in part]
                    ),
                    Packing.packed_at <= at,
                    or_(Packing.unpacked_at.is_(None), Packing.unpacked_at > at),
                )
            ).all()
            for pb, ps, cb, cs in rows:
                found[CodeRef(pb, ps)].append(CodeRef(cb, cs))
        frontier = []
        for parent in sorted(found):
            children = sorted(set(found[parent]))
            held[parent] = children
            fresh = [c for c in children if c not in seen]
            seen.update(fresh)
            frontier.extend(fresh)
    return held
