"""``yima users`` as an operator uses it, in a real subprocess: create console users (a typed
password or a generated one), list them, reset a password; the users then sign in to the
console with what the command said."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import console
from core.runtime import Runtime
from tests.conftest import MASTER_KEY
from tests.console.conftest import form_token

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def yima(runtime: Runtime, database_url: str, tmp_path: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update(
        {
            "YIMA_DATA_DIR": str(tmp_path / "data"),
            "YIMA_DATABASE_URL": database_url,
            "YIMA_MASTER_KEY": MASTER_KEY,
        }
    )

    def run(
        *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "yima.cli", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    return run


def _signs_in(email: str, password: str) -> bool:
    with console.create_app().test_client() as client:
        page = client.get("/sign-in")
        answer = client.post(
            "/sign-in",
            data={
                "csrf_token": form_token(page.text),
                "brand": "tea-co",
                "email": email,
                "password": password,
            },
        )
        return answer.status_code == 303 and client.get("/").status_code == 200


def test_users_are_created_listed_and_reset_from_the_command_line(yima: Run) -> None:
    yima("tenants", "create", "tea-co", "--name", "Tea Co.")
    typed = yima(
        "users",
        "create",
        "--brand",
        "tea-co",
        "--email",
        "Boss@Tea.example",
        "--role",
        "admin",
        stdin="a long password\na long password\n",
    )
    assert "user boss@tea.example (admin) created at tea-co" in typed.stdout
    assert "a long password" not in typed.stdout  # not echoed
    made = yima(
        "users",
        "create",
        "--brand",
        "tea-co",
        "--email",
        "line@tea.example",
        "--role",
        "factory_operator",
        "--generate-password",
    ).stdout
    generated = re.search(r"password \(shown once\): (\S+)", made)
    assert generated and len(generated.group(1)) == 16
    # Bad input is one line naming the field, exit status 2.
    short = yima(
        "users",
        "create",
        "--brand",
        "tea-co",
        "--email",
        "x@tea.example",
        "--role",
        "analyst",
        stdin="short\nshort\n",
        ok=False,
    )
    assert short.returncode == 2 and "password: at least 8 characters" in short.stderr
    nobody = yima(
        "users",
        "create",
        "--brand",
        "tea-co",
        "--email",
        "d@tea.example",
        "--role",
        "distributor",
        "--generate-password",
        ok=False,
    )
    assert nobody.returncode == 2 and "distributor" in nobody.stderr
    listed = yima("users", "list", "--brand", "tea-co").stdout.splitlines()
    assert [line.split("\t")[1:5] for line in listed] == [
        ["boss@tea.example", "admin", "-", "active"],
        ["line@tea.example", "factory_operator", "-", "active"],
    ]
    assert _signs_in("boss@tea.example", "a long password")
    assert _signs_in("line@tea.example", generated.group(1))
    reset = yima("users", "reset-password", "--brand", "tea-co", "--email", "line@tea.example")
    new = re.search(r"\(shown once\): (\S+)", reset.stdout)
    assert new and not _signs_in("line@tea.example", generated.group(1))
    assert _signs_in("line@tea.example", new.group(1))
    assert yima("users", "list", "--brand", "tea-co").stdout.count("\tnever") == 0
