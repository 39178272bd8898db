"""Fixtures of the end-to-end tests: the browser tests' Chromium and the apps' servers."""

from tests.e2e.browser import both_apps, browser, console_server, server

__all__ = ["both_apps", "browser", "console_server", "server"]
