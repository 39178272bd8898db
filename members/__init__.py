"""Members: identity (phone sign-in, profile, erasure), the points ledger (earn, spend, adjust,
reverse, expire, pending → active) and the scan's entry into it, tiers and growth value,
redemption, engagement (check-in, birthday, referral), tags and RFM segments.

Other packages use these names only.
"""

from members.catalogue import check_shipping, grant_coupon, redeem, use_coupon
from members.directory import member_profile
from members.engagement import check_in, grant_all_birthday_points, reward_referral
from members.erasure import erase_member, on_erasure
from members.errors import InsufficientPointsError, LedgerKeyConflictError, MemberNotFoundError
from members.identity import enrol_member, get_member_by_phone
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
    open_points,
    reverse,
    spend,
)
from members.member360 import member_360
from members.otp import (
    LogSmsSender,
    RecordingSmsSender,
    SmsSender,
    send_code,
    sign_in,
    use_sms_sender,
)
from members.rfm import compute_rfm, members_in, rfm_of, segment_summary
from members.rollups import expiring_points, member_days, refresh_member_rollups
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
from members.tags import evaluate_tags, tags_of
from members.tiers import add_growth, check_upgrade, review_all, scan_multiplier, tier_benefits
from members.views import api_blueprint, consumer_blueprint
from members.views._common import MEMBER_COOKIE, current_member, member_token, signed_in_member

__all__ = [
    "MEMBER_COOKIE",
    "Applied",
    "Expiry",
    "InsufficientPointsError",
    "LedgerKeyConflictError",
    "LogSmsSender",
    "MemberNotFoundError",
    "Points",
    "Programme",
    "RecordingSmsSender",
    "ScanReward",
    "SignedIn",
    "SmsSender",
    "activate_due",
    "add_growth",
    "adjust",
    "api_blueprint",
    "balance_of",
    "check_balances",
    "check_in",
    "check_shipping",
    "check_upgrade",
    "compute_rfm",
    "consumer_blueprint",
    "create_member",
    "credit_scan_points",
    "current_member",
    "earn",
    "enrol_member",
    "entries_of",
    "erase_member",
    "evaluate_tags",
    "expire_all",
    "expire_due",
    "expiring_points",
    "get_member_by_phone",
    "get_member_or_raise",
    "get_programme",
    "grant_all_birthday_points",
    "grant_coupon",
    "member_360",
    "member_days",
    "member_of_token",
    "member_profile",
    "member_token",
    "members_in",
    "on_erasure",
    "open_points",
    "redeem",
    "refresh_member_rollups",
    "reverse",
    "review_all",
    "reward_referral",
    "reward_scan",
    "rfm_of",
    "scan_key",
    "scan_multiplier",
    "segment_summary",
    "send_code",
    "sign_in",
    "signed_in_member",
    "spend",
    "tags_of",
    "tier_benefits",
    "update_programme",
    "use_coupon",
    "use_sms_sender",
]
