"""Errors of the members domain."""

from __future__ import annotations

from core.errors import ConflictError, NotFoundError


class InsufficientPointsError(ConflictError):
    code = "insufficient_points"


class LedgerKeyConflictError(ConflictError):
    """A business key already names a different entry (a caller reused a key)."""

    code = "ledger_key_conflict"


class MemberNotFoundError(NotFoundError):
    code = "member_not_found"
