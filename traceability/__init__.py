"""Traceability and anti-diversion: activation at the line, packing, distributors and their
sales regions, shipments and receipts, a code's journey, EPCIS 2.0 export.

Other packages use these names only.
"""

from flask import Blueprint

from traceability.activation import (
    SerialRange,
    activate_case,
    activation_state,
    compress,
    list_activations,
    record_activation,
    roll_range,
)
from traceability.codes import CodeRef, resolve_code, resolve_codes
from traceability.coverage import batch_coverage
from traceability.distributors import (
    authorised_regions,
    bind_api_key,
    create_distributor,
    distributor_of_api_key,
    distributor_of_principal,
    get_distributor,
    get_distributor_or_raise,
    issue_distributor_key,
    list_distributors,
    update_distributor,
)
from traceability.journey import CodeTrail, JourneyStep, code_trail, describe, journey_steps
from traceability.packing import PackResult, contents_of, pack, unpack
from traceability.regions import (
    Located,
    Region,
    RegionCheck,
    parse_region,
    province_iso,
    region_check,
    region_of_code,
)
from traceability.settings import TraceConfig, get_trace_config, update_trace_settings
from traceability.shipments import (
    Movement,
    get_shipment_or_raise,
    list_shipments,
    movements_of,
    receipts_outside,
    receive,
    ship,
)


def api_blueprint() -> Blueprint:
    """The traceability API blueprint (mounted under /api/v1 by the console)."""
    from traceability.views import api

    return api


__all__ = [
    "CodeRef",
    "CodeTrail",
    "JourneyStep",
    "Located",
    "Movement",
    "PackResult",
    "Region",
    "RegionCheck",
    "SerialRange",
    "TraceConfig",
    "activate_case",
    "activation_state",
    "api_blueprint",
    "authorised_regions",
    "batch_coverage",
    "bind_api_key",
    "code_trail",
    "compress",
    "contents_of",
    "create_distributor",
    "describe",
    "distributor_of_api_key",
    "distributor_of_principal",
    "get_distributor",
    "get_distributor_or_raise",
    "get_shipment_or_raise",
    "get_trace_config",
    "issue_distributor_key",
    "journey_steps",
    "list_activations",
    "list_distributors",
    "list_shipments",
    "movements_of",
    "pack",
    "parse_region",
    "province_iso",
    "receipts_outside",
    "receive",
    "record_activation",
    "region_check",
    "region_of_code",
    "resolve_code",
    "resolve_codes",
    "roll_range",
    "ship",
    "unpack",
    "update_distributor",
    "update_trace_settings",
]
