"""What campaign tests share: a brand with members, a campaign config, a scan's reward."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

import campaigns
import members
from campaigns.lifecycle import create_campaign, schedule_campaign
from campaigns.models import Campaign
from core.runtime import Runtime
from tests.factories import Brand, make_brand

NOW = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC)  # a Sunday, 12:00 in Shanghai
START = NOW - dt.timedelta(days=1)
END = NOW + dt.timedelta(days=9)


def config(**changes: Any) -> dict[str, Any]:
    """A campaign with a draw: 10 points a scan, cash, points and goods prizes, a fallback."""
    base: dict[str, Any] = {
        "name": "双十一扫码有礼",
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
        "earn": {"points_per_scan": 10},
        "draw": {
            "prizes": [
                {
                    "key": "cash",
                    "name": "现金红包 ¥5",
                    "kind": "cash",
                    "probability": "1/10",
                    "stock": 3,
                    "amount_fen": 500,
                },
                {
                    "key": "p50",
                    "name": "50 积分",
                    "kind": "points",
                    "probability": "1/5",
                    "stock": 100,
                    "points": 50,
                },
                {
                    "key": "mug",
                    "name": "马克杯",
                    "kind": "goods",
                    "probability": "1/20",
                    "stock": 2,
                    "value_fen": 3900,
                },
                {"key": "thanks", "name": "谢谢参与", "kind": "thanks", "probability": "0"},
            ],
            "fallback": "thanks",
        },
        "fraud": {"enabled": False},
    }
    for key, value in changes.items():
        if key == "draw" and isinstance(value, dict):
            base["draw"] = {**base["draw"], **value}
        else:
            base[key] = value
    return base


def live_campaign(session: Session, runtime: Runtime, brand: Brand, **changes: Any) -> Campaign:
    made = create_campaign(session, tenant_id=brand.tenant_id, raw=config(**changes), actor="t")
    return schedule_campaign(
        session, runtime, tenant_id=brand.tenant_id, campaign_id=made.id, now=NOW
    )


def brand_with_members(
    session: Session, runtime: Runtime, *, count: int = 3, quantity: int = 2500, slug: str = "acme"
) -> tuple[Brand, list[members.SignedIn]]:
    brand = make_brand(session, runtime, slug=slug, quantity=quantity)
    signed: list[members.SignedIn] = []
    for i in range(count):
        member = members.enrol_member(
            session,
            runtime,
            tenant_id=brand.tenant_id,
            phone=f"1380013{i:04d}",
            now=NOW - dt.timedelta(days=30),
        ).member
        signed.append(
            members.SignedIn(
                brand.tenant_id, member.id, 0, None, member.created_at, member.phone_block
            )
        )
    return brand, signed


def scan_reward(
    session: Session,
    runtime: Runtime,
    brand: Brand,
    member: members.SignedIn,
    serial: int,
    *,
    verdict: str = "genuine",
    now: dt.datetime = NOW,
    device: str | None = None,
    ip: str | None = None,
) -> campaigns.ScanReward:
    return campaigns.reward_scan(
        session,
        runtime,
        member=member,
        facts=campaigns.ScanFacts(
            tenant_id=brand.tenant_id,
            batch_id=brand.batch_id,
            serial=serial,
            sku=f"{brand.slug}-SKU-1",
            verdict=verdict,
            timezone="Asia/Shanghai",
            device=device,
            ip=ip,
        ),
        now=now,
    )
