"""Distributors: the brand's hierarchy of national / provincial distributors, dealers and
retailers, each with its channel and authorised sales regions (traceability/regions.py).

A distributor with no regions of its own sells where its parent may: the authorised regions of a
dealer are its own if it has any, else the nearest ancestor's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import services as core_services
from core.db import after_commit
from core.errors import ValidationFailedError
from core.runtime import Runtime
from traceability.errors import DistributorConflictError, DistributorNotFoundError
from traceability.models import (
    CHANNELS,
    DISTRIBUTOR_LEVELS,
    Distributor,
    DistributorKey,
    DistributorRegion,
)
from traceability.regions import parse_regions

if TYPE_CHECKING:
    from core.auth import Principal

MAX_DEPTH = 8


def _check_fields(
    *, code: object = None, name: object = None, level: object = None, channel: object = None
) -> None:
    if code is not None and (not isinstance(code, str) or not 1 <= len(code.strip()) <= 64):
        raise ValidationFailedError.field("code", "1-64 characters")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name.strip()) <= 200):
        raise ValidationFailedError.field("name", "1-200 characters")
    if level is not None and level not in DISTRIBUTOR_LEVELS:
        raise ValidationFailedError.field("level", f"one of {', '.join(DISTRIBUTOR_LEVELS)}")
    if channel is not None and channel not in CHANNELS:
        raise ValidationFailedError.field("channel", f"one of {', '.join(CHANNELS)}")


def get_distributor(session: Session, *, tenant_id: int, distributor_id: int) -> Distributor | None:
    found = session.get(Distributor, distributor_id)
    return found if found is not None and found.tenant_id == tenant_id else None


def get_distributor_or_raise(
    session: Session, *, tenant_id: int, distributor_id: int
) -> Distributor:
    found = get_distributor(session, tenant_id=tenant_id, distributor_id=distributor_id)
    if found is None:
        raise DistributorNotFoundError(f"no distributor {distributor_id}")
    return found


def _check_parent(
    session: Session, *, tenant_id: int, parent_id: int | None, child_id: int | None
) -> None:
    node = parent_id
    for _ in range(MAX_DEPTH + 1):
        if node is None:
            return
        if node == child_id:
            raise ValidationFailedError.field("parent_id", "a distributor cannot be under itself")
        parent = get_distributor(session, tenant_id=tenant_id, distributor_id=node)
        if parent is None:
            raise ValidationFailedError.field("parent_id", f"no distributor {node}")
        node = parent.parent_id
    raise ValidationFailedError.field("parent_id", f"more than {MAX_DEPTH} levels")


def _set_regions(session: Session, distributor_id: int, regions: Sequence[str]) -> None:
    parsed = parse_regions(list(regions))
    session.execute(
        delete(DistributorRegion).where(DistributorRegion.distributor_id == distributor_id)
    )
    if parsed:
        session.execute(
            insert(DistributorRegion),
            [{"distributor_id": distributor_id, "region": r.code} for r in parsed],
        )


def create_distributor(
    session: Session,
    *,
    tenant_id: int,
    code: str,
    name: str,
    level: str,
    channel: str = "general",
    parent_id: int | None = None,
    regions: Sequence[str] = (),
    contact: str = "",
) -> Distributor:
    _check_fields(code=code, name=name, level=level, channel=channel)
    _check_parent(session, tenant_id=tenant_id, parent_id=parent_id, child_id=None)
    exists = select(Distributor.id).where(
        Distributor.tenant_id == tenant_id, Distributor.code == code.strip()
    )
    if session.scalar(exists) is not None:
        raise DistributorConflictError(
            f"distributor {code!r} already exists", errors={"code": "already taken"}
        )
    parse_regions(list(regions))  # 422 before anything is written
    distributor = Distributor(
        tenant_id=tenant_id,
        code=code.strip(),
        name=name.strip(),
        level=level,
        channel=channel,
        parent_id=parent_id,
        contact=contact[:200],
    )
    session.add(distributor)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same code
        raise DistributorConflictError(
            f"distributor {code!r} already exists", errors={"code": "already taken"}
        ) from exc
    _set_regions(session, distributor.id, regions)
    return distributor


def update_distributor(
    session: Session,
    runtime: Runtime,
    *,
    tenant_id: int,
    distributor_id: int,
    changes: dict[str, object],
) -> Distributor:
    """Change a distributor; scans see its new name and regions once this commits."""
    after_commit(session, lambda: forget_parties(runtime))
    distributor = get_distributor_or_raise(
        session, tenant_id=tenant_id, distributor_id=distributor_id
    )
    _check_fields(
        name=changes.get("name"), level=changes.get("level"), channel=changes.get("channel")
    )
    if "parent_id" in changes:
        parent = changes["parent_id"]
        if parent is not None and not isinstance(parent, int):
            raise ValidationFailedError.field("parent_id", "a distributor id or null")
        _check_parent(session, tenant_id=tenant_id, parent_id=parent, child_id=distributor.id)
        distributor.parent_id = parent
    for name in ("name", "level", "channel", "contact"):
        if name in changes and changes[name] is not None:
            setattr(distributor, name, str(changes[name]).strip())
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise ValidationFailedError.field("active", "true or false")
        distributor.active = changes["active"]
    if "regions" in changes:
        regions = changes["regions"]
        if not isinstance(regions, list):
            raise ValidationFailedError.field("regions", "a list of regions")
        _set_regions(session, distributor.id, regions)
    session.flush()
    return distributor


def list_distributors(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    parent_id: int | None = None,
) -> Sequence[Distributor]:
    stmt = select(Distributor).where(Distributor.tenant_id == tenant_id, Distributor.id > after_id)
    if parent_id is not None:
        stmt = stmt.where(Distributor.parent_id == parent_id)
    return session.scalars(stmt.order_by(Distributor.id).limit(limit)).all()


def own_regions(session: Session, distributor_id: int) -> list[str]:
    return list(
        session.scalars(
            select(DistributorRegion.region)
            .where(DistributorRegion.distributor_id == distributor_id)
            .order_by(DistributorRegion.region)
        )
    )


_UP = text(
    "WITH RECURSIVE up(id, parent_id, depth) AS ("
    " SELECT id, parent_id, 0 FROM trace_distributors WHERE id = :d"
    " UNION ALL SELECT t.id, t.parent_id, up.depth + 1 FROM trace_distributors t"
    " JOIN up ON t.id = up.parent_id WHERE up.depth < :max)"
    " SELECT up.id, up.depth, r.region FROM up"
    " LEFT JOIN trace_distributor_regions r ON r.distributor_id = up.id"
    " ORDER BY up.depth, r.region"
)


def authorised_regions(session: Session, distributor_id: int) -> tuple[int, list[str]]:
    """(the distributor whose regions apply, its regions): its own, else the nearest ancestor's
    (one query up the hierarchy)."""
    rows = session.execute(_UP, {"d": distributor_id, "max": MAX_DEPTH}).all()
    for depth in sorted({r.depth for r in rows}):
        regions = [r.region for r in rows if r.depth == depth and r.region is not None]
        if regions:
            return next(r.id for r in rows if r.depth == depth), regions
    return distributor_id, []


@dataclass(frozen=True)
class Party:
    """A distributor as a scan needs it: its name and where it may sell."""

    id: int
    name: str
    region_owner_id: int
    regions: tuple[str, ...]


PARTY_TTL = 10.0  # seconds a process trusts its copy; a change elsewhere shows within this


def party(runtime: Runtime, session: Session, distributor_id: int) -> Party | None:
    """The distributor's name and authorised regions, kept per process for ten seconds (a scan
    of a shipped code needs them, and they change seldom). The copy lives on the runtime."""
    cache: dict[int, tuple[float, Party | None]] = runtime.__dict__.setdefault(
        "_traceability_parties", {}
    )
    hit = cache.get(distributor_id)
    if hit is not None and time.monotonic() - hit[0] < PARTY_TTL:
        return hit[1]
    name = session.scalar(select(Distributor.name).where(Distributor.id == distributor_id))
    found = None
    if name is not None:
        owner, regions = authorised_regions(session, distributor_id)
        found = Party(distributor_id, name, owner, tuple(regions))
    cache[distributor_id] = (time.monotonic(), found)
    return found


def forget_parties(runtime: Runtime) -> None:
    runtime.__dict__.pop("_traceability_parties", None)


def ancestors_of(session: Session, distributor_id: int) -> list[int]:
    """The distributor's parents, nearest first."""
    out: list[int] = []
    node = session.scalar(select(Distributor.parent_id).where(Distributor.id == distributor_id))
    while node is not None and len(out) <= MAX_DEPTH:
        out.append(node)
        node = session.scalar(select(Distributor.parent_id).where(Distributor.id == node))
    return out


def bind_api_key(session: Session, *, distributor_id: int, api_key_id: int) -> None:
    session.add(DistributorKey(api_key_id=api_key_id, distributor_id=distributor_id))
    session.flush()


def issue_distributor_key(
    session: Session, *, tenant_id: int, distributor_id: int, name: str, user_id: int | None = None
) -> core_services.IssuedApiKey:
    """A new API key of the distributor role acting for the brand's distributor (404 for
    another brand's); its token is in the answer only."""
    get_distributor_or_raise(session, tenant_id=tenant_id, distributor_id=distributor_id)
    issued = core_services.create_api_key(
        session, tenant_id=tenant_id, name=name, role="distributor", user_id=user_id
    )
    bind_api_key(session, distributor_id=distributor_id, api_key_id=issued.key.id)
    return issued


def distributor_of_api_key(session: Session, api_key_id: int) -> int | None:
    return session.scalar(
        select(DistributorKey.distributor_id).where(DistributorKey.api_key_id == api_key_id)
    )


def distributor_of_principal(session: Session, principal: Principal) -> int | None:
    """The distributor a caller with the distributor role acts for: a console user's own
    (``principal.distributor_id``) or its API key's binding; None when it has none."""
    if principal.api_key_id is None:
        return principal.distributor_id
    return distributor_of_api_key(session, principal.api_key_id)
