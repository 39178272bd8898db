"""Console routes for tags, RFM segments and segment exports.

Reads need the ``members`` permission, changes ``members_write`` (audited). Phones are masked
everywhere here, exports included; every export is audited with its filters and row count.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request, stream_with_context

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
from core.web import app_runtime, db_session
from members import rfm, tags
from members import schemas_segments as schemas
from members.models import RFM_SEGMENTS
from members.views._common import manage, manager

FILTERS: dict[str, dict[str, Any]] = {
    "segment": {"type": "string", "enum": list(RFM_SEGMENTS)},
    "tag_id": {"type": "integer", "minimum": 1},
    "tier_id": {"type": "integer", "minimum": 1},
    "sleeping": {"type": "boolean"},
}


def _tag_out(tenant_id: int, tag_id: int) -> dict[str, Any]:
    found = next(t for t in tags.list_tags(db_session(), tenant_id=tenant_id) if t.id == tag_id)
    return schemas.TagOut.of(found).model_dump(mode="json")


def _filters() -> dict[str, Any]:
    segment = request.args.get("segment") or None
    if segment is not None and segment not in RFM_SEGMENTS:
        raise ValidationFailedError.field("segment", "one of " + ", ".join(RFM_SEGMENTS))
    sleeping_text = request.args.get("sleeping", "")
    if sleeping_text not in ("", "true", "false"):
        raise ValidationFailedError.field("sleeping", "true or false")
    return {
        "segment": segment,
        "tag_id": query_int("tag_id", low=1),
        "tier_id": query_int("tier_id", low=1),
        "sleeping": None if sleeping_text == "" else sleeping_text == "true",
    }


# --- tags ---------------------------------------------------------------------------------------


@manage.get("/tags")
@operation(
    "The brand's member tags, with how many members carry each",
    tag="members",
    response=schemas.TagList,
)
@secured
def list_tags() -> Any:
    principal = manager("members")
    found = tags.list_tags(db_session(), tenant_id=principal.tenant_id)
    return schemas.TagList(items=[schemas.TagOut.of(t) for t in found]).model_dump(mode="json")


@manage.post("/tags")
@operation(
    "Create a manual tag, or an automatic one with its rule (evaluated at once)",
    tag="members",
    body=schemas.TagIn,
    response=schemas.TagOut,
    status=201,
    errors=(409,),
)
@secured
def create_tag() -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.TagIn)
    tag = tags.create_tag(
        db_session(), tenant_id=principal.tenant_id, name=body.name, kind=body.kind, rule=body.rule
    )
    audit(
        "members.tag.create",
        target_type="tag",
        target_id=tag.id,
        detail={"name": tag.name, "kind": tag.kind, "rule": tag.rule},
    )
    return _tag_out(principal.tenant_id, tag.id), 201


@manage.patch("/tags/<id:tag_id>")
@operation(
    "Rename a tag or change an automatic tag's rule (re-evaluated at once)",
    tag="members",
    body=schemas.TagPatch,
    response=schemas.TagOut,
    errors=(409,),
)
@secured
def update_tag(tag_id: int) -> Any:
    principal = manager("members_write")
    body = parse_body(schemas.TagPatch)
    tag = tags.update_tag(
        db_session(), tenant_id=principal.tenant_id, tag_id=tag_id, name=body.name, rule=body.rule
    )
    audit(
        "members.tag.update",
        target_type="tag",
        target_id=tag.id,
        detail=body.model_dump(mode="json", exclude_none=True),
    )
    return _tag_out(principal.tenant_id, tag.id)


@manage.delete("/tags/<id:tag_id>")
@operation("Delete a tag (and take it off every member)", tag="members", status=204)
@secured
def delete_tag(tag_id: int) -> Any:
    principal = manager("members_write")
    tags.delete_tag(db_session(), tenant_id=principal.tenant_id, tag_id=tag_id)
    audit("members.tag.delete", target_type="tag", target_id=tag_id)
    return "", 204


@manage.put("/members/<id:member_id>/tags/<id:tag_id>")
@operation(
    "Put a manual tag on a member (idempotent; an automatic tag: 409)",
    tag="members",
    response=schemas.MemberTagOut,
    errors=(409,),
)
@secured
def tag_member(member_id: int, tag_id: int) -> Any:
    principal = manager("members_write")
    added = tags.tag_member(
        db_session(), tenant_id=principal.tenant_id, member_id=member_id, tag_id=tag_id
    )
    if added:
        audit(
            "members.member.tag",
            target_type="member",
            target_id=member_id,
            detail={"tag_id": tag_id},
        )
    return schemas.MemberTagOut(member_id=member_id, tag_id=tag_id, added=added).model_dump()


@manage.delete("/members/<id:member_id>/tags/<id:tag_id>")
@operation(
    "Take a manual tag off a member (idempotent; an automatic tag: 409)",
    tag="members",
    status=204,
    errors=(409,),
)
@secured
def untag_member(member_id: int, tag_id: int) -> Any:
    principal = manager("members_write")
    removed = tags.untag_member(
        db_session(), tenant_id=principal.tenant_id, member_id=member_id, tag_id=tag_id
    )
    if removed:
        audit(
            "members.member.untag",
            target_type="member",
            target_id=member_id,
            detail={"tag_id": tag_id},
        )
    return "", 204


@manage.post("/tags/evaluate")
@operation("Re-evaluate every automatic tag now", tag="members", response=schemas.EvaluateOut)
@secured
def evaluate_tags() -> Any:
    principal = manager("members_write")
    done = tags.evaluate_tags(db_session(), tenant_id=principal.tenant_id)
    audit(
        "members.tag.evaluate",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail=done.__dict__,
    )
    return schemas.EvaluateOut(**done.__dict__).model_dump()


# --- segments -------------------------------------------------------------------------------------


@manage.get("/segments")
@operation(
    "RFM segments, tiers, sleeping and churn-risk members: counts with zh/en labels",
    tag="members",
    response=schemas.SummaryOut,
)
@secured
def segment_summary() -> Any:
    principal = manager("members")
    summary = rfm.segment_summary(db_session(), tenant_id=principal.tenant_id)
    return schemas.SummaryOut(**summary).model_dump(mode="json")


@manage.post("/segments/compute")
@operation(
    "Recompute the brand's RFM scores and segments now", tag="members", response=schemas.RfmRunOut
)
@secured
def compute_segments() -> Any:
    principal = manager("members_write")
    run = rfm.compute_rfm(db_session(), tenant_id=principal.tenant_id)
    audit(
        "members.segment.compute",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail={"members": run.members},
    )
    return schemas.RfmRunOut(**run.__dict__).model_dump()


@manage.get("/segments/members")
@operation(
    "Members in a segment / with a tag / in a tier / sleeping (filters combine), a "
    "keyset page by member id",
    tag="members",
    response=schemas.SegmentMembersOut,
    query={**FILTERS, **PAGINATION},
)
@secured
def segment_members() -> Any:
    principal = manager("members")
    filters = _filters()
    limit, after = page_args()
    found = rfm.members_in(
        db_session(), tenant_id=principal.tenant_id, after=after, limit=limit, **filters
    )
    return schemas.SegmentMembersOut(
        items=[schemas.SegmentMemberOut.of(x) for x in found], next_after=next_after(found, limit)
    ).model_dump(mode="json")


@manage.get("/segments/export.csv")
@operation(
    "Export a selection as CSV (UTF-8 with BOM; phones masked; audited)",
    tag="members",
    query=FILTERS,
    binary="text/csv",
)
@secured
def export_segment() -> Response:
    principal = manager("members")
    filters = _filters()
    session = db_session()
    rfm.check_filters(
        session,
        tenant_id=principal.tenant_id,
        segment=filters["segment"],
        tag_id=filters["tag_id"],
        tier_id=filters["tier_id"],
    )
    rows = rfm.count_in(session, tenant_id=principal.tenant_id, **filters)
    audit(
        "members.segment.export",
        target_type="tenant",
        target_id=principal.tenant_id,
        detail={"filters": filters, "rows": rows},
    )
    # The audit commits with this request, before the body streams (from its own read-only
    # session, page by page).
    body = rfm.export_csv(app_runtime(), tenant_id=principal.tenant_id, **filters)
    name = "members-" + (filters["segment"] or "selection") + ".csv"
    return Response(
        stream_with_context(body),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Row-Count": str(rows),
            "Cache-Control": "no-store",
        },
    )
