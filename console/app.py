"""The brand / factory console app: the management REST API under /api/v1 and its spec, and
the console's pages (sign-in, the shell, users & roles, my account, the audit log, the
dashboards and the management pages).

Every answer carries the security headers (core.web.security_headers): pages a CSP that
allows the console's own script and style only, API answers one that allows nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

import anti_fraud
import campaigns
import codegen
import members
import traceability
from console.dashboard_pages import dashboard_pages
from console.dashboards import api as dashboards_api
from console.manage_pages import manage_pages
from console.pages import pages
from console.users import api as users_api
from core.config import Settings
from core.openapi import build_spec, operation
from core.web import build_app, security_headers

API_PREFIX = "/api/v1"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_YEAR = 365 * 86400


def create_app(settings: Settings | None = None) -> Flask:
    app = build_app(__name__, settings)
    app.register_blueprint(codegen.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(anti_fraud.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(traceability.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(members.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(campaigns.manage_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(dashboards_api, url_prefix=API_PREFIX)
    app.register_blueprint(users_api, url_prefix=API_PREFIX)
    app.register_blueprint(pages)
    app.register_blueprint(dashboard_pages)
    app.register_blueprint(manage_pages)
    # Receipts carry the handheld's GPS: placed by the geolocation that scans use.
    app.extensions["yima.locate_gps"] = anti_fraud.locate_point

    @app.get(f"{API_PREFIX}/openapi.json")
    @operation("This OpenAPI document", tag="meta")
    def openapi() -> Any:
        spec = build_spec(
            app,
            title="Yima management API",
            version="1",
            prefix=API_PREFIX,
            scheme=("apiKey", "yk_... API key (or the console's session cookie with X-CSRF-Token)"),
        )
        spec["servers"] = [{"url": request.script_root or "/"}]
        return jsonify(spec)

    @app.after_request
    def _headers(response: Response) -> Response:
        if request.endpoint == "static":
            # console.css and console.js are linked with ?v=<their hash>: a new file is a new URL.
            versioned = request.args.get("v") and response.status_code == 200
            security_headers(response, csp=API_CSP, referrer="same-origin", cache=bool(versioned))
            if versioned:
                response.headers["Cache-Control"] = f"public, max-age={_YEAR}, immutable"
            return response
        html = response.mimetype == "text/html"
        return security_headers(response, csp=PAGE_CSP if html else API_CSP, referrer="same-origin")

    return app
