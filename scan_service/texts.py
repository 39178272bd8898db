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
    "held": {"zh": "积分审核中", "en": "Your points are being reviewed"},
    "denied": {
        "zh": "此次扫码不符合活动规则",
        "en": "This scan does not qualify under the campaign's rules",
    },
    "already_yours": {"zh": "此码的积分已归您所有", "en": "This code's points are already yours"},
    "sign_in": {"zh": "登录会员，领取本次扫码积分", "en": "Sign in to earn points for this scan"},
    "account": {"zh": "我的积分", "en": "My points"},
}


# The draw card: the result the server decided, and where its prize stands (by prize_state).
DRAW = {
    "title": {"zh": "扫码抽奖", "en": "Prize draw"},
    "won": {"zh": "恭喜获得 {prize}", "en": "You won {prize}"},
    "thanks": {"zh": "谢谢参与", "en": "No prize this time: thank you for taking part"},
    "cash": {"zh": "现金红包 {amount}", "en": "a cash red envelope of {amount}"},
    "points": {"zh": "{n} 积分", "en": "{n} points"},
    "held": {"zh": "奖品审核中", "en": "Your prize is being reviewed"},
    "claim": {"zh": "填写收货信息，领取奖品", "en": "Tell us where to send it"},
    "claimed": {"zh": "已提交收货信息，等待发货", "en": "Address received: it ships soon"},
    "shipped": {"zh": "奖品已发货", "en": "Your prize has been shipped"},
    "credited": {"zh": "已发放到您的账户", "en": "Added to your account"},
    "cash_sending": {"zh": "红包发放中", "en": "Your red envelope is on its way"},
    "cash_sent": {"zh": "红包已发放", "en": "Your red envelope has been sent"},
    "failed": {"zh": "发放失败，请联系品牌方", "en": "Delivery failed: please contact the brand"},
    "cancelled": {"zh": "奖品已取消", "en": "This prize was cancelled"},
    "my_prizes": {"zh": "我的奖品", "en": "My prizes"},
    "rules": {"zh": "活动规则", "en": "Campaign rules"},
    "prize_segment": {"zh": "奖", "en": "Prize"},
    "thanks_segment": {"zh": "谢", "en": "Thanks"},
}


# The public rules page of a campaign (/campaigns/<brand>/<id>).
RULES = {
    "zh": {
        "not_found_title": "未找到该活动",
        "not_found": "活动不存在或尚未发布。",
        "window": "活动时间",
        "window_text": "{start} 至 {end}（{tz}）",
        "status_scheduled": "未开始",
        "status_running": "进行中",
        "status_paused": "已暂停",
        "status_ended": "已结束",
        "rules": "活动规则",
        "prizes": "奖品与中奖概率",
        "prize": "奖品",
        "value": "价值",
        "stock": "数量",
        "odds": "中奖概率",
        "nothing": "未中奖",
        "fallback": "奖品发完或超出限额时改为：{name}",
        "odds_note": "概率为抽奖实际使用的精确分数；百分比仅供参考。",
        "fairness": "公平性承诺",
        "fairness_intro": "活动开始前，品牌已公布抽奖种子和奖品表的 SHA-256 哈希。"
        "每次抽奖的结果由种子和该次抽奖的输入（活动、商品码、会员）算出，活动结束后公布种子，"
        "任何人都可以重算每一次抽奖。",
        "algorithm": "算法",
        "seed_hash": "种子哈希",
        "table_hash": "奖品表哈希",
        "table": "奖品表（哈希原文）",
        "published_at": "公布时间",
        "not_revealed": "活动结束后将在此公布种子，届时可验证每一次抽奖。",
        "revealed": "种子已公布",
        "seed": "种子",
        "revealed_at": "公布时间",
        "seed_ok": "种子与活动前公布的哈希一致",
        "seed_bad": "种子与活动前公布的哈希不一致",
        "table_ok": "奖品表与活动前公布的哈希一致",
        "table_bad": "奖品表与活动前公布的哈希不一致",
        "draws": "本活动共抽奖 {n} 次",
        "draws_link": "全部抽奖记录及其输入（JSON）",
        "verify": "如何验证",
        "verify_intro": "用 Yima 命令行重算本活动的每一次抽奖，并与记录的结果比对：",
        "verify_manual": "也可以自行计算：对每条记录，x = HMAC-SHA256(种子, 4 字节计数器 ‖ "
        '"yima-draw-v1" ‖ 0x00 ‖ 输入的规范 JSON)，计数器从 0 起，'
        "若 x ≥ 2^256 − (2^256 mod 槽位数) 则计数器加 1 重算；slot = x mod 槽位数，"
        "按奖品表顺序找到 slot 所在的奖品。",
    },
    "en": {
        "not_found_title": "Campaign not found",
        "not_found": "There is no such campaign, or it is not published yet.",
        "window": "When",
        "window_text": "{start} to {end} ({tz})",
        "status_scheduled": "Not started",
        "status_running": "Running",
        "status_paused": "Paused",
        "status_ended": "Ended",
        "rules": "Rules",
        "prizes": "Prizes and odds",
        "prize": "Prize",
        "value": "Worth",
        "stock": "How many",
        "odds": "Chance",
        "nothing": "No prize",
        "fallback": "When a prize is out of stock or over a limit: {name}",
        "odds_note": "The fractions are the exact chances the draw uses; percentages are rounded.",
        "fairness": "Fairness commitments",
        "fairness_intro": "Before the campaign began, the brand published SHA-256 hashes of the "
        "draw's secret seed and of its prize table. Each draw's result is computed from the seed "
        "and the draw's inputs (campaign, code, member); the seed is revealed after the end, so "
        "anyone can recompute every draw.",
        "algorithm": "Algorithm",
        "seed_hash": "Seed hash",
        "table_hash": "Prize table hash",
        "table": "Prize table (as hashed)",
        "published_at": "Published",
        "not_revealed": "The seed will be revealed here when the campaign ends; every draw can "
        "be checked then.",
        "revealed": "The seed is revealed",
        "seed": "Seed",
        "revealed_at": "Revealed",
        "seed_ok": "The seed matches the hash published before the start",
        "seed_bad": "The seed does NOT match the hash published before the start",
        "table_ok": "The prize table matches the hash published before the start",
        "table_bad": "The prize table does NOT match the hash published before the start",
        "draws": "{n} draws were made in this campaign",
        "draws_link": "Every draw with its inputs (JSON)",
        "verify": "How to check",
        "verify_intro": "Recompute every draw of this campaign with the Yima command line and "
        "compare with the recorded results:",
        "verify_manual": "Or compute it yourself: for each record, x = HMAC-SHA256(seed, "
        '4-byte counter || "yima-draw-v1" || 0x00 || canonical JSON of the inputs), the counter '
        "from 0, moving on while x >= 2^256 - (2^256 mod slots); slot = x mod slots, and the "
        "prize is the one whose slots (in table order) hold slot.",
    },
}


def yuan(fen: int) -> str:
    """500 -> "¥5.00", 1234567 -> "¥12,345.67"."""
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def prize_state(kind: str | None, status: str | None) -> str | None:
    """Where a prize stands, in the words' keys of :data:`DRAW` (None: nothing to say)."""
    if kind is None or kind == "thanks" or status is None:
        return None
    if status in ("held", "cancelled", "failed"):
        return status
    if kind == "goods":
        return {"claim_wanted": "claim", "claimed": "claimed", "shipped": "shipped"}.get(status)
    if kind == "cash":
        return "cash_sent" if status == "done" else "cash_sending"
    return "credited"  # points and coupons: credited at once after the scan commits


def prize_text(
    kind: str | None, name: str | None, lang: str, *, amount_fen: int | None, points: int | None
) -> str:
    """The draw's headline: "恭喜获得 现金红包 ¥5.00", or "谢谢参与" for no prize."""
    if kind is None or kind == "thanks" or name is None:
        return DRAW["thanks"][lang]
    if kind == "cash" and amount_fen is not None:
        prize = DRAW["cash"][lang].format(amount=yuan(amount_fen))
    elif kind == "points" and points is not None:
        prize = DRAW["points"][lang].format(n=points)
    else:
        prize = name
    return DRAW["won"][lang].format(prize=prize)


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
