"""The members' scheduled work and erasure from the command line, and the same work as the
worker's beat tasks: each runs, does what it says, and changes nothing when run again."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner
from sqlalchemy import select

import members
from core.runtime import Runtime
from core.tasks import celery_app
from members import tasks
from members.identity import enrol_member, update_profile
from members.models import Member, RfmScore
from members.tags import create_tag
from members.tiers import create_tier
from tests.factories import make_brand
from yima.cli import main


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_runs_the_members_scheduled_work_and_erases(runtime: Runtime) -> None:
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=10)
        t = brand.tenant_id
        member = enrol_member(session, runtime, tenant_id=t, phone="13700001111").member
        update_profile(
            session,
            tenant_id=t,
            member_id=member.id,
            changes={"birthday": today.replace(year=1990), "nickname": "阿明"},
        )
        members.reward_scan(
            session,
            runtime,
            member=members.SignedIn(t, member.id, 0, None),
            tenant_id=t,
            batch_id=brand.batch_id,
            serial=1,
            verdict="genuine",
            timezone="Asia/Shanghai",
        )
        create_tier(session, runtime, tenant_id=t, rank=0, name="普通")
        create_tag(
            session,
            tenant_id=t,
            name="扫码用户",
            kind="auto",
            rule={"all": [{"field": "scans", "days": 30, "min": 1}]},
        )
        member_id = member.id

    assert "1 member(s) changed tier" in run("members", "review-tiers")  # into the entry tier
    assert "0 member(s) changed tier" in run("members", "review-tiers")
    day = today.isoformat()
    assert "1 birthday reward(s) credited" in run("members", "birthdays", "--date", day)
    assert "0 birthday reward(s) credited" in run("members", "birthdays", "--date", day)
    assert "1 member(s) of 1 brand(s) scored" in run("members", "rfm")
    assert "1 automatic tag(s) evaluated: 0 member(s) tagged" in run("members", "tags")
    with runtime.db.read_only() as session:
        assert session.get(RfmScore, member_id).frequency == 1  # type: ignore[union-attr]
        assert members.balance_of(session, member_id).active == 100  # the birthday points

    assert f"member {member_id} erased" in run("members", "erase", str(member_id))
    with runtime.db.read_only() as session:
        erased = session.get(Member, member_id)
        assert erased is not None and erased.status == "erased"
        assert erased.phone_sealed is None and erased.nickname is None and erased.birthday is None


def test_every_members_task_is_on_the_beat_and_idempotent(runtime: Runtime) -> None:
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    for name in (
        "members.activate_pending_points",
        "members.expire_points",
        "members.review_tiers",
        "members.grant_birthday_points",
        "members.purge_codes",
        "members.compute_rfm",
        "members.evaluate_tags",
    ):
        assert name in scheduled and name in celery_app.tasks
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=1)
        enrol_member(session, runtime, tenant_id=brand.tenant_id, phone="13700002222")
    for task in (tasks.review_tiers, tasks.grant_birthday_points, tasks.purge_codes):
        assert task.run() == 0  # nothing due: nothing done, twice
        assert task.run() == 0
    assert tasks.compute_rfm.run() == 1 and tasks.compute_rfm.run() == 1  # one row, rewritten
    with runtime.db.read_only() as session:
        assert len(session.scalars(select(RfmScore)).all()) == 1


def test_old_member_tokens_are_purged(runtime: Runtime) -> None:
    from members.models import MemberSession
    from members.sessions import close_session, open_session

    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    with runtime.db.unit_of_work() as session:
        brand = make_brand(session, runtime, quantity=1)
        member = members.create_member(session, tenant_id=brand.tenant_id)
        open_session(session, tenant_id=brand.tenant_id, member_id=member.id, now=long_ago)
        live = open_session(session, tenant_id=brand.tenant_id, member_id=member.id)
        signed_out = open_session(session, tenant_id=brand.tenant_id, member_id=member.id)
        found = members.member_of_token(session, signed_out)
        assert found is not None
        close_session(session, session_id=found.session_id)
    assert tasks.purge_codes.run() == 1  # the expired one; a fresh sign-out waits 30 days
    with runtime.db.read_only() as session:
        assert members.member_of_token(session, live) is not None
        assert len(session.scalars(select(MemberSession)).all()) == 2
