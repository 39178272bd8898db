"""Errors of the members domain."""

from __future__ import annotations

from core.errors import ConflictError, NotFoundError, ValidationFailedError, YimaError


class InsufficientPointsError(ConflictError):
    code = "insufficient_points"


class LedgerKeyConflictError(ConflictError):
    """A business key already names a different entry (a caller reused a key)."""

    code = "ledger_key_conflict"


class MemberNotFoundError(NotFoundError):
    code = "member_not_found"


class BrandNotFoundError(NotFoundError):
    code = "brand_not_found"


class MemberErasedError(ConflictError):
    """The member's personal data was erased: no phone to show, nobody to credit, tag or export."""

    code = "member_erased"


class OtpInvalidError(YimaError):
    """The code is wrong, expired, superseded, used, or has had too many wrong guesses."""

    status = 400
    code = "otp_invalid"
    title = "The code is not valid"


class OtpRateLimitedError(YimaError):
    """Too many codes asked for (or checked); ``retry_after`` in seconds."""

    status = 429
    code = "otp_rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AlreadyCheckedInError(ConflictError):
    code = "already_checked_in"


class TierNotFoundError(NotFoundError):
    code = "tier_not_found"


class TierInUseError(ConflictError):
    """Members hold the tier: it cannot be deleted."""

    code = "tier_in_use"


class CatalogueItemNotFoundError(NotFoundError):
    code = "item_not_found"


class NotOnSaleError(ConflictError):
    code = "not_on_sale"


class TierTooLowError(ConflictError):
    code = "tier_too_low"


class SoldOutError(ConflictError):
    code = "sold_out"


class LimitReachedError(ConflictError):
    code = "limit_reached"


class StockUnlimitedError(ConflictError):
    code = "stock_unlimited"


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"


class ShippingRequiredError(ValidationFailedError):
    code = "shipping_required"


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderTransitionError(ConflictError):
    code = "illegal_transition"


class CouponNotFoundError(NotFoundError):
    code = "coupon_not_found"


class CouponUsedError(ConflictError):
    code = "coupon_used"


class CouponVoidError(ConflictError):
    code = "coupon_void"


class CouponExpiredError(ConflictError):
    code = "coupon_expired"


class CouponMinimumOrderError(ValidationFailedError):
    code = "coupon_min_order"


class TagNotFoundError(NotFoundError):
    code = "tag_not_found"


class TagNameTakenError(ConflictError):
    code = "tag_name_taken"


class TagNotManualError(ConflictError):
    """An automatic tag is set by its rule only: it cannot be put on or taken off by hand."""

    code = "tag_not_manual"
