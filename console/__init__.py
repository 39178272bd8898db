"""The brand / factory console: management API (and, later, dashboards)."""

from console.app import create_app

__all__ = ["create_app"]
