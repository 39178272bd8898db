"""The consumer-facing scan service: scan pages and the scan orchestrator."""

from scan_service.app import create_app
from scan_service.orchestrator import ScanAnswer, scan

__all__ = ["ScanAnswer", "create_app", "scan"]
