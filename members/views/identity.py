"""Identity routes: sign-in by phone and code, the member's own profile and points, erasure;
and for the brand's staff, the members list, one member, the full phone (``pii``, audited),
CSV exports, point adjustments and erasure.

Thin: parse, authorise, call a service, serialise. Every query is scoped to the caller's
tenant (a member token names one; an API key names one).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, jsonify, request

from core.auth import audit
from core.errors import ValidationFailedError
from core.openapi import (
    PAGINATION,
    next_after,
    operation,
    page_args,
    parse_body,
    query_int,
    secured,
)
from core.services import tenant_timezone
from core.web import app_runtime, client_ip, db_session
from members import schemas_identity as schemas
from members.directory import (
    EXPORT_COLUMNS,
    MemberFilter,
    adjust_points,
    count_members,
    export_rows,
    list_members,
    member_filter,
    member_phone,
    member_row,
)
from members.erasure import erase_member
from members.errors import OtpInvalidError
from members.identity import (
    describe_me,
    phone_vault,
    points_summary,
    tenant_of_brand,
    update_profile,
)
from members.ledger import balance_of, entries_of
from members.member360 import member_360
from members.otp import send_code, sign_in
from members.services import get_member_or_raise
from members.sessions import SESSION_DAYS, close_session
from members.views._common import MEMBER_COOKIE, consumer, current_member, manage, manager

TAG = "members"

# --- sign-in --------------------------------------------------------------------------------


@consumer.post("/members/otp")
@operation(
    "Send a sign-in code to a phone by SMS",
    tag=TAG,
    body=schemas.OtpIn,
    response=schemas.OtpSent,
    status=202,
    errors=(415, 429),
)
def post_otp() -> Any:
    body = parse_body(schemas.OtpIn)
    session = db_session()
    tenant = tenant_of_brand(session, body.brand)
    sent = send_code(session, app_runtime(), tenant_id=tenant.id, phone=body.phone, ip=client_ip())
    return schemas.OtpSent(
        sent=True, expires_in=sent.expires_in, resend_after=sent.resend_after
    ).model_dump(), 202


@consumer.post("/members/sign-in")
@operation(
    "Sign in with the phone and its code (the member is created on first sign-in)",
    tag=TAG,
    body=schemas.SignInIn,
    response=schemas.SignedInOut,
    errors=(415, 429),
)
def post_sign_in() -> Any:
    body = parse_body(schemas.SignInIn)
    session = db_session()
    tenant = tenant_of_brand(session, body.brand)
    try:
        done = sign_in(
            session,
            app_runtime(),
            tenant_id=tenant.id,
            phone=body.phone,
            code=body.code,
            referral_code=body.referral_code,
            channel=body.channel,
            source=body.source,
        )
    except OtpInvalidError:
        # The answer is an error, yet the wrong guess must count against the code.
        session.commit()
        raise
    out = schemas.SignedInOut(
        token=done.token,
        created=done.created,
        member=schemas.Me.model_validate(describe_me(session, member=done.member)),
    )
    response = jsonify(out.model_dump(mode="json"))
    response.set_cookie(
        MEMBER_COOKIE,
        done.token,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )
    return response


@consumer.post("/me/sign-out")
@operation("Sign out (this token stops working)", tag=TAG, status=204)
@secured
def post_sign_out() -> Any:
    who = current_member()
    close_session(db_session(), session_id=who.session_id)
    return _without_cookie()


def _without_cookie() -> Response:
    response = Response(status=204)
    response.delete_cookie(MEMBER_COOKIE, httponly=True, samesite="Lax", secure=request.is_secure)
    return response


# --- the member's own data ----------------------------------------------------------------------


@consumer.get("/me")
@operation("The signed-in member", tag=TAG, response=schemas.Me)
@secured
def get_me() -> Any:
    who = current_member()
    session = db_session()
    member = get_member_or_raise(session, tenant_id=who.tenant_id, member_id=who.member_id)
    return schemas.Me.model_validate(describe_me(session, member=member)).model_dump(mode="json")


@consumer.patch("/me")
@operation(
    "Change my nickname, birthday, gender or region (null clears one)",
    tag=TAG,
    body=schemas.ProfilePatch,
    response=schemas.Me,
    errors=(409, 415),
)
@secured
def patch_me() -> Any:
    who = current_member()
    body = parse_body(schemas.ProfilePatch)
    session = db_session()
    member = update_profile(
        session,
        tenant_id=who.tenant_id,
        member_id=who.member_id,
        changes=body.model_dump(include=body.model_fields_set),
    )
    return schemas.Me.model_validate(describe_me(session, member=member)).model_dump(mode="json")


@consumer.delete("/me")
@operation("Erase my personal data (the account ends)", tag=TAG, status=204)
@secured
def delete_me() -> Any:
    who = current_member()
    # The member's own request: its IP is not kept with the record of the erasure.
    erase_member(
        db_session(),
        tenant_id=who.tenant_id,
        member_id=who.member_id,
        actor=f"member:{who.member_id}",
    )
    return _without_cookie()


@consumer.get("/me/points")
@operation(
    "My points: spendable, pending, and when they expire", tag=TAG, response=schemas.PointsOut
)
@secured
def get_my_points() -> Any:
    who = current_member()
    found = points_summary(db_session(), member_id=who.member_id)
    return schemas.PointsOut.model_validate(found).model_dump(mode="json")


@consumer.get("/me/points/history")
@operation(
    "My points history, newest first",
    tag=TAG,
    response=schemas.HistoryPage,
    query=PAGINATION,
)
@secured
def get_my_points_history() -> Any:
    who = current_member()
    limit, after = page_args()
    entries = list(entries_of(db_session(), member_id=who.member_id, after=after, limit=limit))
    return schemas.HistoryPage(
        items=[
            schemas.HistoryItem(
                id=e.id, kind=e.kind, points=e.points, reason=e.reason, at=e.created_at
            )
            for e in entries
        ],
        next_after=next_after(entries, limit),
    ).model_dump(mode="json")


# --- management -------------------------------------------------------------------------------

FILTERS: dict[str, dict[str, Any]] = {
    "phone": {"type": "string", "description": "the exact number, any spelling"},
    "tier_id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    "status": {"type": "string", "enum": ["active", "erased"]},
    "created_since": {"type": "string", "description": "ISO 8601 date or date-time"},
    "created_until": {"type": "string", "description": "ISO 8601 date or date-time (exclusive)"},
    "source": {"type": "string", "maxLength": 32},
    "channel": {"type": "string", "maxLength": 64},
}


def _when(name: str, zone: ZoneInfo) -> dt.datetime | None:
    """A date (midnight in the brand's timezone) or a date-time (naive: the brand's zone)."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)
        value = dt.datetime.fromisoformat(raw)
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01 east of UTC, say
        raise ValidationFailedError.field(name, "an ISO 8601 date or date-time") from None


def _text(name: str, longest: int) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > longest:
        raise ValidationFailedError.field(name, f"at most {longest} characters")
    return raw


def _filters(tenant_id: int) -> MemberFilter:
    session = db_session()
    zone = ZoneInfo(tenant_timezone(session, tenant_id))
    return member_filter(
        session,
        app_runtime(),
        tenant_id=tenant_id,
        phone=_text("phone", 32),
        tier_id=query_int("tier_id", low=1),
        status=_text("status", 8),
        created_since=_when("created_since", zone),
        created_until=_when("created_until", zone),
        source=_text("source", 32),
        channel=_text("channel", 64),
    )


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ValidationFailedError.field(name, "true or false")
    return raw in ("true", "1")


@manage.get("/members")
@operation(
    "List members (phones masked)",
    tag=TAG,
    response=schemas.MemberPage,
    query={**PAGINATION, **FILTERS},
)
@secured
def get_members() -> Any:
    principal = manager("members")
    limit, after = page_args()
    found = list(
        list_members(
            db_session(),
            tenant_id=principal.tenant_id,
            filters=_filters(principal.tenant_id),
            after_id=after,
            limit=limit,
        )
    )
    return schemas.MemberPage(
        items=[schemas.MemberOut.model_validate(member_row(m)) for m in found],
        next_after=next_after(found, limit),
    ).model_dump(mode="json")


@manage.get("/members/export.csv")
@operation(
    "Export members as CSV (UTF-8 with BOM); unmasked=true needs the pii permission and is audited",
    tag=TAG,
    query={"unmasked": {"type": "boolean", "default": False}, **FILTERS},
    binary="text/csv",
)
@secured
def get_members_export() -> Any:
    unmasked = _flag("unmasked")
    principal = manager("pii" if unmasked else "members")
    session = db_session()
    runtime = app_runtime()
    filters = _filters(principal.tenant_id)
    rows, top = count_members(session, tenant_id=principal.tenant_id, filters=filters)
    vault = phone_vault(session, runtime, principal.tenant_id) if unmasked else None
    audit(
        "members.export",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail={"filters": filters.described(), "rows": rows, "unmasked": unmasked},
    )
    tenant_id = principal.tenant_id

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # Excel opens UTF-8 only with the byte-order mark
        writer.writerow(EXPORT_COLUMNS)
        for n, row in enumerate(
            export_rows(runtime, tenant_id=tenant_id, filters=filters, upto_id=top, vault=vault),
            start=1,
        ):
            writer.writerow(row)
            if n % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    suffix = "-unmasked" if unmasked else ""
    return Response(
        lines(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="members{suffix}.csv"',
            "Cache-Control": "no-store",
        },
    )


@manage.get("/members/<id:member_id>")
@operation(
    "One member's 360 view: profile (phone masked), tier, points and lots, scans, orders, "
    "coupons, tags, RFM segment, tier history",
    tag=TAG,
    response=schemas.Member360Out,
)
@secured
def get_member(member_id: int) -> Any:
    principal = manager("members")
    found = member_360(
        db_session(), app_runtime(), tenant_id=principal.tenant_id, member_id=member_id
    )
    return schemas.Member360Out.model_validate(found).model_dump(mode="json")


@manage.get("/members/<id:member_id>/phone")
@operation(
    "A member's full phone number (pii permission; audited)",
    tag=TAG,
    response=schemas.PhoneOut,
    errors=(409,),
)
@secured
def get_member_phone(member_id: int) -> Any:
    principal = manager("pii")
    phone = member_phone(
        db_session(), app_runtime(), tenant_id=principal.tenant_id, member_id=member_id
    )
    audit("members.phone.view", target_type="member", target_id=member_id)
    return schemas.PhoneOut(phone=phone).model_dump()


@manage.post("/members/<id:member_id>/adjustments")
@operation(
    "Adjust a member's points by hand, with a reason (once per idempotency key)",
    tag=TAG,
    body=schemas.AdjustmentIn,
    response=schemas.AdjustmentOut,
    status=201,
    errors=(409, 415),
)
@secured
def post_adjustment(member_id: int) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.AdjustmentIn)
    session = db_session()
    done = adjust_points(
        session,
        app_runtime(),
        tenant_id=principal.tenant_id,
        member_id=member_id,
        points=body.points,
        reason=body.reason,
        idempotency_key=body.idempotency_key,
        actor=principal.actor,
    )
    if done.applied:
        audit(
            "members.points.adjust",
            target_type="member",
            target_id=member_id,
            detail={
                "points": body.points,
                "reason": body.reason,
                "idempotency_key": body.idempotency_key,
                "entry_id": done.entry_id,
            },
        )
    balance = balance_of(session, member_id)
    out = schemas.AdjustmentOut(
        entry_id=done.entry_id,
        applied=done.applied,
        balance=schemas.BalanceOut(active=balance.active, pending=balance.pending),
    )
    return out.model_dump(), 201 if done.applied else 200


@manage.post("/members/<id:member_id>/erase")
@operation(
    "Erase a member's personal data (the ledger and statistics stay, anonymous)",
    tag=TAG,
    response=schemas.ErasureOut,
)
@secured
def post_erase(member_id: int) -> Any:
    principal = manager("members_write")
    done = erase_member(
        db_session(),
        tenant_id=principal.tenant_id,
        member_id=member_id,
        actor=principal.actor,
        ip=client_ip(),
    )
    return schemas.ErasureOut(
        id=member_id, status="erased", erased_at=done.erased_at, already=done.already
    ).model_dump(mode="json")
