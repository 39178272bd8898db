"""One-time sign-in codes: sent after commit, kept as a hash, short-lived, used once, a few
guesses each, limited per phone and per IP — and one session per code under real concurrency."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import utcnow
from core.errors import ValidationFailedError
from core.ratelimit import MemoryRateLimiter
from core.runtime import Runtime
from members.identity import enrol_member
from members.models import Member, MemberSession, OneTimeCode
from members.otp import (
    LogSmsSender,
    OtpInvalidError,
    OtpRateLimitedError,
    RecordingSmsSender,
    purge_codes,
    send_code,
    sign_in,
    sms_sender_for,
    use_rate_limiter,
    use_sms_sender,
    verify_code,
)
from members.sessions import member_of_token
from tests.conftest import PG_URL, make_settings
from tests.factories import make_brand

PHONE = "13712345678"


class Clock:
    """The limits' clock, moved by hand; it starts where a day (an hour, a minute) begins."""

    def __init__(self) -> None:
        self.now = 86_400.0 * 100

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tenant_id(runtime: Runtime) -> int:
    with runtime.db.unit_of_work() as session:
        return make_brand(session, runtime, quantity=10).tenant_id


@pytest.fixture
def sms(runtime: Runtime) -> RecordingSmsSender:
    sender = RecordingSmsSender()
    use_sms_sender(runtime, sender)
    return sender


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    clock = Clock()
    use_rate_limiter(runtime, MemoryRateLimiter(clock=clock))
    return clock


def send(runtime: Runtime, tenant_id: int, phone: str = PHONE, **kw: object) -> None:
    with runtime.db.unit_of_work() as session:
        send_code(session, runtime, tenant_id=tenant_id, phone=phone, **kw)  # type: ignore[arg-type]


def count(runtime: Runtime, model: object) -> int:
    with runtime.db.read_only() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]


def test_a_code_is_sent_after_commit_and_kept_only_as_a_hash(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    with pytest.raises(RuntimeError), runtime.db.unit_of_work() as session:
        send_code(session, runtime, tenant_id=tenant_id, phone=PHONE)
        raise RuntimeError("the request failed after the code was made")
    assert sms.sent == [] and count(runtime, OneTimeCode) == 0  # nothing sent, nothing kept
    clock.now += 3600
    send(runtime, tenant_id, "+86 137-1234-5678")
    [(to, text)] = sms.sent
    code = sms.last_code()
    assert to == "+8613712345678" and len(code) == 6 and code.isdigit()
    assert "5 分钟" in text and "acme brand" in text
    with runtime.db.read_only() as session:
        row = session.scalars(select(OneTimeCode)).one()
        assert code not in row.code_hash and PHONE not in row.phone_hash
        assert row.expires_at - row.created_at == dt.timedelta(minutes=5)


def test_the_log_sender_is_the_default_and_writes_the_code_to_the_log(
    runtime: Runtime, tenant_id: int, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(sms_sender_for(runtime), LogSmsSender)
    with caplog.at_level(logging.INFO, logger="yima.sms"):
        send(runtime, tenant_id)
    [record] = [r for r in caplog.records if r.name == "yima.sms"]
    assert "137****5678" in record.getMessage() and PHONE not in record.getMessage()
    assert re.search(r"验证码 [0-9]{6}，", record.getMessage())


def test_sign_in_creates_the_member_once_and_a_code_opens_one_session(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    send(runtime, tenant_id)
    code = sms.last_code()
    with runtime.db.unit_of_work() as session:
        first = sign_in(session, runtime, tenant_id=tenant_id, phone=PHONE, code=code)
    assert first.created and first.member.phone_masked == "137****5678"
    with pytest.raises(OtpInvalidError), runtime.db.unit_of_work() as session:
        sign_in(session, runtime, tenant_id=tenant_id, phone=PHONE, code=code)
    assert count(runtime, MemberSession) == 1
    clock.now += 120
    send(runtime, tenant_id)
    with runtime.db.unit_of_work() as session:
        again = sign_in(session, runtime, tenant_id=tenant_id, phone=PHONE, code=sms.last_code())
        assert member_of_token(session, again.token) is not None
    assert not again.created and again.member.id == first.member.id
    assert count(runtime, Member) == 1


def test_codes_expire_and_a_new_code_replaces_the_old_one(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    t0 = utcnow()
    send(runtime, tenant_id, now=t0)
    old = sms.last_code()
    with pytest.raises(OtpInvalidError) as late, runtime.db.unit_of_work() as session:
        verify_code(
            session,
            runtime,
            tenant_id=tenant_id,
            phone=PHONE,
            code=old,
            now=t0 + dt.timedelta(minutes=5),
        )
    assert late.value.errors == {"code": "expired or used"}
    clock.now += 120
    send(runtime, tenant_id, now=t0)
    new = sms.last_code()
    if new != old:  # one chance in a million that the two codes are the same
        with pytest.raises(OtpInvalidError), runtime.db.unit_of_work() as session:
            verify_code(session, runtime, tenant_id=tenant_id, phone=PHONE, code=old, now=t0)
    with runtime.db.unit_of_work() as session:
        verify_code(session, runtime, tenant_id=tenant_id, phone=PHONE, code=new, now=t0)


def test_five_wrong_guesses_spend_the_code(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    send(runtime, tenant_id)
    right = sms.last_code()
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    session = runtime.db.sessionmaker()
    try:
        for _ in range(5):
            with pytest.raises(OtpInvalidError):
                verify_code(session, runtime, tenant_id=tenant_id, phone=PHONE, code=wrong)
            session.commit()  # as the sign-in view does: the guess counts
        with pytest.raises(OtpInvalidError) as spent:
            verify_code(session, runtime, tenant_id=tenant_id, phone=PHONE, code=right)
        assert spent.value.errors == {"code": "too many attempts"}
    finally:
        session.close()
    with runtime.db.read_only() as session:
        assert session.scalars(select(OneTimeCode.attempts)).one() == 5
    with pytest.raises(ValidationFailedError) as bad:
        verify_code(runtime.db.sessionmaker(), runtime, tenant_id=tenant_id, phone=PHONE, code="12")
    assert "code" in bad.value.errors


def test_codes_are_limited_per_phone_and_per_ip(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    send(runtime, tenant_id)
    with pytest.raises(OtpRateLimitedError) as minute:
        send(runtime, tenant_id)
    assert 1 <= minute.value.retry_after <= 120 and minute.value.status == 429
    # Five an hour: four more, each once the minute has passed.
    for _ in range(4):
        clock.now += 121
        send(runtime, tenant_id)
    clock.now += 121
    with pytest.raises(OtpRateLimitedError) as hour:
        send(runtime, tenant_id)
    assert hour.value.retry_after > 120
    # Ten a day: after two hours, five more go, then no more that day.
    clock.now += 7200
    for _ in range(5):
        clock.now += 121
        send(runtime, tenant_id)
    clock.now += 7200
    with pytest.raises(OtpRateLimitedError) as day:
        send(runtime, tenant_id)
    assert day.value.retry_after > 3600
    assert len(sms.sent) == 10
    # Twenty an hour per IP, whatever the phones; other IPs are not affected.
    for n in range(20):
        send(runtime, tenant_id, f"1360000{n:04d}", ip="203.0.113.9")
    with pytest.raises(OtpRateLimitedError):
        send(runtime, tenant_id, "13500000000", ip="203.0.113.9")
    send(runtime, tenant_id, "13500000000", ip="203.0.113.10")


def test_checks_are_limited_per_phone(
    runtime: Runtime, tenant_id: int, database_url: str, tmp_path: Path
) -> None:
    strict = Runtime(
        make_settings(database_url, tmp_path / "strict", otp_checks_per_phone_per_hour=3)
    )
    try:
        use_sms_sender(strict, RecordingSmsSender())
        send(strict, tenant_id)
        session = strict.db.sessionmaker()
        try:
            for _ in range(3):
                with pytest.raises(OtpInvalidError):
                    verify_code(session, strict, tenant_id=tenant_id, phone=PHONE, code="000000")
            with pytest.raises(OtpRateLimitedError):
                verify_code(session, strict, tenant_id=tenant_id, phone=PHONE, code="000000")
        finally:
            session.close()
    finally:
        strict.close()


def test_old_codes_are_purged(
    runtime: Runtime, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    t0 = utcnow()
    send(runtime, tenant_id, now=t0 - dt.timedelta(days=2))
    clock.now += 120
    send(runtime, tenant_id, now=t0)
    with runtime.db.unit_of_work() as session:
        assert purge_codes(session, now=t0) == 1
    assert count(runtime, OneTimeCode) == 1


@pytest.mark.skipif(PG_URL is None, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_sign_ins_with_one_code_open_one_session(
    runtime: Runtime, backend: str, tenant_id: int, sms: RecordingSmsSender, clock: Clock
) -> None:
    for round_ in range(5):
        clock.now += 7300  # past the hourly limits on sending and checking
        send(runtime, tenant_id)
        code = sms.last_code()
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def attempt(
            barrier: threading.Barrier = barrier, code: str = code, outcomes: list[str] = outcomes
        ) -> None:
            barrier.wait()
            try:
                with runtime.db.unit_of_work() as session:
                    sign_in(session, runtime, tenant_id=tenant_id, phone=PHONE, code=code)
                outcomes.append("signed in")
            except OtpInvalidError:
                outcomes.append("refused")

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["refused"] * 5 + ["signed in"], round_
    assert count(runtime, MemberSession) == 5
    assert count(runtime, Member) == 1


@pytest.mark.skipif(PG_URL is None, reason="real concurrency: set YIMA_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_first_sign_ins_of_one_phone_make_one_member(
    runtime: Runtime, backend: str, tenant_id: int
) -> None:
    with runtime.db.unit_of_work() as session:  # the brand's key exists before the race
        enrol_member(session, runtime, tenant_id=tenant_id, phone="13000000000")
    for n in range(5):
        number = f"1310000000{n}"
        barrier = threading.Barrier(8)
        found: list[tuple[int, bool]] = []
        errors: list[BaseException] = []

        def enrol(
            number: str = number,
            barrier: threading.Barrier = barrier,
            found: list[tuple[int, bool]] = found,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                with runtime.db.unit_of_work() as session:
                    done = enrol_member(session, runtime, tenant_id=tenant_id, phone=number)
                    found.append((done.member.id, done.created))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=enrol) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len({member_id for member_id, _ in found}) == 1
        assert sum(created for _, created in found) == 1
    assert count(runtime, Member) == 6
