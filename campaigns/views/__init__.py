"""Campaigns' HTTP interfaces: the management API the console registers under ``/api/v1``,
the consumer API the scan app registers there."""

from __future__ import annotations

from flask import Blueprint

from campaigns.views.consumer import VERIFY_COMMAND, consumer_blueprint, draws_url, public_campaign
from campaigns.views.manage import manage

__all__ = [
    "VERIFY_COMMAND",
    "consumer_blueprint",
    "draws_url",
    "manage_blueprint",
    "public_campaign",
]


def manage_blueprint() -> Blueprint:
    """The ``campaigns_api`` blueprint (campaigns, draws, reviews, fulfilment, liability)."""
    return manage
