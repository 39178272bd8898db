"""Fixtures of the console tests: the console app, a brand with users of every role, and test
clients signed in as one of them (a session made directly, or through the sign-in form)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient

import console
from core import accounts
from core import services as core_services
from core.auth import SESSION_COOKIE
from core.models import ROLES, User
from core.runtime import Runtime

PASSWORD = "correct horse battery"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return console.create_app()  # on the fixture's runtime


@dataclass
class Staff:
    tenant_id: int
    slug: str
    users: dict[str, int]  # role -> user id
    distributor_id: int


def make_staff(session: object, *, slug: str, name: str) -> Staff:
    """A brand with a distributor and one user of each role (``<role>@<slug>.example.com``)."""
    import traceability

    tenant = core_services.create_tenant(session, slug=slug, name=name)  # type: ignore[arg-type]
    distributor = traceability.create_distributor(
        session,  # type: ignore[arg-type]
        tenant_id=tenant.id,
        code=f"{slug.upper()}-ZJ",
        name=f"{name} 浙江经销商",
        level="provincial",
        regions=["CN-ZJ"],
    )
    users = {}
    for role in ROLES:
        user = core_services.create_user(
            session,  # type: ignore[arg-type]
            tenant_id=tenant.id,
            email=f"{role}@{slug}.example.com",
            role=role,
            password=PASSWORD,
            name=f"{role} of {slug}",
            distributor_id=distributor.id if role == "distributor" else None,
        )
        users[role] = user.id
    return Staff(tenant.id, slug, users, distributor.id)


@pytest.fixture
def acme(runtime: Runtime) -> Staff:
    with runtime.db.unit_of_work() as session:
        return make_staff(session, slug="acme", name="Acme Tea")


@pytest.fixture
def rival(runtime: Runtime) -> Staff:
    with runtime.db.unit_of_work() as session:
        return make_staff(session, slug="rival", name="Rival Tea")


class Browser:
    """A test client signed in as one user, sending the session's CSRF token on request."""

    def __init__(self, client: FlaskClient, token: str, secret_key: str) -> None:
        self.client = client
        self.token = token
        self.csrf = accounts.csrf_token_for(secret_key, token)


@pytest.fixture
def signed_in(runtime: Runtime, app: Flask) -> Iterator[Callable[[int], Browser]]:
    """``signed_in(user_id)``: a client with a fresh active session of that user."""
    clients: list[FlaskClient] = []

    def make(user_id: int) -> Browser:
        with runtime.db.unit_of_work() as session:
            user = session.get(User, user_id)
            assert user is not None
            token = accounts.open_console_session(
                session, settings=runtime.settings, user=user, stage="active"
            )
        client = app.test_client()
        client.set_cookie(SESSION_COOKIE, token)
        clients.append(client)
        return Browser(client, token, runtime.settings.secret_key)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def form_token(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in_through_form(
    client: FlaskClient, *, brand: str, email: str, password: str, lang: str = "zh"
) -> object:
    page = client.get(f"/sign-in?lang={lang}")
    return client.post(
        "/sign-in",
        data={
            "csrf_token": form_token(page.text),
            "brand": brand,
            "email": email,
            "password": password,
        },
    )
