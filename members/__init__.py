"""Members: the points ledger (earn, spend, adjust, reverse, expire, pending → active) and the
scan's entry into it. Identity, tiers, redemption and segments are still to come.

Other packages use these names only.
"""

from members.errors import InsufficientPointsError, LedgerKeyConflictError, MemberNotFoundError
from members.ledger import (
    Applied,
    Expiry,
    Points,
    activate_due,
    adjust,
    balance_of,
    check_balances,
    earn,
    entries_of,
    expire_all,
    expire_due,
    reverse,
    spend,
)
from members.services import create_member, credit_scan_points, get_member_or_raise, scan_key

__all__ = [
    "Applied",
    "Expiry",
    "InsufficientPointsError",
    "LedgerKeyConflictError",
    "MemberNotFoundError",
    "Points",
    "activate_due",
    "adjust",
    "balance_of",
    "check_balances",
    "create_member",
    "credit_scan_points",
    "earn",
    "entries_of",
    "expire_all",
    "expire_due",
    "get_member_or_raise",
    "reverse",
    "scan_key",
    "spend",
]
