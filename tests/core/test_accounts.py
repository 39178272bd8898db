"""Console accounts: passwords, sign-in and its lock-out, sessions, TOTP, CSRF tokens and the
admin's changes (each ends the user's sessions)."""

from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from core import accounts, passwords
from core import services as core_services
from core.db import utcnow
from core.errors import ConflictError, ValidationFailedError
from core.models import AuditEntry, ConsoleSession, SignInThrottle, User
from core.runtime import Runtime
from core.tasks import purge_console_sessions
from tests.conftest import PG_URL

PASSWORD = "correct horse battery"


@pytest.fixture
def brand(runtime: Runtime) -> dict[str, int]:
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="acme", name="Acme Tea")
        admin = core_services.create_user(
            session, tenant_id=tenant.id, email="boss@acme.cn", role="admin", password=PASSWORD
        )
        ops = core_services.create_user(
            session,
            tenant_id=tenant.id,
            email="ops@acme.cn",
            role="factory_operator",
            password=PASSWORD,
        )
        return {"tenant": tenant.id, "admin": admin.id, "ops": ops.id}


def sign_in(
    runtime: Runtime,
    email: str,
    password: str,
    *,
    brand: str = "acme",
    now: dt.datetime | None = None,
) -> accounts.SignInOutcome:
    with runtime.db.unit_of_work() as session:
        return accounts.attempt_sign_in(
            session,
            settings=runtime.settings,
            brand=brand,
            email=email,
            password=password,
            now=now,
        )


def who(runtime: Runtime, token: str | None, now: dt.datetime | None = None) -> object:
    with runtime.db.unit_of_work() as session:
        return accounts.session_of_token(session, settings=runtime.settings, token=token, now=now)


# --- passwords ----------------------------------------------------------------------------------


def test_passwords_are_scrypt_salted_and_verified() -> None:
    first, second = passwords.hash_password("s3cret pass"), passwords.hash_password("s3cret pass")
    assert first.startswith("$scrypt$ln=15,r=8,p=1$") and first != second  # salted
    assert passwords.verify_password(first, "s3cret pass")
    assert not passwords.verify_password(first, "s3cret pasS")
    assert not passwords.verify_password(first, "x" * 300)  # over-long: refused without a KDF
    assert not passwords.verify_password("$scrypt$ln=99,r=8,p=1$AA$AA", "s3cret pass")
    assert not passwords.needs_rehash(first)
    assert passwords.needs_rehash(generate_password_hash("s3cret pass", method="pbkdf2"))


def test_new_passwords_must_be_long_enough_and_not_the_email() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        passwords.check_new_password("short")
    with pytest.raises(ValueError, match="e-mail"):
        passwords.check_new_password("Boss@Acme.cn", email="boss@acme.cn")
    assert passwords.check_new_password("long enough") == "long enough"


def test_an_old_werkzeug_hash_signs_in_and_is_replaced_by_scrypt(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["ops"])
        assert user is not None
        user.password_hash = generate_password_hash(PASSWORD, method="pbkdf2")
    assert sign_in(runtime, "ops@acme.cn", PASSWORD).status == "signed_in"
    with runtime.db.unit_of_work() as session:
        stored = session.get(User, brand["ops"])
        assert stored is not None and stored.password_hash is not None
        assert stored.password_hash.startswith("$scrypt$")
    assert sign_in(runtime, "ops@acme.cn", PASSWORD).status == "signed_in"


# --- sign-in and lock-out -------------------------------------------------------------------------


def test_unknown_brand_email_and_wrong_password_answer_alike(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    answers = {
        sign_in(runtime, "boss@acme.cn", "wrong password"),
        sign_in(runtime, "nobody@acme.cn", PASSWORD),
        sign_in(runtime, "boss@acme.cn", PASSWORD, brand="no-such-brand"),
    }
    assert answers == {accounts.SignInOutcome("failed")}
    ok = sign_in(runtime, "boss@acme.cn", PASSWORD)
    assert ok.status == "signed_in" and ok.token and ok.token.startswith("cs_")
    with runtime.db.unit_of_work() as session:
        actions = [e.action for e in core_services.list_audit(session, tenant_id=brand["tenant"])]
        assert actions == ["user.sign_in"]


def test_five_failures_lock_the_email_for_fifteen_minutes_known_or_not(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    now = utcnow()
    for email in ("boss@acme.cn", "ghost@acme.cn"):
        outcomes = [
            sign_in(runtime, email, f"guess {i}", now=now + dt.timedelta(seconds=i))
            for i in range(5)
        ]
        assert [o.status for o in outcomes] == ["failed"] * 4 + ["locked"]
        assert outcomes[-1].locked_until == now + dt.timedelta(seconds=4, minutes=15)
    # Locked: even the right password is refused, in the same words as for the unknown e-mail.
    later = now + dt.timedelta(minutes=14)
    assert sign_in(runtime, "boss@acme.cn", PASSWORD, now=later).status == "locked"
    assert sign_in(runtime, "ghost@acme.cn", PASSWORD, now=later).status == "locked"
    # Another user of the brand is not locked; after the lock the right password works again.
    assert sign_in(runtime, "ops@acme.cn", PASSWORD, now=later).status == "signed_in"
    after = now + dt.timedelta(minutes=16)
    assert sign_in(runtime, "boss@acme.cn", PASSWORD, now=after).status == "signed_in"
    with runtime.db.unit_of_work() as session:
        locks = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "user.locked_out")
        ).all()
        assert sorted(e.detail["email"] for e in locks) == ["boss@acme.cn", "ghost@acme.cn"]


def test_failures_older_than_the_lock_period_are_forgotten(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    start = utcnow()
    for i in range(4):
        assert sign_in(runtime, "boss@acme.cn", "nope", now=start).status == "failed", i
    later = start + dt.timedelta(minutes=20)
    assert sign_in(runtime, "boss@acme.cn", "nope", now=later).status == "failed"
    assert sign_in(runtime, "boss@acme.cn", PASSWORD, now=later).status == "signed_in"


def test_a_disabled_user_cannot_sign_in(runtime: Runtime, brand: dict[str, int]) -> None:
    with runtime.db.unit_of_work() as session:
        accounts.set_disabled(
            session,
            tenant_id=brand["tenant"],
            user_id=brand["ops"],
            disabled=True,
            actor="test",
        )
    assert sign_in(runtime, "ops@acme.cn", PASSWORD).status == "failed"


@pytest.mark.skipif(not PG_URL, reason="concurrent writers: PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_failures_are_all_counted(runtime: Runtime, brand: dict[str, int]) -> None:
    """Ten guesses at once from ten threads: each counted, so the lock comes no later than the
    fifth (a count kept in Python, or read-then-write, would lose some)."""
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def guess(i: int) -> None:
        barrier.wait()
        outcomes.append(sign_in(runtime, "boss@acme.cn", f"guess {i}").status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("failed") == 4 and outcomes.count("locked") == 6
    assert sign_in(runtime, "boss@acme.cn", PASSWORD).status == "locked"


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_end_when_idle_at_their_limit_and_at_sign_out(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    start = utcnow()
    token = sign_in(runtime, "boss@acme.cn", PASSWORD, now=start).token
    with runtime.db.unit_of_work() as session:
        stored = session.scalars(select(ConsoleSession.token_hash)).all()
        assert token not in stored and len(stored) == 1  # only a hash is kept
    idle = runtime.settings.console_session_idle_minutes
    alive = who(runtime, token, now=start + dt.timedelta(minutes=idle - 1))
    assert isinstance(alive, accounts.SignedInUser) and alive.role == "admin"
    # Used just now, so it is idle only from then on; then idle too long.
    assert who(runtime, token, now=start + dt.timedelta(minutes=2 * idle - 2)) is not None
    assert who(runtime, token, now=start + dt.timedelta(minutes=3 * idle)) is None
    # However busy, a session ends at its absolute limit.
    token = sign_in(runtime, "boss@acme.cn", PASSWORD, now=start).token
    hours = runtime.settings.console_session_hours
    moment = start
    while moment < start + dt.timedelta(hours=hours - 1):
        moment += dt.timedelta(minutes=idle // 2)
        assert who(runtime, token, now=moment) is not None
    assert who(runtime, token, now=start + dt.timedelta(hours=hours)) is None
    # Sign-out ends it; a made-up or malformed token names nobody.
    token = sign_in(runtime, "boss@acme.cn", PASSWORD).token
    signed = who(runtime, token)
    assert isinstance(signed, accounts.SignedInUser)
    with runtime.db.unit_of_work() as session:
        accounts.sign_out(session, who=signed)
    assert who(runtime, token) is None
    assert who(runtime, "cs_" + "A" * 43) is None and who(runtime, "yk_x") is None


def test_a_new_password_role_or_disabling_ends_every_session(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    def tokens(n: int) -> list[str | None]:
        return [sign_in(runtime, "ops@acme.cn", PASSWORD).token for _ in range(n)]

    live = tokens(2)
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["ops"])
        assert user is not None
        accounts.change_own_password(session, user=user, current=PASSWORD, new="a new password")
    assert [who(runtime, t) for t in live] == [None, None]
    live = [sign_in(runtime, "ops@acme.cn", "a new password").token]
    with runtime.db.unit_of_work() as session:
        accounts.change_role(
            session,
            tenant_id=brand["tenant"],
            user_id=brand["ops"],
            role="analyst",
            distributor_id=None,
            actor="user:1:boss@acme.cn",
        )
    assert who(runtime, live[0]) is None
    fresh = sign_in(runtime, "ops@acme.cn", "a new password")
    signed = who(runtime, fresh.token)
    assert isinstance(signed, accounts.SignedInUser) and signed.role == "analyst"
    with runtime.db.unit_of_work() as session:
        accounts.set_disabled(
            session, tenant_id=brand["tenant"], user_id=brand["ops"], disabled=True, actor="t"
        )
    assert who(runtime, fresh.token) is None
    with runtime.db.unit_of_work() as session:
        actions = [e.action for e in core_services.list_audit(session, tenant_id=brand["tenant"])]
    assert {"user.password_change", "user.role_change", "user.disable"} <= set(actions)


def test_the_brand_keeps_an_active_admin(runtime: Runtime, brand: dict[str, int]) -> None:
    with runtime.db.unit_of_work() as session, pytest.raises(ConflictError):
        accounts.change_role(
            session,
            tenant_id=brand["tenant"],
            user_id=brand["admin"],
            role="analyst",
            distributor_id=None,
            actor="t",
        )
    with runtime.db.unit_of_work() as session, pytest.raises(ConflictError):
        accounts.set_disabled(
            session,
            tenant_id=brand["tenant"],
            user_id=brand["admin"],
            disabled=True,
            actor="t",
        )
    with runtime.db.unit_of_work() as session, pytest.raises(ValidationFailedError) as bad:
        accounts.change_role(
            session,
            tenant_id=brand["tenant"],
            user_id=brand["ops"],
            role="distributor",
            distributor_id=None,
            actor="t",
        )
    assert "distributor_id" in bad.value.errors


def test_csrf_tokens_belong_to_one_session() -> None:
    first = accounts.csrf_token_for("secret", "cs_one")
    assert accounts.csrf_token_matches("secret", "cs_one", first)
    assert not accounts.csrf_token_matches("secret", "cs_two", first)
    assert not accounts.csrf_token_matches("other secret", "cs_one", first)
    assert not accounts.csrf_token_matches("secret", "cs_one", None)
    assert not accounts.csrf_token_matches("secret", "cs_one", "")


# --- TOTP ---------------------------------------------------------------------------------------


def _code(secret_b32: str, at: dt.datetime) -> str:
    import base64

    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return TOTP(secret, 6, SHA1(), 30).generate(at.timestamp()).decode()


def test_totp_enrolment_second_factor_and_codes_used_once(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    start = dt.datetime(2026, 12, 1, 8, 0, 5, tzinfo=dt.UTC)
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["admin"])
        assert user is not None
        enrolment = accounts.begin_totp_enrolment(session, settings=runtime.settings, user=user)
        assert enrolment.uri.startswith("otpauth://totp/")
        query = parse_qs(urlsplit(enrolment.uri).query)
        assert query["issuer"] == ["Yima Acme Tea"] and query["secret"] == [enrolment.secret]
        assert unquote(urlsplit(enrolment.uri).path) == "/Yima Acme Tea:boss@acme.cn"
        # The secret is stored sealed, never as itself.
        assert user.totp_secret is not None
        assert enrolment.secret.encode() not in user.totp_secret
        with pytest.raises(ValidationFailedError):
            accounts.confirm_totp(
                session, settings=runtime.settings, user=user, code="000000", now=start
            )
        accounts.confirm_totp(
            session,
            settings=runtime.settings,
            user=user,
            code=_code(enrolment.secret, start),
            now=start,
        )
        assert user.totp_enabled_at is not None
    # The password alone opens only the second-factor step.
    step = sign_in(runtime, "boss@acme.cn", PASSWORD, now=start)
    assert step.status == "totp"
    waiting = who(runtime, step.token, now=start)
    assert isinstance(waiting, accounts.SignedInUser) and waiting.stage == "totp"

    def second(token: str | None, code: str, at: dt.datetime) -> accounts.SignInOutcome:
        with runtime.db.unit_of_work() as session:
            return accounts.complete_second_factor(
                session, settings=runtime.settings, token=token or "", code=code, now=at
            )

    # The enrolment's code cannot be used again; a code of the next step can, once.
    assert second(step.token, _code(enrolment.secret, start), start).status == "failed"
    later = start + dt.timedelta(seconds=30)
    done = second(step.token, _code(enrolment.secret, later), later)
    assert done.status == "signed_in" and done.token != step.token
    assert who(runtime, step.token, now=later) is None  # the waiting session is spent
    active = who(runtime, done.token, now=later)
    assert isinstance(active, accounts.SignedInUser) and active.stage == "active"
    again = sign_in(runtime, "boss@acme.cn", PASSWORD, now=later)
    assert second(again.token, _code(enrolment.secret, later), later).status == "failed"
    # The waiting step lasts five minutes.
    late = later + dt.timedelta(minutes=6)
    assert second(again.token, _code(enrolment.secret, late), late).status == "failed"
    with runtime.db.unit_of_work() as session:
        actions = [e.action for e in core_services.list_audit(session, tenant_id=brand["tenant"])]
    assert actions[:2] == ["user.sign_in", "user.totp_enable"]


def test_wrong_totp_codes_count_towards_the_lock(runtime: Runtime, brand: dict[str, int]) -> None:
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["admin"])
        assert user is not None
        enrolment = accounts.begin_totp_enrolment(session, settings=runtime.settings, user=user)
        accounts.confirm_totp(
            session, settings=runtime.settings, user=user, code=_code(enrolment.secret, now)
        )
    step = sign_in(runtime, "boss@acme.cn", PASSWORD)
    statuses = []
    for _ in range(5):
        with runtime.db.unit_of_work() as session:
            statuses.append(
                accounts.complete_second_factor(
                    session, settings=runtime.settings, token=step.token or "", code="000000"
                ).status
            )
    assert statuses == ["failed"] * 4 + ["locked"]
    assert sign_in(runtime, "boss@acme.cn", PASSWORD).status == "locked"


def test_an_admins_password_reset_lets_a_user_without_its_phone_back_in(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["ops"])
        assert user is not None
        enrolment = accounts.begin_totp_enrolment(session, settings=runtime.settings, user=user)
        accounts.confirm_totp(
            session, settings=runtime.settings, user=user, code=_code(enrolment.secret, now)
        )
    assert sign_in(runtime, "ops@acme.cn", PASSWORD).status == "totp"
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["ops"])
        assert user is not None
        accounts.set_password(
            session,
            user=user,
            password="handed over in person",
            actor="user:1:boss@acme.cn",
            action="user.password_reset",
        )
    assert sign_in(runtime, "ops@acme.cn", PASSWORD).status == "failed"
    assert sign_in(runtime, "ops@acme.cn", "handed over in person").status == "signed_in"
    with runtime.db.unit_of_work() as session:
        actions = [e.action for e in core_services.list_audit(session, tenant_id=brand["tenant"])]
    assert actions[1:3] == ["user.password_reset", "user.totp_disable"]


def test_ended_sessions_and_old_failure_counts_are_purged(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    long_ago = utcnow() - dt.timedelta(days=40)
    old = sign_in(runtime, "boss@acme.cn", PASSWORD, now=long_ago).token
    sign_in(runtime, "ghost@acme.cn", "nope", now=long_ago)
    live = sign_in(runtime, "boss@acme.cn", PASSWORD).token
    sign_in(runtime, "ghost@acme.cn", "nope")  # a fresh failure count survives
    assert purge_console_sessions.run() == 1
    assert who(runtime, old) is None and who(runtime, live) is not None
    with runtime.db.unit_of_work() as session:
        assert len(session.scalars(select(ConsoleSession)).all()) == 1
        assert session.scalar(select(SignInThrottle.failures)) == 1


def test_a_known_password_buys_no_fresh_guesses_at_the_code(
    runtime: Runtime, brand: dict[str, int]
) -> None:
    with runtime.db.unit_of_work() as session:
        user = session.get(User, brand["admin"])
        assert user is not None
        enrolment = accounts.begin_totp_enrolment(session, settings=runtime.settings, user=user)
        accounts.confirm_totp(
            session, settings=runtime.settings, user=user, code=_code(enrolment.secret, utcnow())
        )
    statuses = []
    for _ in range(3):  # the password again and again, two wrong codes each time
        step = sign_in(runtime, "boss@acme.cn", PASSWORD)
        for _ in range(2):
            with runtime.db.unit_of_work() as session:
                statuses.append(
                    accounts.complete_second_factor(
                        session, settings=runtime.settings, token=step.token or "", code="000000"
                    ).status
                )
    assert statuses[:5] == ["failed"] * 4 + ["locked"]
    assert sign_in(runtime, "boss@acme.cn", PASSWORD).status == "locked"
