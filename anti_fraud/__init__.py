"""Anti-fraud: verdicts and their signals, scan records, geolocation, blacklist, alerts and
flood control. Other packages use these names only."""

from flask import Blueprint

from anti_fraud.alerts import evaluate_alerts, list_alerts
from anti_fraud.diversion import (
    evaluate_diversion,
    list_diversion_alerts,
    locate_point,
    review_diversion_alert,
)
from anti_fraud.errors import RateLimitedError, ScanNotFoundError
from anti_fraud.notify import notify_alerts
from anti_fraud.rollups import (
    Refreshed,
    ScanFilter,
    ScanSeries,
    counterfeit_summary,
    diversion_by_distributor,
    refresh_scan_rollups,
    rollup_lag,
    scan_map,
    scan_series,
    scans_by_batch,
    unique_scanners,
)
from anti_fraud.services import (
    ScanOutcome,
    ScanRequest,
    add_to_blacklist,
    diversion_of,
    get_thresholds,
    lift_blacklist,
    list_blacklist,
    list_code_scans,
    located_of,
    note_invalid_scan,
    place_label,
    record_valid_scan,
    refine_location,
    update_thresholds,
)
from anti_fraud.verdicts import Thresholds


def api_blueprint() -> Blueprint:
    """The brand-facing anti-fraud API (mounted under /api/v1 by the console)."""
    from anti_fraud.views import api

    return api


__all__ = [
    "RateLimitedError",
    "Refreshed",
    "ScanFilter",
    "ScanNotFoundError",
    "ScanOutcome",
    "ScanRequest",
    "ScanSeries",
    "Thresholds",
    "add_to_blacklist",
    "api_blueprint",
    "counterfeit_summary",
    "diversion_by_distributor",
    "diversion_of",
    "evaluate_alerts",
    "evaluate_diversion",
    "get_thresholds",
    "lift_blacklist",
    "list_alerts",
    "list_blacklist",
    "list_code_scans",
    "list_diversion_alerts",
    "locate_point",
    "located_of",
    "note_invalid_scan",
    "notify_alerts",
    "place_label",
    "record_valid_scan",
    "refine_location",
    "refresh_scan_rollups",
    "review_diversion_alert",
    "rollup_lag",
    "scan_map",
    "scan_series",
    "scans_by_batch",
    "unique_scanners",
    "update_thresholds",
]
