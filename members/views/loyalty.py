"""Routes: to be written."""

from members.views._common import consumer, manage  # noqa: F401
