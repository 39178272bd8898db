"""Members' HTTP interfaces, one module per area, all on two blueprints (``_common``):

- the consumer API, registered by the scan app under ``/api/v1``: sign-in, my points, history,
  tier progress, catalogue and redemption, check-in, referral;
- the management API, registered by the console under ``/api/v1``: members (360 view,
  adjustments), programme settings, tiers, catalogue and orders, tags, segments and exports.
"""

from __future__ import annotations

from flask import Blueprint

from members.views import catalogue, identity, loyalty, segments  # noqa: F401 (routes)
from members.views._common import consumer, manage


def consumer_blueprint() -> Blueprint:
    return consumer


def api_blueprint() -> Blueprint:
    return manage
