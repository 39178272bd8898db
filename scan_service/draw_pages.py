"""The draw in the scan app: the scan page's draw card, my prizes, the claim form of a goods
prize, and a campaign's public rules page.

- The draw card (:func:`draw_of`) shows the result the server decided, in words; ``draw.js``
  only animates it (a short spin of a wheel that ends on that result; none for readers who
  prefer reduced motion). Without the script the result is simply there.
- ``/m/prizes`` and ``/m/prizes/<reward>/claim`` are member pages like ``/m/...``
  (scan_service/member_pages.py): small shells that ``draw.js`` fills from the consumer API,
  for the signed-in member of the brand (others are sent to sign in).
- ``/campaigns/<brand>/<id>`` is rendered in full on the server, no script: the prize table with
  quantities and exact odds (fractions and percentages), the commitments published before the
  start, and after the end the revealed seed and how to check every draw.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, make_response, render_template, request, url_for

import campaigns
from campaigns import VERIFY_COMMAND, draws_url, public_campaign
from core.errors import NotFoundError
from core.models import Tenant
from core.services import DEFAULT_TIMEZONE
from core.web import db_session
from scan_service.member_pages import BRAND_COOKIE, _here, _lang_switch, _redirect, _sign_in_url
from scan_service.member_texts import TEXTS
from scan_service.orchestrator import ScanAnswer
from scan_service.pages import API_PREFIX, page_headers, page_lang, signed_in
from scan_service.texts import DRAW, RULES, prize_state, prize_text

SCRIPT = Path(__file__).parent / "static" / "draw.js"


@functools.cache
def script_version() -> str:
    """``draw.js``'s content hash: its URL changes with it (cached a year, as member.js)."""
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]


def script_url() -> str:
    return url_for("static", filename="draw.js", v=script_version())


# --- the scan's draw -----------------------------------------------------------------------------


def draw_of(answer: ScanAnswer, lang: str) -> dict[str, Any] | None:
    """The scan's draw as the scan page and the scan API show it (schemas.DrawOut), or None
    when the scan made no draw for the member (not signed in, no campaign with a draw, the code
    rewarded to someone else)."""
    reward = answer.reward
    view: campaigns.DrawView | None = reward.draw if reward is not None else None
    if view is None:
        return None
    prize = None
    if view.prize_key is not None and view.kind is not None:
        prize = {
            "key": view.prize_key,
            "name": view.prize_name or "",
            "kind": view.kind,
            "amount_fen": view.amount_fen,
            "points": view.points,
        }
    state = prize_state(view.kind, view.status)
    claim_url = None
    if state == "claim":
        claim_url = f"{request.script_root}/m/prizes/{view.reward_id}/claim"
    return {
        "outcome": view.outcome,
        "won": prize is not None and view.kind != "thanks",
        "prize": prize,
        "status": view.status,
        "text": prize_text(
            view.kind, view.prize_name, lang, amount_fen=view.amount_fen, points=view.points
        ),
        "status_text": DRAW[state][lang] if state is not None else None,
        "claim_url": claim_url,
        "reward_id": view.reward_id,
        "campaign_id": view.campaign_id,
    }


def draw_texts(lang: str) -> dict[str, str]:
    """The draw card's fixed words in ``lang``."""
    return {key: words[lang] for key, words in DRAW.items()}


# --- pages ---------------------------------------------------------------------------------------


def _member_shell(template: str, page: str, **ctx: Any) -> Response:
    """A member page of the signed-in member's brand (base.html's context, draw.js as its
    script), or a redirect to sign in and back."""
    lang = page_lang()
    who = signed_in()
    asked = request.args.get("brand")
    tenant = db_session().get(Tenant, who.tenant_id) if who is not None else None
    if tenant is None or (asked and asked != tenant.slug):
        brand = asked or (tenant.slug if tenant else request.cookies.get(BRAND_COOKIE))
        return _redirect(_sign_in_url(brand, _here()), lang)
    texts = TEXTS[lang]
    response = make_response(
        render_template(
            f"member/{template}",
            lang=lang,
            t=texts,
            texts=texts,
            page=page,
            brand=tenant.slug,
            brand_name=tenant.name,
            tz=tenant.timezone or DEFAULT_TIMEZONE,
            api=request.script_root + API_PREFIX,
            root=request.script_root,
            script=script_url(),
            lang_switch=_lang_switch(lang),
            **ctx,
        )
    )
    return page_headers(response, lang, script="'self'")


def register_draw_pages(app: Flask) -> None:
    """Add my prizes, the claim form and the campaigns' rules pages to the scan app."""

    @app.get("/m/prizes")
    def member_prizes() -> Response:
        return _member_shell("prizes.html", "prizes")

    @app.get("/m/prizes/<id:reward_id>/claim")
    def member_claim(reward_id: int) -> Response:
        return _member_shell("claim.html", "claim", reward_id=reward_id)

    @app.get("/campaigns/<brand>/<id:campaign_id>")
    def campaign_rules(brand: str, campaign_id: int) -> Response:
        lang = page_lang()
        words = RULES[lang]
        try:
            found = public_campaign(
                db_session(),
                brand=brand,
                campaign_id=campaign_id,
                lang="en" if lang == "en" else "zh",
            )
        except NotFoundError:
            response = make_response(
                render_template(
                    "not_found.html",
                    lang=lang,
                    title=words["not_found_title"],
                    message=words["not_found"],
                ),
                404,
            )
            return page_headers(response, lang)
        campaign = found.model_dump(mode="json")
        revealed = campaign["revealed"]
        if revealed is not None:
            revealed["draws_url"] = draws_url(found.brand, found.id)
        zone = ZoneInfo(found.timezone)
        if found.commitments is not None and found.commitments.published_at is not None:
            at = found.commitments.published_at.astimezone(zone)
            campaign["commitments"]["published_local"] = f"{at:%Y-%m-%d %H:%M}"
        response = make_response(
            render_template(
                "campaign_rules.html",
                lang=lang,
                title=found.name,
                c=campaign,
                w=words,
                status_text=words.get(f"status_{found.status}", found.status),
                verify_command=VERIFY_COMMAND.format(id=found.id),
            )
        )
        return page_headers(response, lang)
