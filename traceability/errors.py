"""Errors of the traceability domain: each names what is wrong and changes nothing."""

from __future__ import annotations

from core.errors import ConflictError, NotFoundError, ValidationFailedError


class CodeUnknownError(ValidationFailedError):
    """A code that is not one of this brand's codes (forged, foreign, or out of its batch)."""

    code = "code_unknown"


class DistributorNotFoundError(NotFoundError):
    code = "distributor_not_found"


class DistributorConflictError(ConflictError):
    code = "distributor_exists"


class ShipmentNotFoundError(NotFoundError):
    code = "shipment_not_found"


class ShipmentConflictError(ConflictError):
    code = "shipment_conflict"


class PackingConflictError(ConflictError):
    """A code already packed elsewhere, a cycle, or unpacking what is not packed."""

    code = "packing_conflict"


class NotActivatedError(ConflictError):
    """Shipping or packing codes that the line has not activated (or has deactivated)."""

    code = "not_activated"


class NotHeldError(ConflictError):
    """Shipping goods the sender does not hold."""

    code = "not_held"


class RegionUnknownError(ValidationFailedError):
    code = "region_unknown"
