"""WSGI entry points: ``scan_app`` and ``console_app`` for gunicorn (one per app in
production), and ``app``: both in one process for the embedded default, the scan app at the
root and the console under ``/console``."""

from __future__ import annotations

from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

import console
import scan_service
from core.config import Settings


def combined_app(settings: Settings | None = None) -> Any:
    scan = scan_service.create_app(settings)
    manage = console.create_app(None)  # shares the runtime the scan app installed
    scan.wsgi_app = DispatcherMiddleware(scan.wsgi_app, {"/console": manage})  # type: ignore[method-assign]
    return scan


def __getattr__(name: str) -> Any:
    # Built on first access so importing this module has no side effects.
    if name == "scan_app":
        return scan_service.create_app()
    if name == "console_app":
        return console.create_app()
    if name == "app":
        return combined_app()
    raise AttributeError(name)
