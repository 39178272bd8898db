"""Fixtures of the end-to-end tests: the browser tests' Chromium and scan-app server."""

from tests.e2e.browser import browser, server

__all__ = ["browser", "server"]
