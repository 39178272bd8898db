"""Errors of the anti-fraud domain."""

from __future__ import annotations

from core.errors import NotFoundError, YimaError


class ScanNotFoundError(NotFoundError):
    code = "scan_not_found"


class BlacklistEntryNotFoundError(NotFoundError):
    code = "blacklist_entry_not_found"


class DiversionAlertNotFoundError(NotFoundError):
    code = "diversion_alert_not_found"


class RateLimitedError(YimaError):
    """Too many bad scans from one IP or device; ``retry_after`` in seconds."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many invalid scans; retry in {retry_after} s")
        self.retry_after = retry_after
