from __future__ import annotations

import pytest
from sqlalchemy import select

from core import services
from core.errors import AuthenticationRequiredError, ConflictError, ValidationFailedError
from core.models import CodeKey
from core.runtime import Runtime


def test_api_keys_authenticate_until_revoked(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        tenant = services.create_tenant(session, slug="acme", name="Acme")
        issued = services.create_api_key(session, tenant_id=tenant.id, name="ci", role="analyst")
    with runtime.db.unit_of_work() as session:
        key = services.authenticate_api_key(session, issued.token)
        assert (key.tenant_id, key.role) == (tenant.id, "analyst")
        # Only a hash of the secret is stored.
        assert issued.token.split("_", 2)[2].encode() not in key.secret_hash
        with pytest.raises(AuthenticationRequiredError):
            last = issued.token[-1]
            services.authenticate_api_key(
                session, issued.token[:-1] + ("x" if last != "x" else "y")
            )
        services.revoke_api_key(session, tenant_id=tenant.id, key_id=key.id)
    with (
        runtime.db.unit_of_work() as session,
        pytest.raises(AuthenticationRequiredError, match="revoked"),
    ):
        services.authenticate_api_key(session, issued.token)


def test_tenant_slugs_are_validated_and_unique(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        with pytest.raises(ValidationFailedError) as bad:
            services.create_tenant(session, slug="Bad Slug", name="x")
        assert "slug" in bad.value.errors
        services.create_tenant(session, slug="acme", name="Acme")
        with pytest.raises(ConflictError):
            services.create_tenant(session, slug="acme", name="Acme again")


def test_users_check_their_password(runtime: Runtime) -> None:
    with runtime.db.unit_of_work() as session:
        tenant = services.create_tenant(session, slug="acme", name="Acme")
        user = services.create_user(
            session,
            tenant_id=tenant.id,
            email="Ops@Acme.cn",
            role="factory_operator",
            password="correct horse",
        )
        assert user.email == "ops@acme.cn"
        assert services.check_user_password(user, "correct horse")
        assert not services.check_user_password(user, "wrong horse")
        with pytest.raises(ValidationFailedError) as bad:
            services.create_user(session, tenant_id=tenant.id, email="x@acme.cn", role="boss")
        assert "role" in bad.value.errors


def test_rotation_keeps_exactly_one_current_key(runtime: Runtime) -> None:
    master = runtime.settings.master_key_bytes
    with runtime.db.unit_of_work() as session:
        tenant = services.create_tenant(session, slug="acme", name="Acme")
        first = services.create_code_key(session, master_key=master, tenant_id=tenant.id)
        second = services.create_code_key(session, master_key=master, tenant_id=tenant.id)
    with runtime.db.unit_of_work() as session:
        statuses = dict(session.execute(select(CodeKey.id, CodeKey.status)).all())
        assert statuses == {first.id: "active", second.id: "current"}
        # The stored secret is wrapped: unwrapping gives 32 bytes that are not in the row.
        unwrapped = {
            s.key_id: s.secret for s in services.load_key_secrets(session, master_key=master)
        }
        assert all(len(v) == 32 for v in unwrapped.values())
        row = session.get(CodeKey, first.id)
        assert row is not None and unwrapped[first.id] not in row.wrapped_secret


def test_the_database_refuses_a_second_current_key(runtime: Runtime) -> None:
    from sqlalchemy.exc import IntegrityError

    master = runtime.settings.master_key_bytes
    with runtime.db.unit_of_work() as session:
        tenant = services.create_tenant(session, slug="acme", name="Acme")
        key = services.create_code_key(session, master_key=master, tenant_id=tenant.id)
        tenant_id, wrapped = tenant.id, key.wrapped_secret
    with pytest.raises(IntegrityError), runtime.db.unit_of_work() as session:
        session.add(
            CodeKey(
                id=(key.id % 32767) + 1,
                tenant_id=tenant_id,
                status="current",
                wrapped_secret=wrapped,
            )
        )
        session.flush()
