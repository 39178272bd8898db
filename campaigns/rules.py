"""A campaign's configuration as validated data, and the pure functions that apply it to a scan.

A campaign is stored as one JSON document (:func:`to_json` / :func:`from_json`) and validated as a
whole by :func:`check_campaign`: every problem is a 422 naming its field by dotted path, list items
by index (``draw.prizes[2].amount_fen``, ``earn.boosts[0].until_hour``), the same form as
:func:`campaigns.fairness.exact_odds` uses.

The scan path calls :func:`matches` (is this scan one the campaign targets?), :func:`earn_points`
(what it earns), :func:`combine` (which of several overlapping campaigns pay, and how much),
:func:`cap_points` (what the member's caps still allow) and, for paced draws,
:func:`released_fraction`. They do no I/O and little allocation: the lookups they need (sets of
SKUs, parsed regions, product bonuses by SKU) are built once when the spec is validated.

A draw's prizes are valued in fen (:func:`unit_value_fen`): no single prize may be worth more than
the legal cap for a prize draw (:data:`LEGAL_TOP_PRIZE_FEN`) or more than the campaign's budget.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

import traceability
from campaigns.fairness import Odds, exact_odds, parse_probability
from core.errors import ValidationFailedError, register_messages

# 《反不正当竞争法》第十条: in a prize-draw sale (抽奖式有奖销售) the top prize may be worth at most
# ¥50,000. Every prize is held to it, valued as :func:`unit_value_fen` does.
LEGAL_TOP_PRIZE_FEN = 5_000_000
MAX_WINDOW = dt.timedelta(days=366)
MAX_FIELD_ERRORS = 20
DEFAULT_TIMEZONE = "Asia/Shanghai"

# The RFM segments of members.models.RFM_SEGMENTS (copied: campaigns may not import models).
Segment = Literal[
    "important_value",
    "important_keep",
    "important_develop",
    "important_retain",
    "general_value",
    "general_keep",
    "general_develop",
    "general_retain",
]
SEGMENTS: tuple[str, ...] = get_args(Segment)
PrizeKind = Literal["points", "coupon", "cash", "goods", "thanks"]
# Only prizes that cost nothing to have more of may be unlimited: a cash or goods prize without a
# stock would be an unbounded liability.
UNLIMITED_KINDS = frozenset({"points", "coupon", "thanks"})
# The field holding what one unit of a prize is worth (named by value errors).
_VALUE_FIELD = {
    "points": "points",
    "cash": "amount_fen",
    "coupon": "value_fen",
    "goods": "value_fen",
}

_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
_ONE = Decimal(1)


def _kind_zh(template: str) -> Callable[[Mapping[str, str]], str]:
    """A template whose {kind} is the prize kind's Chinese name."""
    return lambda p: template.format(**{**p, "kind": _KIND_TEXT["zh"].get(p["kind"], p["kind"])})


# The campaign form's messages in Chinese (the API answers them so on Accept-Language: zh; see
# core.errors.register_messages). Those of campaigns/fairness.py are here too: the rules are
# where a campaign is validated.
register_messages(
    ("campaign_object", r"a campaign is a JSON object", "活动配置须是一个 JSON 对象。"),
    (
        "timezone",
        r"an IANA time zone name such as Asia/Shanghai",
        "请填写时区名，如 Asia/Shanghai。",
    ),
    ("window_order", r"must be after starts_at", "结束时间须晚于开始时间。"),
    ("window_length", r"a campaign runs at most (?P<n>\d+) days", "活动最长 {n} 天。"),
    ("stack_only", r'only for stacking "stack"', "仅用于可叠加（stack）的活动。"),
    ("date_order", r"must not be before from_date", "不能早于开始日期。"),
    ("hour_order", r"must be after from_hour", "须晚于开始时刻。"),
    ("bonus_repeated", r"SKU '(?P<sku>[^']*)' has two bonuses", "SKU {sku} 有两条加赠。"),
    (
        "probability",
        r"a probability from 0 to 1 as a decimal string \('0\.000001'\) or a fraction \('1/3'\)",
        "概率应为 0 到 1 之间的小数（如 0.000001）或分数（如 1/3）。",
    ),
    (
        "prize_needs_stock",
        r"a (?P<kind>\w+) prize needs a stock \(only points, coupons and thanks may be unlimited\)",
        _kind_zh("{kind}奖品须填写库存（只有积分、优惠券和谢谢参与可以不限量）。"),
    ),
    (
        "prize_field_required",
        r"required for a (?P<kind>\w+) prize",
        _kind_zh("{kind}奖品须填写此项。"),
    ),
    (
        "prize_field_unused",
        r"not used by a (?P<kind>\w+) prize: leave it out",
        _kind_zh("{kind}奖品不用此项，请留空。"),
    ),
    ("https", r"an https:// address", "须是 https:// 开头的地址。"),
    ("cash_range_order", r"must not be below cash_min_fen", "不能低于红包最小金额。"),
    (
        "cash_range",
        r"a red envelope of (?P<low>\S+) to (?P<high>\S+) \(cash_min_fen\.\.cash_max_fen\)",
        "红包金额应在 {low} 到 {high} 之间。",
    ),
    (
        "prize_above_legal_cap",
        r"worth (?P<value>\S+), above the legal cap of (?P<cap>\S+) for a prize draw .*",
        "奖品价值 {value}，超过抽奖式有奖销售的法定上限 {cap}（《反不正当竞争法》第十条）。",
    ),
    (
        "prize_above_budget",
        r"a prize above the campaign budget \((?P<budget>\S+)\)",
        "奖品价值超过活动预算（{budget}）。",
    ),
    ("fallback_unknown", r"names no prize of this draw", "不是本次抽奖的奖品。"),
    (
        "fallback_limited",
        r"must be a prize that cannot run out: .*",
        "须是不会发完的奖品：库存不限的谢谢参与、积分或优惠券。",
    ),
    ("prize_count", r"1 to (?P<n>\d+) prizes", "奖品数应为 1 到 {n} 个。"),
    (
        "prize_key",
        r"1-64 letters, digits, '\.', '_' or '-', unique in the table",
        "1–64 个字母、数字或 . _ -，且不能重复。",
    ),
    (
        "probabilities_above_one",
        r"the probabilities add up to (?P<total>\S+), more than 1",
        "各奖品的概率之和为 {total}，超过 1。",
    ),
    (
        "odds_too_fine",
        r"the probabilities' common denominator is beyond 10\^18: use simpler odds",
        "各概率的公分母超过 10^18，请使用更简单的概率。",
    ),
)


def _canonical_region(text: str) -> str:
    try:
        return traceability.parse_region(text, field="region").code
    except ValidationFailedError as exc:
        raise ValueError(exc.errors["region"]) from None


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


Sku = Annotated[str, Field(min_length=1, max_length=64)]
RegionCode = Annotated[str, AfterValidator(_canonical_region)]
TierMultiplier = Annotated[Decimal, Field(ge=0, le=10, decimal_places=4)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the spec ------------------------------------------------------------------------------------


class Targeting(_Spec):
    """Which scans a campaign pays for; an empty list places no condition on its dimension."""

    skus: list[Sku] = Field(default_factory=list, max_length=500)
    batches: list[PositiveInt] = Field(default_factory=list, max_length=500)
    regions: list[RegionCode] = Field(
        default_factory=list, max_length=500, description="canonical: CN, CN-ZJ, CN-ZJ/杭州市"
    )
    tiers: list[PositiveInt] = Field(default_factory=list, max_length=100)
    segments: list[Segment] = Field(default_factory=list, max_length=len(SEGMENTS))

    # Built once here so that a scan does set lookups and never re-parses a region.
    _skus: frozenset[str] = PrivateAttr(frozenset())
    _batches: frozenset[int] = PrivateAttr(frozenset())
    _tiers: frozenset[int] = PrivateAttr(frozenset())
    _segments: frozenset[str] = PrivateAttr(frozenset())
    _regions: tuple[traceability.Region, ...] = PrivateAttr(())

    @field_validator("skus", "batches", "regions", "tiers", "segments")
    @classmethod
    def _no_repeats(cls, values: list[Any]) -> list[Any]:
        return _unique(values)

    def model_post_init(self, context: Any, /) -> None:
        self._skus = frozenset(self.skus)
        self._batches = frozenset(self.batches)
        self._tiers = frozenset(self.tiers)
        self._segments = frozenset(self.segments)
        self._regions = tuple(traceability.region_of_code(code) for code in self.regions)

    def region_check(self, located: traceability.Located | None) -> traceability.RegionCheck:
        """Where ``located`` stands against the targeted regions (``unknown`` without a place)."""
        if located is None:
            return "unknown"
        return traceability.region_check(self._regions, located)

    @property
    def targets_anything(self) -> bool:
        return bool(self.skus or self.batches or self.regions or self.tiers or self.segments)


class Boost(_Spec):
    """A time-limited multiplier ("weekend double points"), read in the campaign's timezone."""

    name: str = Field(min_length=1, max_length=64)
    multiplier: Decimal = Field(ge=1, le=10, decimal_places=4)
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=list, max_length=7, description="ISO weekdays, 1 = Monday; empty: every day"
    )
    from_date: dt.date | None = Field(
        default=None, description="first day (inclusive), campaign-local"
    )
    until_date: dt.date | None = Field(
        default=None, description="last day (inclusive), campaign-local"
    )
    from_hour: int = Field(default=0, ge=0, le=24)
    until_hour: int = Field(default=24, ge=0, le=24, description="exclusive: 24 is midnight")

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, values: list[int]) -> list[int]:
        return sorted(set(values))

    @field_validator("until_date")
    @classmethod
    def _date_order(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("from_date")
        if value is not None and start is not None and value < start:
            raise ValueError("must not be before from_date")
        return value

    @field_validator("until_hour")
    @classmethod
    def _hour_order(cls, value: int, info: ValidationInfo) -> int:
        start = info.data.get("from_hour")
        if start is not None and value <= start:
            raise ValueError("must be after from_hour")
        return value

    def active(self, local_now: dt.datetime) -> bool:
        """True when the boost applies at ``local_now`` (a time in the campaign's timezone)."""
        if self.weekdays and local_now.isoweekday() not in self.weekdays:
            return False
        if self.from_date is not None or self.until_date is not None:
            day = local_now.date()
            if self.from_date is not None and day < self.from_date:
                return False
            if self.until_date is not None and day > self.until_date:
                return False
        return self.from_hour <= local_now.hour < self.until_hour


class ProductBonus(_Spec):
    sku: Sku
    points: int = Field(ge=1, le=100_000)


class EarnRules(_Spec):
    """What a targeted scan earns, on top of nothing: the campaign's points replace the
    programme's scan points while it applies (see :func:`earn_points`)."""

    points_per_scan: int | None = Field(
        default=None, ge=0, le=100_000, description="None: the brand programme's scan_points"
    )
    tier_multipliers: dict[PositiveInt, TierMultiplier | None] = Field(
        default_factory=dict, max_length=100, description="None or absent: the tier's own"
    )
    boosts: list[Boost] = Field(default_factory=list, max_length=20)
    product_bonus: list[ProductBonus] = Field(default_factory=list, max_length=500)
    first_scan_bonus: int = Field(
        default=0, ge=0, le=100_000, description="the member's first of the brand"
    )
    cap_per_day: int | None = Field(
        default=None, ge=1, le=100_000_000, description="campaign-local day"
    )
    cap_per_campaign: int | None = Field(default=None, ge=1, le=1_000_000_000)

    _bonus: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("product_bonus")
    @classmethod
    def _one_bonus_per_sku(cls, values: list[ProductBonus]) -> list[ProductBonus]:
        seen: set[str] = set()
        for item in values:
            if item.sku in seen:
                raise ValueError(f"SKU {item.sku!r} has two bonuses")
            seen.add(item.sku)
        return values

    def model_post_init(self, context: Any, /) -> None:
        self._bonus = {item.sku: item.points for item in self.product_bonus}


class PrizeSpec(_Spec):
    """One prize of a draw. Which of ``points``, ``amount_fen``, ``coupon_item_id`` and
    ``value_fen`` are given depends on ``kind``; the others must be left out."""

    key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=64)
    kind: PrizeKind
    probability: str = Field(description="exact: '0.000001' or '1/3'")
    stock: int | None = Field(
        default=None, ge=0, le=1_000_000_000, validate_default=True, description="None: unlimited"
    )
    points: int | None = Field(default=None, ge=1, le=100_000, validate_default=True)
    amount_fen: int | None = Field(default=None, ge=1, le=10**11, validate_default=True)
    coupon_item_id: int | None = Field(default=None, ge=1, validate_default=True)
    value_fen: int | None = Field(default=None, ge=0, le=10**11, validate_default=True)
    image_url: str | None = Field(default=None, max_length=500)

    @field_validator("probability")
    @classmethod
    def _probability(cls, value: str) -> str:
        try:
            parse_probability(value, field="probability")
        except ValidationFailedError as exc:
            raise ValueError(exc.errors["probability"]) from None
        return value

    @field_validator("stock")
    @classmethod
    def _stock(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if value is None and kind is not None and kind not in UNLIMITED_KINDS:
            raise ValueError(
                f"a {kind} prize needs a stock (only points, coupons and thanks may be unlimited)"
            )
        return value

    @field_validator("points", "amount_fen", "coupon_item_id", "value_fen")
    @classmethod
    def _by_kind(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is None:
            return value
        needed = {
            "points": kind == "points",
            "amount_fen": kind == "cash",
            "coupon_item_id": kind == "coupon",
            "value_fen": kind in ("coupon", "goods"),
        }[str(info.field_name)]
        if needed and value is None:
            raise ValueError(f"required for a {kind} prize")
        if not needed and value is not None:
            raise ValueError(f"not used by a {kind} prize: leave it out")
        return value

    @field_validator("image_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^\s/?#]+[^\s]*$", value):
            raise ValueError("an https:// address")
        return value


class DrawConfig(_Spec):
    """A campaign's draw: prizes with exact odds, stock, budget and per-member limits.

    Checked as a whole (422 naming the field): the probabilities (at most 1 in all), each prize's
    value against :data:`LEGAL_TOP_PRIZE_FEN` and ``budget_fen``, cash within the red-envelope
    range, and the fallback, which must be a prize that can never run out.
    """

    prizes: list[PrizeSpec] = Field(min_length=1, max_length=100)
    budget_fen: int | None = Field(default=None, ge=1, le=10**11)
    draws_per_member_per_day: int | None = Field(default=None, ge=1, le=1000)
    draws_per_member: int | None = Field(default=None, ge=1, le=100_000)
    wins_per_member: int | None = Field(default=None, ge=1, le=100_000)
    pacing: Literal["none", "even"] = Field(
        default="none",
        description="even: each prize's stock is released in step with the elapsed window",
    )
    fallback: str | None = Field(
        default=None,
        description="the prize given instead of one out of stock, budget, pace or limits",
    )
    points_per_yuan: int = Field(default=100, ge=1, le=10_000, description="values points prizes")
    cash_min_fen: int = Field(default=100, ge=1, le=LEGAL_TOP_PRIZE_FEN)
    cash_max_fen: int = Field(default=20_000, ge=1, le=LEGAL_TOP_PRIZE_FEN)

    _odds: Odds | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _whole(self) -> DrawConfig:
        # Raised as ValidationFailedError (not ValueError) so that the error names the prize's
        # own field; CampaignSpec puts "draw." in front. The odds were checked by model_post_init.
        if self.cash_max_fen < self.cash_min_fen:
            raise ValidationFailedError.field("cash_max_fen", "must not be below cash_min_fen")
        for i, prize in enumerate(self.prizes):
            if prize.kind == "cash":
                assert prize.amount_fen is not None
                if not self.cash_min_fen <= prize.amount_fen <= self.cash_max_fen:
                    raise ValidationFailedError.field(
                        f"prizes[{i}].amount_fen",
                        f"a red envelope of {yuan_text(self.cash_min_fen)} to "
                        f"{yuan_text(self.cash_max_fen)} (cash_min_fen..cash_max_fen)",
                    )
            value = unit_value_fen(prize, self)
            where = f"prizes[{i}].{_VALUE_FIELD.get(prize.kind, 'kind')}"
            if value > LEGAL_TOP_PRIZE_FEN:
                raise ValidationFailedError.field(
                    where,
                    f"worth {yuan_text(value)}, above the legal cap of "
                    f"{yuan_text(LEGAL_TOP_PRIZE_FEN)} for a prize draw (反不正当竞争法 第十条)",
                )
            if self.budget_fen is not None and value > self.budget_fen:
                raise ValidationFailedError.field(
                    where, f"a prize above the campaign budget ({yuan_text(self.budget_fen)})"
                )
        if self.fallback is not None:
            fallback = self.prize(self.fallback)
            if fallback is None:
                raise ValidationFailedError.field("fallback", "names no prize of this draw")
            if fallback.stock is not None or fallback.kind not in UNLIMITED_KINDS:
                raise ValidationFailedError.field(
                    "fallback",
                    "must be a prize that cannot run out: a thanks, points or coupon prize "
                    "with unlimited stock (stock null)",
                )
        return self

    def model_post_init(self, context: Any, /) -> None:
        # Runs before the "after" validator, and again for a copy (see _Spec.model_copy).
        self._odds = exact_odds([(p.key, p.probability) for p in self.prizes])

    def prize(self, key: str) -> PrizeSpec | None:
        return next((p for p in self.prizes if p.key == key), None)

    @property
    def odds(self) -> Odds:
        """The exact prize table, in prize order (computed once, on validation)."""
        assert self._odds is not None
        return self._odds


class CampaignSpec(_Spec):
    """A campaign's whole configuration. Times are stored as aware UTC; naive input times are
    read in ``timezone``, which is also where days, weekdays and hours of the rules are counted."""

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="IANA name")
    starts_at: dt.datetime
    ends_at: dt.datetime = Field(description="exclusive; at most 366 days after starts_at")
    priority: int = Field(
        default=100, ge=0, le=1000, description="higher wins among overlapping ones"
    )
    stacking: Literal["exclusive", "stack"] = "exclusive"
    stack_cap_points: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="stack: most points per scan from stacked campaigns",
    )
    targeting: Targeting = Field(default_factory=Targeting)
    earn: EarnRules = Field(default_factory=EarnRules)
    draw: DrawConfig | None = None
    fraud: dict[str, Any] = Field(default_factory=dict, description="see campaigns/fraud.py")

    _zone: zoneinfo.ZoneInfo = PrivateAttr(default_factory=lambda: zoneinfo.ZoneInfo("UTC"))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            if not _TIMEZONE.match(value):
                raise ValueError
            zoneinfo.ZoneInfo(value)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError("an IANA time zone name such as Asia/Shanghai") from None
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware_utc(cls, value: dt.datetime, info: ValidationInfo) -> dt.datetime:
        if value.tzinfo is None:
            zone = info.data.get("timezone")
            if zone is None:
                return value  # the timezone's own error is reported
            value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
            raise ValueError("a time within the years 1 to 9999 in UTC") from None

    @field_validator("ends_at")
    @classmethod
    def _window(cls, value: dt.datetime, info: ValidationInfo) -> dt.datetime:
        start = info.data.get("starts_at")
        if start is None or start.tzinfo is None or value.tzinfo is None:
            return value
        if value <= start:
            raise ValueError("must be after starts_at")
        if value - start > MAX_WINDOW:
            raise ValueError(f"a campaign runs at most {MAX_WINDOW.days} days")
        return value

    @field_validator("stack_cap_points")
    @classmethod
    def _cap_needs_stacking(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("stacking") == "exclusive":
            raise ValueError('only for stacking "stack"')
        return value

    @field_validator("draw", mode="wrap")
    @classmethod
    def _draw_errors_named_from_the_top(
        cls, value: Any, handler: ValidatorFunctionWrapHandler
    ) -> Any:
        try:
            return handler(value)
        except ValidationFailedError as exc:
            raise _prefixed("draw", exc) from None

    def model_post_init(self, context: Any, /) -> None:
        self._zone = zoneinfo.ZoneInfo(self.timezone)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    def local_time(self, now: dt.datetime) -> dt.datetime:
        """``now`` (aware) in the campaign's timezone: what :func:`earn_points` expects."""
        return now.astimezone(self._zone)

    def odds(self) -> Odds | None:
        """The draw's exact prize table (None without a draw)."""
        return self.draw.odds if self.draw is not None else None


def _prefixed(prefix: str, exc: ValidationFailedError) -> ValidationFailedError:
    errors = {f"{prefix}.{name}": message for name, message in exc.errors.items()}
    return ValidationFailedError(f"{prefix}.{exc.detail}", errors=errors)


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a dict key; the key itself names it
            path += f".{part}" if path else part
    return path or "body"


def _invalid(exc: ValidationError) -> ValidationFailedError:
    """Pydantic's errors as a 422 naming each field the way the cross-field checks do."""
    found = exc.errors(include_url=False, include_context=False, include_input=False)
    errors: dict[str, str] = {}
    for err in found[:MAX_FIELD_ERRORS]:
        message = err["msg"].removeprefix("Value error, ")
        errors.setdefault(_path(err["loc"]), message)
    first = next(iter(errors.items()))
    return ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)


def check_campaign(raw: object) -> CampaignSpec:
    """``raw`` (a JSON object) as a valid :class:`CampaignSpec`, or a 422 naming each wrong field
    (``name``, ``earn.boosts[0].until_hour``, ``draw.prizes[2].amount_fen``)."""
    if not isinstance(raw, Mapping):
        raise ValidationFailedError.field("body", "a campaign is a JSON object")
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    from campaigns.fraud import check_policy

    check_policy(spec.fraud)  # a policy that would fail every scan is refused on save
    return spec


def to_json(spec: CampaignSpec) -> dict[str, Any]:
    """The spec as JSON values for storage (decimals as strings, times ISO 8601 UTC)."""
    return spec.model_dump(mode="json")


def from_json(data: Mapping[str, Any]) -> CampaignSpec:
    """A stored spec read back (validated again: a 422 if it no longer is)."""
    return check_campaign(data)


def unit_value_fen(prize: PrizeSpec, draw: DrawConfig) -> int:
    """What one unit of ``prize`` is worth in fen: points at ``draw.points_per_yuan`` (rounded
    up, so a prize is never valued below its cost), cash its amount, coupons and goods their
    declared value, "thanks" nothing."""
    if prize.kind == "points":
        assert prize.points is not None
        return -(-prize.points * 100 // draw.points_per_yuan)
    if prize.kind == "cash":
        assert prize.amount_fen is not None
        return prize.amount_fen
    if prize.kind in ("coupon", "goods"):
        assert prize.value_fen is not None
        return prize.value_fen
    return 0


def odds_of(draw: DrawConfig) -> Odds:
    """The draw's exact prize table, in prize order."""
    return draw.odds


# --- the scan ------------------------------------------------------------------------------------


def matches(
    targeting: Targeting,
    *,
    sku: str,
    batch_id: int,
    located: traceability.Located | None,
    tier_id: int | None,
    segment: str | None,
    ignore_regions: bool = False,
) -> bool:
    """True when a scan of ``sku`` from ``batch_id``, made at ``located`` by a member of
    ``tier_id`` / ``segment``, is one the campaign targets (every targeted dimension holds;
    ``ignore_regions``: every one but the place)."""
    t = targeting
    if t._skus and sku not in t._skus:
        return False
    if t._batches and batch_id not in t._batches:
        return False
    if t._tiers and tier_id not in t._tiers:
        return False
    if t._segments and segment not in t._segments:
        return False
    # Only a place known to be inside pays: a campaign paying for one city must not pay everyone
    # whose place is unknown or known only to the province (no location, a VPN, a coarse IP
    # lookup), or the brand funds scans from everywhere.
    return ignore_regions or not t._regions or t.region_check(located) == "inside"


@dataclass(frozen=True)
class Earned:
    """What one campaign pays for a scan, and why (lines add up to ``points``)."""

    points: int
    lines: tuple[tuple[str, int], ...]


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


def _number(value: Decimal) -> str:
    """1.50 -> "1.5", 2.0 -> "2", 10 -> "10" (never "1E+1")."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def earn_points(
    earn: EarnRules,
    *,
    base_points: int,
    tier_id: int | None,
    tier_multiplier: Decimal | float,
    sku: str,
    local_now: dt.datetime,
    first_scan: bool,
) -> Earned:
    """The points a targeted scan earns under ``earn``.

    ``round_half_up(base × tier multiplier × every active boost) + product bonus + first-scan
    bonus``, where base is ``points_per_scan`` (``base_points``, the programme's, when None) and
    the tier multiplier is the campaign's override for ``tier_id`` or else ``tier_multiplier``
    (a float is read by its decimal text, 1.1 as 1.1). ``local_now`` must be in the campaign's
    timezone (:meth:`CampaignSpec.local_time`): weekdays and hours are the campaign's.
    """
    multiplier = (
        tier_multiplier if isinstance(tier_multiplier, Decimal) else Decimal(str(tier_multiplier))
    )
    if tier_id is not None:
        override = earn.tier_multipliers.get(tier_id)
        if override is not None:
            multiplier = override
    base = earn.points_per_scan if earn.points_per_scan is not None else base_points
    lines = [("base", base)]
    points = base
    scaled = Decimal(base)
    # Each line is the change in the rounded running total, so the lines always add up.
    if multiplier != 1:
        scaled *= multiplier
        now = round_half_up(scaled)
        lines.append((f"tier x{_number(multiplier)}", now - points))
        points = now
    for boost in earn.boosts:
        if boost.active(local_now):
            scaled *= boost.multiplier
            now = round_half_up(scaled)
            lines.append((f"boost {boost.name}", now - points))
            points = now
    bonus = earn._bonus.get(sku)
    if bonus:
        lines.append(("product", bonus))
        points += bonus
    if first_scan and earn.first_scan_bonus:
        lines.append(("first_scan", earn.first_scan_bonus))
        points += earn.first_scan_bonus
    return Earned(points, tuple(lines))


class Stackable(Protocol):
    """What :func:`combine` reads of a campaign (a :class:`CampaignSpec` is one)."""

    @property
    def stacking(self) -> str: ...

    @property
    def stack_cap_points(self) -> int | None: ...


S = TypeVar("S", bound=Stackable)


Lines = tuple[tuple[str, int], ...]


def combine(earned: Sequence[tuple[S, Earned]]) -> tuple[int, list[tuple[S, int, Lines]]]:
    """The points a scan gets from the campaigns that match it, and who pays what.

    ``earned`` is sorted by priority, highest first (ties broken by the caller). The top campaign
    always applies. If it is "exclusive", nothing else does. If it is "stack", every other "stack"
    campaign adds its points ("exclusive" ones below it do not), and the total, the top
    campaign's own points included, is held to the top campaign's ``stack_cap_points``:
    campaigns keep their points in priority order until the cap is reached.

    Returns the total and, for every applying campaign (even one left with 0), its points and its
    breakdown lines, which add up to its points (a ``("stack_cap", -n)`` line when it was cut).
    """
    if not earned:
        return 0, []
    top, top_earned = earned[0]
    if top.stacking != "stack":
        return top_earned.points, [(top, top_earned.points, top_earned.lines)]
    cap = top.stack_cap_points
    total = 0
    paid: list[tuple[S, int, Lines]] = []
    for i, (campaign, result) in enumerate(earned):
        if i and campaign.stacking != "stack":
            continue
        points, lines = result.points, result.lines
        if cap is not None and total + points > cap:
            points = max(0, cap - total)
            lines = (*lines, ("stack_cap", points - result.points))
        paid.append((campaign, points, lines))
        total += points
    return total, paid


def cap_points(points: int, *, day_so_far: int, campaign_so_far: int, earn: EarnRules) -> int:
    """How many of ``points`` the member may still get from this campaign, given what it has had
    today (the campaign's local day) and over the campaign; never negative."""
    allowed = points
    if earn.cap_per_day is not None:
        allowed = min(allowed, earn.cap_per_day - day_so_far)
    if earn.cap_per_campaign is not None:
        allowed = min(allowed, earn.cap_per_campaign - campaign_so_far)
    return max(0, allowed)


_MICROSECOND = dt.timedelta(microseconds=1)


def released_fraction(starts_at: dt.datetime, ends_at: dt.datetime, now: dt.datetime) -> Fraction:
    """The share of a paced ("even") stock released at ``now``: 0 before the start, 1 from the
    end on, else the elapsed share of the window (exact, to the microsecond)."""
    if now <= starts_at:
        return Fraction(0)
    if now >= ends_at:
        return Fraction(1)
    return Fraction((now - starts_at) // _MICROSECOND, (ends_at - starts_at) // _MICROSECOND)


def windows_overlap(
    a_start: dt.datetime, a_end: dt.datetime, b_start: dt.datetime, b_end: dt.datetime
) -> bool:
    """True when the half-open windows ``[a_start, a_end)`` and ``[b_start, b_end)`` share time."""
    return a_start < b_end and b_start < a_end


# --- in words ------------------------------------------------------------------------------------

Lang = Literal["zh", "en"]
_WEEKDAYS = {
    "zh": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_SEGMENT_ZH = {
    "important_value": "重要价值客户",
    "important_keep": "重要保持客户",
    "important_develop": "重要发展客户",
    "important_retain": "重要挽留客户",
    "general_value": "一般价值客户",
    "general_keep": "一般保持客户",
    "general_develop": "一般发展客户",
    "general_retain": "一般挽留客户",
}
_KIND_TEXT = {
    "zh": {
        "points": "积分",
        "coupon": "优惠券",
        "cash": "现金红包",
        "goods": "实物",
        "thanks": "谢谢参与",
    },
    "en": {
        "points": "points",
        "coupon": "coupon",
        "cash": "cash red envelope",
        "goods": "goods",
        "thanks": "thanks for taking part",
    },
}


def yuan_text(fen: int) -> str:
    """20000 -> "¥200.00", 1000000 -> "¥10,000.00"."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}¥{fen // 100:,}.{fen % 100:02d}"


def percent_text(probability: Fraction) -> str:
    """A probability as a percentage that never hides a chance: exact when it is a short
    decimal (1/1000000 -> "0.0001%", 1/20 -> "5%"), else rounded to two significant digits but
    at least two decimals (1/3 -> "33.33%"), and never shown as 0% or 100% when it is neither."""
    percent = probability * 100
    if percent in (0, 100):
        return f"{percent}%"
    denominator = percent.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator == 1 and max(twos, fives) <= 12:
        places = max(twos, fives)
    else:
        # Two significant digits: the first non-zero decimal place, plus one.
        first = 0 if percent >= 1 else -math.floor(math.log10(percent)) - 1
        places = max(2, first + 2)
    while True:
        scaled = math.floor(percent * 10**places + Fraction(1, 2))
        if 0 < scaled < 100 * 10**places:
            break
        places += 1
    whole, part = divmod(scaled, 10**places)
    text = f"{whole}.{part:0{places}d}".rstrip("0").rstrip(".") if places else str(whole)
    return f"{text}%"


def _value_text(prize: PrizeSpec, lang: Lang) -> str:
    kind = _KIND_TEXT[lang][prize.kind]
    if prize.kind == "points":
        return f"{prize.points} 积分" if lang == "zh" else f"{prize.points} points"
    if prize.kind == "cash":
        assert prize.amount_fen is not None
        return f"{kind} {yuan_text(prize.amount_fen)}"
    if prize.kind in ("coupon", "goods"):
        assert prize.value_fen is not None
        worth = yuan_text(prize.value_fen)
        return f"{kind}（价值 {worth}）" if lang == "zh" else f"{kind} worth {worth}"
    return kind


def describe_prizes(draw: DrawConfig, lang: Lang = "zh") -> list[dict[str, Any]]:
    """Each prize as the rules page shows it: key, name, kind, what it is worth, its stock and
    its exact chance (the fraction the draw uses, and a percentage that never reads 0)."""
    unlimited = "不限" if lang == "zh" else "unlimited"
    shown = []
    for prize, probability in zip(draw.prizes, draw.odds.probabilities, strict=True):
        shown.append(
            {
                "key": prize.key,
                "name": prize.name,
                "kind": prize.kind,
                "kind_text": _KIND_TEXT[lang][prize.kind],
                "value": _value_text(prize, lang),
                "value_fen": unit_value_fen(prize, draw),
                "stock": prize.stock,
                "stock_text": unlimited if prize.stock is None else str(prize.stock),
                "probability": str(probability),
                "percent": percent_text(probability),
            }
        )
    return shown


def _local_text(spec: CampaignSpec, at: dt.datetime) -> str:
    return spec.local_time(at).strftime("%Y-%m-%d %H:%M")


def _boost_text(boost: Boost, lang: Lang) -> str:
    days = [_WEEKDAYS[lang][d - 1] for d in boost.weekdays]
    hours = (
        f"{boost.from_hour:02d}:00-{boost.until_hour:02d}:00"
        if (boost.from_hour, boost.until_hour) != (0, 24)
        else ""
    )
    times = _number(boost.multiplier)
    if lang == "zh":
        parts = []
        if boost.from_date or boost.until_date:
            parts.append(f"{boost.from_date or '活动开始'} 至 {boost.until_date or '活动结束'}")
        if days:
            parts.append("、".join(days))
        if hours:
            parts.append(hours)
        return f"{' '.join(parts) or '活动期间'} 积分 ×{times}（{boost.name}）"
    when = []
    if boost.from_date or boost.until_date:
        when.append(f"from {boost.from_date or 'the start'} to {boost.until_date or 'the end'}")
    if days:
        when.append("on " + ", ".join(days))
    if hours:
        when.append(hours)
    return f"Points ×{times} {' '.join(when) or 'throughout the campaign'} ({boost.name})"


def _targeting_lines(t: Targeting, lang: Lang) -> list[str]:
    if not t.targets_anything:
        return ["适用于全部产品和会员" if lang == "zh" else "Applies to every product and member"]
    zh = lang == "zh"
    sep = "、" if zh else ", "
    lines = []
    if t.skus:
        lines.append(("适用产品：" if zh else "Products: ") + sep.join(t.skus))
    if t.batches:
        lines.append(("适用批次：" if zh else "Batches: ") + sep.join(map(str, t.batches)))
    if t.regions:
        lines.append(("适用地区：" if zh else "Regions: ") + sep.join(t.regions))
    if t.tiers:
        lines.append(
            ("适用会员等级：" if zh else "Member tiers: ") + sep.join(f"#{i}" for i in t.tiers)
        )
    if t.segments:
        names = [_SEGMENT_ZH[s] if zh else s.replace("_", " ") for s in t.segments]
        lines.append(("适用会员分群：" if zh else "Member segments: ") + sep.join(names))
    return lines


def _earn_lines(spec: CampaignSpec, lang: Lang, tier_names: Mapping[int, str]) -> list[str]:
    earn, zh = spec.earn, lang == "zh"
    lines = []
    if earn.points_per_scan is None:
        lines.append(
            "每次扫码按品牌会员规则得积分" if zh else "Points per scan as in the brand's programme"
        )
    else:
        n = earn.points_per_scan
        lines.append(f"每次扫码得 {n} 积分" if zh else f"{n} points per scan")
    for tier_id, multiplier in earn.tier_multipliers.items():
        if multiplier is not None:
            tier = tier_names.get(tier_id, f"#{tier_id}")
            m = _number(multiplier)
            lines.append(f"会员等级 {tier}：积分 ×{m}" if zh else f"Tier {tier}: points ×{m}")
    lines.extend(_boost_text(b, lang) for b in earn.boosts)
    for bonus in earn.product_bonus:
        lines.append(
            f"扫码 {bonus.sku} 额外得 {bonus.points} 积分"
            if zh
            else f"{bonus.sku}: {bonus.points} extra points per scan"
        )
    if earn.first_scan_bonus:
        n = earn.first_scan_bonus
        lines.append(
            f"首次扫码额外得 {n} 积分" if zh else f"First scan of the brand: {n} extra points"
        )
    if earn.cap_per_day is not None:
        n = earn.cap_per_day
        lines.append(f"每人每天最多 {n} 积分" if zh else f"At most {n} points per member per day")
    if earn.cap_per_campaign is not None:
        n = earn.cap_per_campaign
        lines.append(
            f"每人本活动最多 {n} 积分" if zh else f"At most {n} points per member in this campaign"
        )
    if spec.stacking == "exclusive":
        lines.append("不与其他活动同时享受" if zh else "Does not combine with other campaigns")
    else:
        text = "可与其他可叠加活动同时享受" if zh else "Combines with other stacking campaigns"
        if spec.stack_cap_points is not None:
            n = spec.stack_cap_points
            text += (
                f"，每次扫码合计最多 {n} 积分" if zh else f", at most {n} points per scan in all"
            )
        lines.append(text)
    return lines


def _draw_lines(draw: DrawConfig, lang: Lang) -> list[str]:
    zh = lang == "zh"
    lines = []
    for prize, shown in zip(draw.prizes, describe_prizes(draw, lang), strict=True):
        chance = (
            f"{shown['probability']}（{shown['percent']}）"
            if zh
            else (f"{shown['probability']} ({shown['percent']})")
        )
        if prize.kind == "thanks":
            lines.append(
                f"抽奖：{prize.name}，概率 {chance}"
                if zh
                else f"Draw: {prize.name}, chance {chance}"
            )
            continue
        if zh:
            stock = "数量不限" if prize.stock is None else f"共 {prize.stock} 份"
            lines.append(f"抽奖：{prize.name} {shown['value']}，{stock}，中奖概率 {chance}")
        else:
            stock = "unlimited" if prize.stock is None else f"{prize.stock} available"
            lines.append(f"Draw: {prize.name} — {shown['value']}, {stock}, odds {chance}")
    nothing = draw.odds.nothing
    if nothing:
        chance = (
            f"{nothing}（{percent_text(nothing)}）"
            if zh
            else f"{nothing} ({percent_text(nothing)})"
        )
        lines.append(f"未中奖概率 {chance}" if zh else f"No prize: {chance}")
    fallback = draw.prize(draw.fallback) if draw.fallback is not None else None
    if fallback is not None:
        lines.append(
            f"奖品发完或超出限额时：{fallback.name}"
            if zh
            else f"When a prize is out of stock or over a limit: {fallback.name}"
        )
    else:
        lines.append(
            "奖品发完或超出限额时：不中奖"
            if zh
            else "When a prize is out of stock or over a limit: no prize"
        )
    if draw.draws_per_member_per_day is not None:
        n = draw.draws_per_member_per_day
        lines.append(f"每人每天最多抽奖 {n} 次" if zh else f"At most {n} draws per member per day")
    if draw.draws_per_member is not None:
        n = draw.draws_per_member
        lines.append(f"每人最多抽奖 {n} 次" if zh else f"At most {n} draws per member")
    if draw.wins_per_member is not None:
        n = draw.wins_per_member
        lines.append(f"每人最多中奖 {n} 次" if zh else f"At most {n} wins per member")
    if draw.budget_fen is not None:
        money = yuan_text(draw.budget_fen)
        lines.append(f"奖品总预算 {money}" if zh else f"Prize budget {money}")
    if draw.pacing == "even":
        lines.append(
            "奖品按活动时间均匀发放" if zh else "Prizes are released evenly over the campaign"
        )
    return lines


def describe(
    spec: CampaignSpec, lang: Lang = "zh", *, tier_names: Mapping[int, str] | None = None
) -> list[str]:
    """The campaign's effective rules in plain words, one per line, for the rules page and the
    management API. ``tier_names`` shows tiers by name instead of id."""
    if lang not in ("zh", "en"):
        raise ValidationFailedError.field("lang", "zh or en")
    start, end = _local_text(spec, spec.starts_at), _local_text(spec, spec.ends_at)
    lines = [
        f"活动时间：{start} 至 {end}（{spec.timezone}）"
        if lang == "zh"
        else f"Runs from {start} to {end} ({spec.timezone})"
    ]
    lines += _targeting_lines(spec.targeting, lang)
    lines += _earn_lines(spec, lang, tier_names or {})
    if spec.draw is not None:
        lines += _draw_lines(spec.draw, lang)
    return lines
