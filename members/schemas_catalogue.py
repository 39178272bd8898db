"""Request and response shapes of redemption: catalogue items, orders, coupons.

Types and bounds here; the rules between fields (face value only for coupons, sale window
in order...) are checked by the service (``members.catalogue.check_item``) on the whole item.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_INT = 2**31 - 1
Kind = Literal["goods", "coupon", "cash_deduction"]
OrderStatus = Literal["placed", "shipped", "delivered", "completed", "cancelled"]
CouponStatus = Literal["unused", "used", "expired", "void"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- catalogue items (console) -----------------------------------------------------------------


class ItemFields(Strict):
    name_en: str | None = Field(default=None, max_length=100)
    description: str = Field(default="", max_length=2000)
    image_url: str | None = Field(default=None, max_length=500)
    per_member_limit: int | None = Field(default=None, ge=1, le=MAX_INT, description="null: none")
    min_tier_rank: int = Field(default=0, ge=0, le=32_767, description="0: every member")
    face_value_fen: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="coupons and cash deductions only"
    )
    min_order_fen: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="a coupon's minimum order (满减), fen"
    )
    coupon_valid_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="coupons: valid to the end of the N-th day (brand's timezone); default 30",
    )
    on_sale_from: dt.datetime | None = None
    on_sale_until: dt.datetime | None = None
    active: bool = True


class ItemIn(ItemFields):
    kind: Kind
    name: str = Field(min_length=1, max_length=100)
    points_cost: int = Field(ge=1, le=1_000_000)
    stock: int | None = Field(default=None, ge=0, le=MAX_INT, description="null: unlimited")


class ItemPatch(Strict):
    """Any of the fields; ``kind`` and ``stock`` cannot change here (stock: POST .../stock)."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    name_en: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    image_url: str | None = Field(default=None, max_length=500)
    points_cost: int | None = Field(default=None, ge=1, le=1_000_000)
    per_member_limit: int | None = Field(default=None, ge=1, le=MAX_INT)
    min_tier_rank: int | None = Field(default=None, ge=0, le=32_767)
    face_value_fen: int | None = Field(default=None, ge=1, le=MAX_INT)
    min_order_fen: int | None = Field(default=None, ge=1, le=MAX_INT)
    coupon_valid_days: int | None = Field(default=None, ge=1, le=3650)
    on_sale_from: dt.datetime | None = None
    on_sale_until: dt.datetime | None = None
    active: bool | None = None


class StockIn(Strict):
    add: int = Field(ge=-MAX_INT, le=MAX_INT, description="units to add (negative: remove)")


class ItemOut(BaseModel):
    id: int
    kind: str
    name: str
    name_en: str | None
    description: str
    image_url: str | None
    points_cost: int
    stock: int | None
    per_member_limit: int | None
    min_tier_rank: int
    face_value_fen: int | None
    min_order_fen: int | None
    coupon_valid_days: int | None
    on_sale_from: dt.datetime | None
    on_sale_until: dt.datetime | None
    active: bool
    created_at: dt.datetime


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_after: int | None


# --- the consumer's catalogue ------------------------------------------------------------------


class OfferOut(BaseModel):
    id: int
    kind: str
    name: str
    name_en: str | None
    description: str
    image_url: str | None
    points_cost: int
    stock: int | None = Field(description="null: unlimited")
    per_member_limit: int | None
    min_tier_rank: int
    face_value_fen: int | None
    min_order_fen: int | None
    coupon_valid_days: int | None
    on_sale_from: dt.datetime | None
    on_sale_until: dt.datetime | None
    available: bool
    unavailable_reason: str | None = Field(
        description="not_on_sale, sold_out, tier_too_low (signed in), limit_reached (signed in)"
    )
    member_points_cost: int | None = Field(description="per unit with your tier's discount")
    redeemed: int | None = Field(description="how many you have redeemed (signed in)")


class CatalogueOut(BaseModel):
    items: list[OfferOut]


# --- orders ------------------------------------------------------------------------------------


class ShippingIn(Strict):
    name: str = Field(max_length=50)
    phone: str = Field(max_length=32)
    address: str = Field(max_length=300)


class OrderIn(Strict):
    item_id: int = Field(ge=1, le=MAX_INT)
    quantity: int = Field(default=1, ge=1, le=99)
    idempotency_key: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="made by the client per order (a UUID); a retry sends the same one",
    )
    shipping: ShippingIn | None = Field(default=None, description="required for goods")


class ShippingOut(BaseModel):
    name: str
    phone: str = Field(description="masked unless the caller may see personal data")
    address: str


class CouponOut(BaseModel):
    code: str
    item_id: int | None
    item_name: str | None
    order_id: int | None
    face_value_fen: int
    min_order_fen: int | None
    valid_from: dt.datetime
    valid_until: dt.datetime
    status: CouponStatus
    used_at: dt.datetime | None
    used_ref: str | None


class OrderOut(BaseModel):
    id: int
    member_id: int
    item_id: int
    item_name: str
    kind: str
    quantity: int
    points: int
    status: OrderStatus
    shipping: ShippingOut | None
    tracking: str | None
    coupons: list[CouponOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class OrderCreated(BaseModel):
    order: OrderOut


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_after: int | None = Field(description="pass as ?after= for older orders")


class OrderPatch(Strict):
    status: OrderStatus
    tracking: str | None = Field(default=None, min_length=1, max_length=100)


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_after: int | None = Field(description="pass as ?after= for older coupons")


class CouponUseIn(Strict):
    order_ref: str = Field(min_length=1, max_length=100, description="the till's order number")
    order_fen: int | None = Field(
        default=None, ge=0, le=MAX_INT, description="the order's amount (for a minimum order)"
    )
