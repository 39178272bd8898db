"""Errors of the code generation domain."""

from __future__ import annotations

from core.errors import ConflictError, NotFoundError, ValidationFailedError, YimaError


class ProductNotFoundError(NotFoundError):
    code = "product_not_found"


class BatchNotFoundError(NotFoundError):
    code = "batch_not_found"


class ExportNotFoundError(NotFoundError):
    code = "export_not_found"


class ProductConflictError(ConflictError):
    code = "product_exists"


class BatchConflictError(ConflictError):
    code = "batch_exists"


class ExportNotReadyError(ConflictError):
    code = "export_not_ready"


class BatchRevokedError(ConflictError):
    code = "batch_revoked"


class NoCodeKeyError(YimaError):
    status = 409
    code = "no_code_key"
    title = "The tenant has no current code key"


__all__ = [
    "BatchConflictError",
    "BatchNotFoundError",
    "BatchRevokedError",
    "ExportNotFoundError",
    "ExportNotReadyError",
    "NoCodeKeyError",
    "ProductConflictError",
    "ProductNotFoundError",
    "ValidationFailedError",
]
