"""What the consumer reads, in Chinese (default) and English."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

VERDICTS = {
    "genuine": {
        "zh": ("正品", "此商品为品牌正品，感谢您的查询。"),
        "en": ("Genuine", "This item is genuine. Thank you for checking."),
    },
    "already_verified": {
        "zh": ("此码已被查询过", "如果这是您第一次查询，请留意商品来源，必要时联系品牌方。"),
        "en": (
            "Checked before",
            "This code has been checked before. If this is your first "
            "check, please make sure of where the item came from.",
        ),
    },
    "suspicious": {
        "zh": ("此码存在异常", "此码的查询记录异常，商品可能为仿冒品，请谨慎购买并联系品牌方。"),
        "en": (
            "Something is wrong",
            "This code's history looks wrong: the item may be a copy. "
            "Please be careful and contact the brand.",
        ),
    },
    "counterfeit": {
        "zh": ("无法验证", "此码未能通过验证，商品可能为假冒，请谨慎购买。"),
        "en": ("Not verified", "This code failed verification; the item may be counterfeit."),
    },
}

RATE_LIMITED = {
    "zh": ("请稍后再试", "查询过于频繁，请{s}秒后再试。"),
    "en": ("Please wait", "Too many checks in a short time. Please try again in {s} seconds."),
}

JOURNEY_TITLE = {"zh": "溯源信息", "en": "Where this item has been"}

SCAN_TO_VERIFY = {
    "zh": "请扫描商品上的防伪码，验证是否为正品。",
    "en": "To check that your item is genuine, scan the code printed on it.",
}

PRODUCT_NOT_FOUND = {
    "zh": ("未找到该商品", "无法识别商品编码 {gtin}。请核对后重试，或直接扫描商品上的防伪码。"),
    "en": (
        "Product not found",
        "We do not know the product code {gtin}. Please check it, or scan the code printed "
        "on the item.",
    ),
}


POINTS = {
    "earned": {"zh": "本次扫码获得 {n} 积分", "en": "You earned {n} points"},
    "earned_pending": {
        "zh": "本次扫码获得 {n} 积分（待生效，{h} 小时内到账）",
        "en": "You earned {n} points (pending: spendable within {h} hours)",
    },
    "already_claimed": {
        "zh": "此码的积分已被领取",
        "en": "This code's points have already been claimed",
    },
    "not_rewarded": {"zh": "此码暂不能领取积分", "en": "This code earns no points"},
    "other_brand": {"zh": "此商品不属于您登录的品牌会员", "en": "This item is of another brand"},
    "no_points": {"zh": "此码暂无积分奖励", "en": "This code earns no points"},
    "sign_in": {"zh": "登录会员，领取本次扫码积分", "en": "Sign in to earn points for this scan"},
    "account": {"zh": "我的积分", "en": "My points"},
}


def points_text(status: str, lang: str, points: int = 0, pending_hours: int = 0) -> str:
    if status == "earned" and pending_hours:
        return POINTS["earned_pending"][lang].format(n=points, h=pending_hours)
    return POINTS[status][lang].format(n=points)


def verdict_text(verdict: str, lang: str) -> tuple[str, str]:
    return VERDICTS[verdict][lang]


def local_time(at: dt.datetime, timezone: str) -> str:
    try:
        zone = ZoneInfo(timezone)
    except Exception:
        zone = ZoneInfo("Asia/Shanghai")
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def first_scan_sentence(
    at: dt.datetime, place_label: str | None, count: int, timezone: str, lang: str
) -> str:
    when = local_time(at, timezone)
    if lang == "en":
        where = f" in {place_label}" if place_label else ""
        return f"First checked on {when}{where}; checked {count} times in all."
    where = f"在{place_label}" if place_label else ""
    return f"此码已于 {when} {where}首次查询，共查询 {count} 次"
