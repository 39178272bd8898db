"""The production shape on one machine (deploy/run-stack.sh): PostgreSQL + Redis + gunicorn for
each app + a Celery worker, driven through HTTP as a brand's integration would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from core import services as core_services
from core.runtime import Runtime
from tests.conftest import MASTER_KEY, PG_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stack exited early"
        try:
            if _call("GET", url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready")


@pytest.mark.slow
@pytest.mark.skipif(
    not (PG_URL and REDIS_URL),
    reason="the production shape needs PostgreSQL and Redis: set "
    "YIMA_TEST_DATABASE_URL and YIMA_TEST_REDIS_URL (.ci/run does)",
)
@pytest.mark.parametrize("backend", ["postgresql"])
def test_production_stack_issues_and_prints_codes(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    with runtime.db.unit_of_work() as session:
        tenant = core_services.create_tenant(session, slug="stack", name="Stack Tea")
        token = core_services.create_api_key(
            session, tenant_id=tenant.id, name="erp", role="admin"
        ).token
    scan_port, console_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIMA_")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "YIMA_ENV": "production",
            "YIMA_DATABASE_URL": database_url,
            "YIMA_REDIS_URL": REDIS_URL,
            "YIMA_BROKER_URL": REDIS_URL,
            "YIMA_SECRET_KEY": "s" * 48,
            "YIMA_MASTER_KEY": MASTER_KEY,
            "YIMA_DATA_DIR": str(tmp_path / "data"),
            "YIMA_EXPORT_CHUNK_SIZE": "1000",
            "YIMA_STACK_SCAN_PORT": str(scan_port),
            "YIMA_STACK_CONSOLE_PORT": str(console_port),
            "YIMA_STACK_BEAT": "0",
        }
    )
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            ["bash", str(ROOT / "deploy" / "run-stack.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        scan = f"http://127.0.0.1:{scan_port}"
        console = f"http://127.0.0.1:{console_port}/api/v1"
        _wait_ready(f"{scan}/readyz", stack)
        _wait_ready(f"http://127.0.0.1:{console_port}/readyz", stack)

        status, body = _call(
            "POST",
            f"{console}/products",
            token,
            {"sku": "LJ-250", "name": "Longjing 250 g", "gtin": "6901234567892"},
        )
        assert status == 201, body
        product = json.loads(body)
        status, body = _call(
            "POST",
            f"{console}/batches",
            token,
            {"product_id": product["id"], "lot": "L1", "quantity": 3000},
        )
        assert status == 201, body
        batch = json.loads(body)
        status, body = _call(
            "POST", f"{console}/batches/{batch['id']}/exports", token, {"format": "txt"}
        )
        assert status == 202, body
        export = json.loads(body)
        deadline = time.monotonic() + 120
        while export["status"] != "done":
            assert time.monotonic() < deadline, export
            time.sleep(0.3)
            export = json.loads(_call("GET", f"{console}/exports/{export['id']}", token)[1])
        assert export["chunks_total"] == 3  # three chunks, run by the Celery worker
        status, data = _call("GET", f"{console}/exports/{export['id']}/file", token)
        urls = data.decode().splitlines()
        assert status == 200 and len(urls) == 3000 and len(set(urls)) == 3000
        path = urls[2999].split("/", 3)[3]  # C/<token>
        status, page = _call("GET", f"{scan}/{path}")
        assert status == 200 and 'data-verdict="genuine"' in page.decode()
        status, page = _call("GET", f"{scan}/{path[:-2]}AA")
        assert status == 200 and 'data-verdict="counterfeit"' in page.decode()
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
