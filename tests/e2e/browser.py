"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded
browser), and the apps served on a free port of 127.0.0.1 for the test's runtime."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

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


@contextmanager
def serving(wsgi_app: Any) -> Iterator[str]:
    """``wsgi_app`` served on a free port of 127.0.0.1 in a thread; its base URL."""
    app = InFlight(wsgi_app)
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
        # runtime (the fixtures' dependency) is closed, or the connection outlives its pool.
        app.wait_idle(timeout=30)


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    """The scan app; its base URL."""
    with serving(scan_service.create_app()) as url:
        yield url


@pytest.fixture
def console_server(runtime: Runtime) -> Iterator[str]:
    """The console app under /console, as ``yima serve`` mounts it; its base URL."""
    import console

    mounted = DispatcherMiddleware(
        Response("not here", status=404), {"/console": console.create_app()}
    )
    with serving(mounted) as url:
        yield f"{url}/console"


@pytest.fixture
def both_apps(runtime: Runtime) -> Iterator[str]:
    """The scan app at / and the console at /console; the base URL."""
    import console

    with serving(
        DispatcherMiddleware(scan_service.create_app(), {"/console": console.create_app()})
    ) as url:
        yield url


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
