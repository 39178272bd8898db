"""The consumer-facing scan app: the scan page, the scan API and the published keys.

Thin: read the request into an :class:`anti_fraud.ScanRequest`, call the orchestrator, render.
The page is server-rendered and small (no framework download), Chinese by default, English by
Accept-Language or ``?lang=en``; its one inline script asks for the phone's location, with
consent, to refine the verdict. A GS1 Digital Link without a serial (``/01/<gtin>``, optionally
``/10/<lot>``) names a product, not an item: it answers the product's page and records no scan.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, Response, jsonify, make_response, render_template, request
from sqlalchemy.orm import Session

import anti_fraud
import campaigns
import codegen
import members
import traceability
from core.config import Settings
from core.models import Tenant
from core.openapi import build_spec, operation, parse_body
from core.web import app_runtime, build_app, db_session
from scan_service import schemas
from scan_service.draw_pages import draw_of, draw_texts, register_draw_pages, script_url
from scan_service.fastpath import ForgedCodeFastPath
from scan_service.member_pages import register_member_pages
from scan_service.orchestrator import ScanAnswer, scan
from scan_service.pages import API_PREFIX, page_headers, page_lang
from scan_service.texts import (
    JOURNEY_TITLE,
    POINTS,
    PRODUCT_NOT_FOUND,
    RATE_LIMITED,
    SCAN_TO_VERIFY,
    first_scan_sentence,
    local_time,
    points_text,
    verdict_text,
)

DEVICE_COOKIE = "yima_d"


def _place_label(place: dict[str, Any] | None, lang: str) -> str | None:
    if not place:
        return None
    return anti_fraud.place_label(place, lang)


def _scan_request(
    code: str,
    *,
    device: str | None,
    lat: float | None = None,
    lon: float | None = None,
    accuracy_m: float | None = None,
) -> anti_fraud.ScanRequest:
    return anti_fraud.ScanRequest(
        code=code,
        ip=request.remote_addr,
        device=device,
        user_agent=request.headers.get("User-Agent", "")[:300],
        lat=lat,
        lon=lon,
        accuracy_m=accuracy_m,
    )


def _points(answer: ScanAnswer, lang: str) -> dict[str, Any] | None:
    reward = answer.reward
    if reward is None:
        return None
    return {
        "earned": reward.points,
        "pending": reward.pending_hours > 0,
        "status": reward.why,
        "text": points_text(reward.why, lang, reward.points, reward.pending_hours),
    }


def _journey(answer: ScanAnswer, lang: str) -> list[dict[str, str]]:
    # Only the kind, the time and the words: operators, distributor ids and shipment
    # references stay with the brand.
    return [
        {
            "kind": step.kind,
            "at": step.at.isoformat(),
            "when": local_time(step.at, answer.timezone),
            "text": traceability.describe(step, lang),
        }
        for step in answer.journey
    ]


def run_scan(
    scan_request: anti_fraud.ScanRequest, verification: codegen.Verification | None = None
) -> ScanAnswer:
    """The orchestrator on this request's scan, committed before it returns.

    A code that verifies runs through the process's group commit (core/group_commit.py): on a
    threaded worker (gunicorn ``--threads``) the scans ready at the same moment share one
    transaction and one commit. The unit may run on another request's thread, so it takes the
    member's token (header or cookie) from here and looks it up in its own session, at step 5
    only: a code that fails earlier costs no lookup."""
    runtime = app_runtime()
    if verification is None:
        verification = codegen.verify(runtime, scan_request.code)
    if isinstance(verification, codegen.InvalidToken):
        return scan(db_session(), runtime, scan_request, verification)
    token = members.member_token()

    def work(session: Session) -> ScanAnswer | anti_fraud.RateLimitedError:
        try:
            return scan(
                session,
                runtime,
                scan_request,
                verification,
                member=lambda: members.member_of_token(session, token),
            )
        except anti_fraud.RateLimitedError as limited:
            # Refused at step 2 (a revoked or unknown code, flooding), before anything was
            # written: returned, so the batch it shares goes on (a unit that raises is rerun).
            return limited

    answer = runtime.db.group_commit.run(work)
    if isinstance(answer, anti_fraud.RateLimitedError):
        raise answer
    return answer


def create_app(settings: Settings | None = None) -> Flask:
    app = build_app(__name__, settings)
    app.register_blueprint(members.consumer_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(campaigns.consumer_blueprint(), url_prefix=API_PREFIX)
    register_member_pages(app)
    register_draw_pages(app)

    def page(code: str) -> Response:
        lang = page_lang()
        device = request.cookies.get(DEVICE_COOKIE)
        if not device or len(device) != 32 or not device.isalnum():
            device = None
        new_device = device or secrets.token_hex(16)
        try:
            answer = run_scan(_scan_request(code, device=new_device))
        except anti_fraud.RateLimitedError as limited:
            title, message = RATE_LIMITED[lang]
            response = make_response(
                render_template(
                    "limited.html",
                    lang=lang,
                    title=title,
                    message=message.format(s=limited.retry_after),
                ),
                429,
            )
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        title, message = verdict_text(answer.verdict, lang)
        first = None
        if answer.first_scan_at is not None and answer.scan_count > 1:
            first = first_scan_sentence(
                answer.first_scan_at,
                _place_label(answer.first_place, lang),
                answer.scan_count,
                answer.timezone,
                lang,
            )
        nonce = secrets.token_urlsafe(12)
        response = make_response(
            render_template(
                "scan.html",
                answer=answer,
                lang=lang,
                title=title,
                message=message,
                first_scan=first,
                journey=_journey(answer, lang),
                journey_title=JOURNEY_TITLE[lang],
                points=_points(answer, lang),
                draw=draw_of(answer, lang),
                draw_words=draw_texts(lang),
                draw_script=script_url(),
                brand=answer.brand,
                sign_in_text=POINTS["sign_in"][lang],
                account_text=POINTS["account"][lang],
                nonce=nonce,
                api=request.script_root + API_PREFIX,
            )
        )
        page_headers(response, lang, script=f"'nonce-{nonce}'")
        if device is None:
            response.set_cookie(
                DEVICE_COOKIE,
                new_device,
                max_age=2 * 365 * 86400,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure,
            )
        return response

    @app.get("/c/<path:token>")
    @app.get("/C/<path:token>")
    def short_code(token: str) -> Response:
        return page(token[:200])

    @app.get("/01/<gtin>/10/<lot>/21/<serial>")
    def gs1_code(gtin: str, lot: str, serial: str) -> Response:
        return page(request.url[:2048])

    @app.get("/01/<gtin>")
    @app.get("/01/<gtin>/10/<lot>")
    def gs1_product(gtin: str, lot: str | None = None) -> Response:
        """The product a GTIN names (and its batch, when the lot is known); no scan."""
        lang = page_lang()
        session = db_session()
        product = codegen.get_product_by_gtin(session, gtin=gtin)
        if product is None:
            title, message = PRODUCT_NOT_FOUND[lang]
            response = make_response(
                render_template(
                    "not_found.html", lang=lang, title=title, message=message.format(gtin=gtin[:40])
                ),
                404,
            )
            return page_headers(response, lang)
        batch = None
        # A lot no batch can have (codegen's lot rule: 1-20 plain characters) is not looked up.
        if lot is not None and 0 < len(lot) <= 20 and lot.isprintable():
            found = codegen.list_batches(
                session, tenant_id=product.tenant_id, product_id=product.id, lot=lot, limit=1
            )
            batch = found[0] if found else None
        tenant = session.get(Tenant, product.tenant_id)
        response = make_response(
            render_template(
                "product.html",
                lang=lang,
                title=product.name,
                product=product,
                brand=tenant.name if tenant is not None else "",
                lot=batch.lot if batch is not None else None,
                production_date=batch.production_date.isoformat()
                if batch is not None and batch.production_date is not None
                else None,
                scan_to_verify=SCAN_TO_VERIFY[lang],
            )
        )
        return page_headers(response, lang)

    def answer_json(answer: ScanAnswer, lang: str) -> dict[str, Any]:
        # Built by hand (the shape is schemas.ScanOut): this is the hot path.
        _title, message = verdict_text(answer.verdict, lang)
        first = None
        if answer.first_scan_at is not None:
            place = answer.first_place or {}
            first = {
                "at": answer.first_scan_at.isoformat(),
                "place": {**_public_place(place), "label": _place_label(place, lang)}
                if place
                else None,
            }
        return {
            "verdict": answer.verdict,
            "message": message,
            "scan_id": answer.scan_id,
            "scan_count": answer.scan_count,
            "first_scan": first,
            "product": answer.product.__dict__ if answer.product is not None else None,
            "lot": answer.lot,
            "production_date": answer.production_date,
            "journey": [
                {
                    "kind": step.kind,
                    "at": step.at.isoformat(),
                    "text": traceability.describe(step, lang),
                }
                for step in answer.journey
            ],
            "points": _points(answer, lang),
            "draw": draw_of(answer, lang),
            "brand": answer.brand,
        }

    @app.post(f"{API_PREFIX}/scans")
    @operation(
        "Scan a code: the verdict, first scan, counts and product",
        tag="scans",
        body=schemas.ScanIn,
        response=schemas.ScanOut,
        errors=(415, 429),
    )
    def api_scan() -> Any:
        body = parse_body(schemas.ScanIn)
        known = request.environ.get("yima.verified")
        answer = run_scan(
            _scan_request(
                body.code,
                device=body.device_id,
                lat=body.lat,
                lon=body.lon,
                accuracy_m=body.accuracy_m,
            ),
            known[1] if known and known[0] == body.code else None,
        )
        return answer_json(answer, page_lang())

    @app.post(f"{API_PREFIX}/scans/<scan_id>/location")
    @operation(
        "Refine a scan just made with the phone's location (with consent)",
        tag="scans",
        body=schemas.LocationIn,
        response=schemas.LocationOut,
        errors=(415,),
    )
    def api_location(scan_id: str) -> Any:
        body = parse_body(schemas.LocationIn)
        verdict, _signals, place = anti_fraud.refine_location(
            db_session(),
            app_runtime(),
            public_id=scan_id[:64],
            lat=body.lat,
            lon=body.lon,
            accuracy_m=body.accuracy_m,
        )
        lang = page_lang()
        title, message = verdict_text(verdict, lang)
        return schemas.LocationOut(
            verdict=verdict,
            title=title,
            message=message,
            place=schemas.PlaceOut(**_public_place(place), label=_place_label(place, lang)),
        ).model_dump(mode="json")

    @app.get(f"{API_PREFIX}/openapi.json")
    @operation("This OpenAPI document", tag="meta")
    def openapi() -> Any:
        # The scan API needs no key; the member endpoints take a member's token.
        spec = build_spec(
            app,
            title="Yima scan API",
            version="1",
            prefix=API_PREFIX,
            scheme=("memberToken", "ms_... member token (POST /members/sign-in)"),
            secured_only=True,
        )
        spec["servers"] = [{"url": request.script_root or "/"}]
        return jsonify(spec)

    app.wsgi_app = ForgedCodeFastPath(  # type: ignore[method-assign]
        app.wsgi_app, lambda: app.extensions["yima.runtime"]
    )

    @app.get("/.well-known/yima/keys.json")
    def published_keys() -> Any:
        response = jsonify(codegen.public_keys(app_runtime()))
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return app


def _public_place(place: dict[str, Any]) -> dict[str, Any]:
    # Coordinates stay with the brand; the consumer sees the region.
    return {
        k: place.get(k)
        for k in ("country", "province", "city", "source", "precision")
        if place.get(k) is not None
    }
