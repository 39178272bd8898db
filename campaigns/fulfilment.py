"""Delivering prizes through an outbox: written with the draw, worked after commit, never twice.

The draw's transaction writes one ``campaigns_fulfilments`` row per prize (unique per reward). A
task sent after commit delivers it, and a sweep on beat retries whatever is due (a worker that
crashed, a provider that timed out):

- **points**: a ledger credit under the key ``prize:<reward>`` (once per key);
- **coupon**: one coupon of the prize's catalogue item, once per ``prize:<reward>``;
- **cash**: a red envelope through the payout provider (campaigns/payouts.py) with a merchant
  order number fixed when the row was written, so every retry — after a crash between paying and
  committing, or a timeout whose payment did go through — names the same envelope and the
  provider pays it once. "retry" from the provider is never read as "not paid";
- **goods**: waits for the winner's claim (shipping details, sealed like members' addresses),
  then the brand ships it.

A worker holds the row (``FOR UPDATE SKIP LOCKED``) while it delivers, so two workers never
deliver one row at the same time; the ledger key and the merchant order number make a delivery
that is repeated after a crash harmless.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

import members
from campaigns.errors import ClaimStateError, RewardNotFoundError
from campaigns.live import LivePrize
from campaigns.models import Campaign, Fulfilment, Prize, Reward
from campaigns.payouts import (
    PayoutProvider,
    PayoutRequest,
    RecordingPayoutProvider,
    merchant_order_no,
)
from core.db import UTCDateTime, fetch_all, utcnow
from core.errors import YimaError
from core.keyring import open_sealed, seal
from core.runtime import Runtime
from core.services import data_key, tenant_timezone

MAX_ATTEMPTS = 20
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600)
MERCHANT_TZ = ZoneInfo("Asia/Shanghai")  # WeChat Pay's day for order numbers and limits


# --- the provider, per runtime ------------------------------------------------------------------

_providers: dict[int, PayoutProvider] = {}
_providers_lock = threading.Lock()


def payout_provider(runtime: Runtime) -> PayoutProvider:
    """The runtime's payout provider: the one installed by :func:`use_payout_provider`, else
    the one the ``payout_provider`` setting names."""
    with _providers_lock:
        found = _providers.get(runtime.key)
        if found is None:
            path = Path(runtime.settings.data_dir) / "payouts.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            found = _providers[runtime.key] = RecordingPayoutProvider(path)
            runtime.on_close(lambda: _forget_provider(runtime.key))
        return found


def _forget_provider(key: int) -> None:
    with _providers_lock:
        _providers.pop(key, None)


def use_payout_provider(runtime: Runtime, provider: PayoutProvider) -> None:
    with _providers_lock:
        _providers[runtime.key] = provider


# --- writing the outbox -------------------------------------------------------------------------


_OUTBOX_COLUMNS = (
    "campaigns_fulfilments (reward_id, tenant_id, campaign_id, member_id, prize_id, kind, status,"
    " attempts, next_attempt_at, merchant_order_no, created_at, updated_at)"
)
_OUTBOX_VALUES = ":r, :t, :c, :m, :p, :k, :st, 0, :now, :o, :now, :now"
# The outbox row written after the reward row in the same statement (PostgreSQL): campaigns'
# services prefix it with the reward's UPDATE as ``WITH f AS (...)``.
OUTBOX_AFTER = f" INSERT INTO {_OUTBOX_COLUMNS} SELECT {_OUTBOX_VALUES} FROM f RETURNING id"
_ENQUEUE = text(f"INSERT INTO {_OUTBOX_COLUMNS} VALUES ({_OUTBOX_VALUES}) RETURNING id").bindparams(
    bindparam("now", type_=UTCDateTime())
)


def outbox_row(
    *,
    reward_id: int,
    tenant_id: int,
    campaign_id: int,
    member_id: int,
    prize: LivePrize,
    held: bool,
    merchant_id: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The parameters of a prize's outbox row (``st`` its status). A cash prize's merchant order
    number is fixed here, from the reward: every retry, in any worker, names the same envelope."""
    if held:
        status = "held"
    elif prize.kind == "goods":
        status = "claim_wanted"
    else:
        status = "pending"
    order_no = None
    if prize.kind == "cash":
        order_no = merchant_order_no(
            merchant_id, now.astimezone(MERCHANT_TZ).date(), reward_id % 10**10
        )
    return {
        "r": reward_id,
        "t": tenant_id,
        "c": campaign_id,
        "m": member_id,
        "p": prize.id,
        "k": prize.kind,
        "st": status,
        "now": now,
        "o": order_no,
    }


def enqueue(session: Session, row: dict[str, Any]) -> str:
    """Write the prize's outbox row (:func:`outbox_row`); its status. Delivery is sent after
    commit unless held or goods."""
    # Plain SQL, prepared on PostgreSQL: this runs inside the scan for every prize won.
    ((fulfilment_id,),) = fetch_all(session, _ENQUEUE, row)
    return enqueued(session, row, int(fulfilment_id))


def enqueued(session: Session, row: dict[str, Any], fulfilment_id: int) -> str:
    """The outbox row is written: send its delivery after commit when it is due now."""
    if row["st"] == "pending":
        send_delivery(session, fulfilment_id)
    return str(row["st"])


def send_delivery(session: Session, fulfilment_id: int) -> None:
    from campaigns.tasks import deliver
    from core.tasks import dispatch

    dispatch(session, deliver, fulfilment_id)


# --- delivering ---------------------------------------------------------------------------------


def deliver(
    session: Session, runtime: Runtime, *, fulfilment_id: int, now: dt.datetime | None = None
) -> str | None:
    """Deliver one prize if it is due and nobody else holds it; its status after, or None when
    there was nothing to do."""
    now = now or utcnow()
    row = session.scalars(
        select(Fulfilment)
        .where(Fulfilment.id == fulfilment_id, Fulfilment.status.in_(("pending", "retry")))
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    prize = session.get(Prize, row.prize_id)
    assert prize is not None
    row.attempts += 1
    row.updated_at = now
    key = f"prize:{row.reward_id}"
    if row.kind == "points":
        programme = members.get_programme(runtime, session, row.tenant_id)
        members.earn(
            session,
            tenant_id=row.tenant_id,
            member_id=row.member_id,
            points=prize.points or 0,
            business_key=key,
            expiry=programme.expiry,
            timezone=tenant_timezone(session, row.tenant_id),
            reason=f"prize {prize.name}"[:500],
            ref={"reward_id": row.reward_id, "campaign_id": row.campaign_id},
            now=now,
            once_per_key=True,
        )
        _done(row, now)
    elif row.kind == "coupon":
        assert prize.coupon_item_id is not None
        try:
            with session.begin_nested():
                row.coupon_code = members.grant_coupon(
                    session,
                    tenant_id=row.tenant_id,
                    member_id=row.member_id,
                    item_id=prize.coupon_item_id,
                    business_key=key,
                    now=now,
                )
        except YimaError as refused:
            # The prize's catalogue item is gone or is not a coupon: no retry can deliver it.
            # Marked failed (for the brand to see), so it never blocks the outbox's queue.
            row.status = "failed"
            row.last_code = refused.code[:32]
        else:
            _done(row, now)
    elif row.kind == "cash":
        campaign = session.get(Campaign, row.campaign_id)
        result = payout_provider(runtime).send(
            PayoutRequest(
                merchant_order_no=row.merchant_order_no or "",
                recipient=f"member:{row.member_id}",
                amount_fen=prize.amount_fen or 0,
                act_name=(campaign.name if campaign else "Yima")[:32],
                wishing=f"{prize.name}"[:128],
            )
        )
        row.last_code = result.code[:32]
        if result.outcome == "sent":
            row.provider_ref = result.provider_ref
            _done(row, now)
        elif result.outcome == "failed" or row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
        else:
            wait = (
                result.retry_after
                or BACKOFF_SECONDS[min(row.attempts - 1, len(BACKOFF_SECONDS) - 1)]
            )
            row.status = "retry"
            row.next_attempt_at = now + dt.timedelta(seconds=wait)
    session.flush()
    return row.status


def _done(row: Fulfilment, now: dt.datetime) -> None:
    row.status = "done"
    row.done_at = now
    row.next_attempt_at = None


def due_deliveries(
    session: Session, *, now: dt.datetime | None = None, limit: int = 500
) -> list[int]:
    """Outbox rows due now: never worked (a lost task, a crashed worker) or due for a retry."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(Fulfilment.id)
            .where(
                Fulfilment.status.in_(("pending", "retry")),
                Fulfilment.next_attempt_at <= now,
            )
            .order_by(Fulfilment.next_attempt_at)
            .limit(limit)
        )
    )


# --- goods claims -------------------------------------------------------------------------------


def _claim_key(session: Session, runtime: Runtime, tenant_id: int) -> bytes:
    return data_key(
        session,
        master_key=runtime.settings.master_key_bytes,
        tenant_id=tenant_id,
        purpose="prize-claims",
    )


def claim_goods(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    member_id: int,
    reward_id: int,
    shipping: Any,
    now: dt.datetime | None = None,
) -> Fulfilment:
    """The winner's shipping details for a goods prize (name, phone, address: 422 when wrong),
    sealed at rest. 409 ``claim_state`` unless the prize waits for its claim; a repeat with
    the same details is accepted (the same row comes back)."""
    now = now or utcnow()
    row = session.scalars(
        select(Fulfilment)
        .where(Fulfilment.reward_id == reward_id, Fulfilment.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None or row.member_id != member_id:
        raise RewardNotFoundError(f"no prize {reward_id} of yours")
    parcel = members.check_shipping(shipping)
    if row.kind != "goods" or row.status not in ("claim_wanted", "claimed"):
        raise ClaimStateError(
            f"this prize is {row.status}: it does not take shipping details",
            errors={"reward_id": row.status},
        )
    body = json.dumps(
        {"name": parcel.name, "phone": parcel.phone, "address": parcel.address},
        ensure_ascii=False,
    ).encode()
    row.shipping_sealed = seal(
        _claim_key(session, runtime, tenant_id), body, f"claim:{row.id}".encode()
    )
    row.status = "claimed"
    row.updated_at = now
    session.flush()
    return row


def shipping_of(session: Session, runtime: Runtime, row: Fulfilment) -> dict[str, str] | None:
    """The claim's shipping details, unsealed (for the brand's fulfilment team)."""
    if row.shipping_sealed is None:
        return None
    body = open_sealed(
        _claim_key(session, runtime, row.tenant_id),
        row.shipping_sealed,
        f"claim:{row.id}".encode(),
    )
    found: dict[str, str] = json.loads(body)
    return found


def _erase_claims(session: Session, tenant_id: int, member_id: int) -> int:
    """Erasure of a member (members.erase_member) empties their prize claims' shipping details
    and where their rewarded scans came from (device, IP, place)."""
    session.execute(
        update(Reward)
        .where(Reward.tenant_id == tenant_id, Reward.member_id == member_id)
        .values(device=None, ip=None, region=None)
        .execution_options(synchronize_session=False)
    )
    done = session.execute(
        update(Fulfilment)
        .where(
            Fulfilment.tenant_id == tenant_id,
            Fulfilment.member_id == member_id,
            Fulfilment.shipping_sealed.is_not(None),
        )
        .values(shipping_sealed=None)
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


members.on_erasure(_erase_claims)


def mark_shipped(
    session: Session,
    *,
    tenant_id: int,
    reward_id: int,
    tracking_no: str,
    now: dt.datetime | None = None,
) -> Fulfilment:
    """The brand shipped a claimed prize (409 unless claimed; a repeat with the same tracking
    number is accepted)."""
    row = session.scalars(
        select(Fulfilment)
        .where(Fulfilment.reward_id == reward_id, Fulfilment.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None:
        raise RewardNotFoundError(f"no prize {reward_id}")
    if row.status == "shipped" and row.tracking_no == tracking_no:
        return row
    if row.status != "claimed":
        raise ClaimStateError(f"this prize is {row.status}: only a claimed prize ships")
    row.status = "shipped"
    row.tracking_no = tracking_no[:64]
    row.done_at = row.updated_at = now or utcnow()
    session.flush()
    return row
