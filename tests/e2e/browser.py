"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), and the scan app served on a free port of 127.0.0.1 for the test's runtime."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

import scan_service
from core.runtime import Runtime

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)


class InFlight:
    """WSGI middleware counting the requests being answered, so a test can wait for the last
    one (a page's script may still be fetching when the test ends) before its database goes."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.idle = threading.Condition()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self.idle:
            self.count += 1
        try:
            answer = self.app(environ, start_response)
            try:
                return list(answer)  # answered in full: the request's session is closed
            finally:
                if hasattr(answer, "close"):
                    answer.close()  # a file response's file
        finally:
            with self.idle:
                self.count -= 1
                self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.count == 0, timeout)


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    app = InFlight(scan_service.create_app())
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
        # A request still being answered holds a database connection: let it finish before the
        # runtime (this fixture's dependency) is closed, or the connection outlives its pool.
        app.wait_idle(timeout=30)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()
