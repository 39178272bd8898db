"""The review queue: rewards the fraud rules held, and the brand's decisions on them.

- **release**: the held points are credited now (the same once-per-code ledger key as any scan;
  pending for the programme's window from now) and the held prize goes to delivery;
- **deny**: the reward and its prize are cancelled (a prize's unit is not put back in stock: its
  slot was issued, and giving it again would issue it twice);
- **claw back**: for a reward already granted: its points are reversed in the ledger (a deficit if
  spent) and its prize is cancelled if not yet delivered.

Each decision is guarded by the reward's status in the ``UPDATE`` (two reviewers deciding at once:
one wins, the other gets 409 ``review_state``) and audited, and moves the reward's count in the
campaign rollups from the old status to the new one in the same transaction
(campaigns/rollups.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import members
from campaigns import rollups
from campaigns.errors import ReviewStateError, RewardNotFoundError
from campaigns.models import Fulfilment, Reward
from core.db import utcnow
from core.errors import ConflictError, ValidationFailedError
from core.runtime import Runtime
from core.services import tenant_timezone

DECISIONS = ("release", "deny", "claw_back")


def held_rewards(
    session: Session, *, tenant_id: int, after: int | None = None, limit: int = 50
) -> Sequence[Reward]:
    """The review queue, oldest first."""
    stmt = select(Reward).where(Reward.tenant_id == tenant_id, Reward.status == "held")
    if after is not None:
        stmt = stmt.where(Reward.id > after)
    return session.scalars(stmt.order_by(Reward.id).limit(limit)).all()


def get_reward_or_raise(session: Session, *, tenant_id: int, reward_id: int) -> Reward:
    reward = session.get(Reward, reward_id)
    if reward is None or reward.tenant_id != tenant_id:
        raise RewardNotFoundError(f"no reward {reward_id}")
    return reward


def _move(
    session: Session,
    reward: Reward,
    *,
    from_status: str,
    to_status: str,
    actor: str,
    note: str,
    now: dt.datetime,
) -> None:
    moved = session.execute(
        update(Reward)
        .where(Reward.id == reward.id, Reward.status == from_status)
        .values(status=to_status, reviewed_by=actor[:64], reviewed_at=now, review_note=note[:500])
        .returning(Reward.id)
        .execution_options(synchronize_session=False)
    ).first()
    if moved is None:
        raise ReviewStateError(
            f"reward {reward.id} is not {from_status}", errors={"decision": "already decided"}
        )
    rollups.move_status(session, [reward], from_status=from_status, to_status=to_status)
    session.expire(reward)


def _fulfilment(session: Session, reward_id: int) -> Fulfilment | None:
    return session.scalars(
        select(Fulfilment).where(Fulfilment.reward_id == reward_id).with_for_update()
    ).first()


def decide(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    reward_id: int,
    decision: str,
    actor: str,
    note: str = "",
    now: dt.datetime | None = None,
) -> Reward:
    """Apply a reviewer's decision (module docstring); 409 when the reward is not in the state
    the decision needs (release and deny: held; claw back: granted or held)."""
    from campaigns.fulfilment import send_delivery

    if decision not in DECISIONS:
        raise ValidationFailedError.field("decision", "release, deny or claw_back")
    now = now or utcnow()
    reward = get_reward_or_raise(session, tenant_id=tenant_id, reward_id=reward_id)
    if decision == "release":
        _move(
            session,
            reward,
            from_status="held",
            to_status="granted",
            actor=actor,
            note=note,
            now=now,
        )
        if reward.points > 0:
            members.reward_scan(
                session,
                runtime,
                member=members.SignedIn(tenant_id, reward.member_id, 0, None),
                tenant_id=tenant_id,
                batch_id=reward.batch_id,
                serial=reward.serial,
                verdict="genuine",
                timezone=tenant_timezone(session, tenant_id),
                points=reward.points,
                now=now,
            )
        row = _fulfilment(session, reward.id)
        if row is not None and row.status == "held":
            row.status = "claim_wanted" if row.kind == "goods" else "pending"
            row.next_attempt_at = row.updated_at = now
            session.flush()
            if row.status == "pending":
                send_delivery(session, row.id)
    elif decision == "deny":
        _move(
            session, reward, from_status="held", to_status="denied", actor=actor, note=note, now=now
        )
        _cancel(session, reward.id, now)
    else:  # claw_back
        status = reward.status
        if status not in ("granted", "held"):
            raise ReviewStateError(f"reward {reward.id} is {status}: nothing to claw back")
        _move(
            session,
            reward,
            from_status=status,
            to_status="clawed_back",
            actor=actor,
            note=note,
            now=now,
        )
        if status == "granted":
            _reverse_points(
                session,
                tenant_id=tenant_id,
                batch_id=reward.batch_id,
                serial=reward.serial,
                reason=note or "clawed back",
                actor=actor,
                now=now,
            )
        _cancel(session, reward.id, now)
    session.flush()
    return reward


def _cancel(session: Session, reward_id: int, now: dt.datetime) -> None:
    """Cancel the reward's prize if not yet delivered; a points prize already delivered is
    reversed in the ledger (a cash envelope or shipped goods cannot be taken back here)."""
    row = _fulfilment(session, reward_id)
    if row is None:
        return
    if row.status in ("pending", "retry", "held", "claim_wanted", "claimed"):
        row.status = "cancelled"
        row.updated_at = now
        session.flush()
    elif row.status == "done" and row.kind == "points":
        with contextlib.suppress(ConflictError):
            members.reverse(
                session,
                tenant_id=row.tenant_id,
                original_key=f"prize:{reward_id}",
                reason="prize clawed back",
                now=now,
            )


def _reverse_points(
    session: Session,
    *,
    tenant_id: int,
    batch_id: int,
    serial: int,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> None:
    """Reverse the points a code's scan credited (nothing when it credited none)."""
    # A ConflictError: nothing was credited under the key (the code earned no points).
    with contextlib.suppress(ConflictError):
        members.reverse(
            session,
            tenant_id=tenant_id,
            original_key=members.scan_key(batch_id, serial),
            reason=f"clawed back: {reason}"[:500],
            actor=actor,
            now=now,
        )


def claw_back_recent(
    session: Session,
    *,
    tenant_id: int,
    member_id: int,
    since: dt.datetime,
    actor: str,
    reason: str,
    keep: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Claw back the member's rewards granted since ``since`` (the fraud rules' ``claw_back``:
    points still pending, prizes not yet delivered), except reward ``keep`` (the scan being
    judged). One guarded ``UPDATE``: rows another scan or a reviewer moves meanwhile are left to
    them, never an error. How many."""
    now = now or utcnow()
    taken = session.execute(
        update(Reward)
        .where(
            Reward.tenant_id == tenant_id,
            Reward.member_id == member_id,
            Reward.status == "granted",
            Reward.created_at >= since,
            Reward.id != (keep or 0),
        )
        .values(
            status="clawed_back", reviewed_by=actor[:64], reviewed_at=now, review_note=reason[:500]
        )
        .returning(*rollups.COLUMNS, Reward.batch_id, Reward.serial, Reward.points)
        .execution_options(synchronize_session=False)
    ).all()
    rollups.move_status(session, taken, from_status="granted", to_status="clawed_back")
    for row in taken:
        if row.points > 0:
            _reverse_points(
                session,
                tenant_id=tenant_id,
                batch_id=row.batch_id,
                serial=row.serial,
                reason=reason,
                actor=actor,
                now=now,
            )
        _cancel(session, row.id, now)
    return len(taken)
