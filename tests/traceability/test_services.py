"""Traceability services: activation ranges, packing, shipments, journeys and the scan trail."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

import codegen
import traceability
from core.runtime import Runtime
from tests.factories import Brand, make_brand
from traceability.activation import SerialRange
from traceability.errors import NotActivatedError, NotHeldError, PackingConflictError
from traceability.models import ActivationSpan, ShipmentRange, ShipmentUnit

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def brand(runtime: Runtime) -> Brand:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10_000)


def ref(brand: Brand, serial: int) -> traceability.CodeRef:
    return traceability.CodeRef(brand.batch_id, serial)


def activate(runtime: Runtime, brand: Brand, first: int, last: int, **kw: object) -> None:
    with runtime.db.unit_of_work() as session:
        traceability.record_activation(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            action=str(kw.pop("action", "activate")),
            scope="range",
            ranges=[SerialRange(brand.batch_id, first, last)],
            operator="line-1 operator",
            line="L1",
            site="Hangzhou plant",
            at=T0 - dt.timedelta(hours=1),
            **kw,  # type: ignore[arg-type]
        )


def state(runtime: Runtime, brand: Brand, serial: int) -> bool | None:
    with runtime.db.read_only() as session:
        found = traceability.activation_state(session, ref(brand, serial))
        return None if found is None else found.active


def test_ranges_paint_over_each_other_without_a_row_per_code(
    runtime: Runtime, brand: Brand
) -> None:
    activate(runtime, brand, 1, 10_000)
    activate(runtime, brand, 101, 200, action="deactivate", reason="misprint")
    activate(runtime, brand, 150, 160)
    assert [
        state(runtime, brand, s) for s in (1, 100, 101, 149, 150, 160, 161, 200, 201, 10_000)
    ] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    with runtime.db.read_only() as session:
        spans = session.execute(
            select(ActivationSpan.first_serial, ActivationSpan.last_serial, ActivationSpan.active)
            .where(ActivationSpan.batch_id == brand.batch_id)
            .order_by(ActivationSpan.first_serial)
        ).all()
    # Five spans describe ten thousand codes, and they never overlap.
    assert [tuple(s) for s in spans] == [
        (1, 100, True),
        (101, 149, False),
        (150, 160, True),
        (161, 200, False),
        (201, 10_000, True),
    ]


def test_a_code_never_touched_by_the_line_has_no_state(runtime: Runtime, brand: Brand) -> None:
    activate(runtime, brand, 500, 600)
    assert state(runtime, brand, 499) is None and state(runtime, brand, 601) is None


def test_packing_is_all_or_nothing_and_one_parent_at_a_time(runtime: Runtime, brand: Brand) -> None:
    case_a, case_b = ref(brand, 9_001), ref(brand, 9_002)
    with runtime.db.unit_of_work() as session:
        done = traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(case_a, ref(brand, s)) for s in range(1, 25)],
            operator="plc",
            line="L1",
        )
    assert (done.packed, done.already_packed) == (24, 0)
    with runtime.db.unit_of_work() as session:  # the line controller retries: nothing to do
        again = traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(case_a, ref(brand, s)) for s in range(1, 25)],
            operator="plc",
        )
    assert (again.packed, again.already_packed) == (0, 24)
    with pytest.raises(PackingConflictError), runtime.db.unit_of_work() as session:
        traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(case_b, ref(brand, 30)), (case_b, ref(brand, 5))],
            operator="plc",
        )
    with runtime.db.read_only() as session:
        # The conflicting upload changed nothing: item 30 is in no case.
        assert traceability.contents_of(session, tenant_id=brand.tenant_id, parents=[case_b]) == []
        assert (
            len(traceability.contents_of(session, tenant_id=brand.tenant_id, parents=[case_a]))
            == 24
        )
    with pytest.raises(PackingConflictError), runtime.db.unit_of_work() as session:
        traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(ref(brand, 5), case_a)],
            operator="plc",  # the case into its own item
        )


def test_shipping_a_pallet_writes_one_row_and_reaches_every_item(
    runtime: Runtime, brand: Brand
) -> None:
    activate(runtime, brand, 1, 10_000)
    pallet = ref(brand, 9_999)
    with runtime.db.unit_of_work() as session:
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="ZJ-01",
            name="浙江总代",
            level="provincial",
            regions=["CN-ZJ"],
        )
        dealer = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="HZ-07",
            name="杭州西湖经销商",
            level="dealer",
            parent_id=east.id,
        )
        ids = (east.id, dealer.id)
        for c in range(10):
            case = ref(brand, 9_000 + c)
            traceability.pack(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                pairs=[(case, ref(brand, c * 24 + i)) for i in range(1, 25)],
                operator="plc",
                at=T0,
            )
            traceability.pack(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                pairs=[(pallet, case)],
                operator="plc",
                at=T0,
            )
        shipment = traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-1",
            to_distributor_id=east.id,
            units=[pallet],
            operator="warehouse",
            at=T0 + dt.timedelta(hours=1),
        )
        assert shipment.code_count == 1 + 10 + 240
        assert session.scalar(select(func.count()).select_from(ShipmentUnit)) == 1
    with runtime.db.unit_of_work() as session:
        trail = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 17)
        )
    assert trail.active and trail.holder_id == ids[0] and trail.regions == ("CN-ZJ",)
    assert [s.kind for s in trail.steps] == ["activated", "packed", "packed", "shipped"]
    # The provincial distributor breaks the pallet and ships one case on to its dealer.
    with runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-2",
            from_distributor_id=ids[0],
            to_distributor_id=ids[1],
            units=[ref(brand, 9_000)],
            operator="zj-warehouse",
            at=T0 + dt.timedelta(days=2),
        )
    with runtime.db.unit_of_work() as session:
        moved = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 17)
        )
        stayed = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 30)
        )
    # The dealer has no regions of its own: it sells where its distributor may.
    assert moved.holder_id == ids[1] and moved.regions == ("CN-ZJ",)
    assert stayed.holder_id == ids[0]
    # The brand no longer holds the pallet: shipping it again is refused.
    with pytest.raises(NotHeldError), runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-3",
            to_distributor_id=ids[1],
            units=[pallet],
            operator="warehouse",
        )


def test_shipping_deactivated_or_unactivated_codes_is_refused(
    runtime: Runtime, brand: Brand
) -> None:
    activate(runtime, brand, 1, 100)
    activate(runtime, brand, 50, 50, action="deactivate", reason="damaged")
    with runtime.db.unit_of_work() as session:
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="E",
            name="East",
            level="national",
            regions=["CN"],
        )
        east_id = east.id
    with pytest.raises(NotActivatedError), runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="R1",
            to_distributor_id=east_id,
            ranges=[SerialRange(brand.batch_id, 1, 100)],
            operator="w",
        )
    with runtime.db.unit_of_work() as session:
        traceability.update_trace_settings(
            session, runtime, tenant_id=brand.tenant_id, require_activation=True
        )
    with pytest.raises(NotActivatedError), runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="R2",
            to_distributor_id=east_id,
            ranges=[SerialRange(brand.batch_id, 90, 120)],
            operator="w",
        )
    with runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="R3",
            to_distributor_id=east_id,
            ranges=[SerialRange(brand.batch_id, 51, 100)],
            operator="w",
        )
        assert session.scalar(select(func.count()).select_from(ShipmentRange)) == 1
    with runtime.db.unit_of_work() as session:
        shipped = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 60)
        )
        never = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 500)
        )
        withdrawn = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 50)
        )
    assert shipped.holder_id == east_id and shipped.active
    assert not never.active and never.deactivated_reason is None
    assert not withdrawn.active and withdrawn.deactivated_reason == "damaged"


def test_a_brand_without_traceability_costs_a_scan_no_query(runtime: Runtime, brand: Brand) -> None:
    with runtime.db.unit_of_work() as session:
        codegen.get_batch_or_raise(session, tenant_id=brand.tenant_id, batch_id=brand.batch_id)
        trail = traceability.code_trail(
            runtime, session, tenant_id=brand.tenant_id, code=ref(brand, 1)
        )
    assert trail.active and trail.steps == () and trail.holder_id is None
