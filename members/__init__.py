"""Members: identity (phone sign-in, profile, erasure), the points ledger (earn, spend, adjust,
reverse, expire, pending → active) and the scan's entry into it, tiers and growth value,
redemption, engagement (check-in, birthday, referral), tags and RFM segments.

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
from members.services import (
    ScanReward,
    create_member,
    credit_scan_points,
    get_member_or_raise,
    reward_scan,
    scan_key,
)
from members.sessions import SignedIn, member_of_token
from members.settings import Programme, get_programme, update_programme
from members.views import api_blueprint, consumer_blueprint
from members.views._common import MEMBER_COOKIE, signed_in_member

__all__ = [
    "MEMBER_COOKIE",
    "Applied",
    "Expiry",
    "InsufficientPointsError",
    "LedgerKeyConflictError",
    "MemberNotFoundError",
    "Points",
    "Programme",
    "ScanReward",
    "SignedIn",
    "activate_due",
    "adjust",
    "api_blueprint",
    "balance_of",
    "check_balances",
    "consumer_blueprint",
    "create_member",
    "credit_scan_points",
    "earn",
    "entries_of",
    "expire_all",
    "expire_due",
    "get_member_or_raise",
    "get_programme",
    "member_of_token",
    "reverse",
    "reward_scan",
    "scan_key",
    "signed_in_member",
    "spend",
    "update_programme",
]
