"""The brand / factory console app: the management REST API under /api/v1 and its spec."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

import anti_fraud
import campaigns
import codegen
import members
import traceability
from core.config import Settings
from core.openapi import build_spec, operation
from core.web import build_app

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> Flask:
    app = build_app(__name__, settings)
    app.register_blueprint(codegen.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(anti_fraud.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(traceability.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(members.api_blueprint(), url_prefix=API_PREFIX)
    app.register_blueprint(campaigns.manage_blueprint(), url_prefix=API_PREFIX)
    # Receipts carry the handheld's GPS: placed by the geolocation that scans use.
    app.extensions["yima.locate_gps"] = anti_fraud.locate_point

    @app.get(f"{API_PREFIX}/openapi.json")
    @operation("This OpenAPI document", tag="meta")
    def openapi() -> Any:
        spec = build_spec(app, title="Yima management API", version="1", prefix=API_PREFIX)
        spec["servers"] = [{"url": request.script_root or "/"}]
        return jsonify(spec)

    @app.get("/")
    def index() -> Any:
        return jsonify(
            name="Yima console",
            api=f"{request.script_root}{API_PREFIX}",
            openapi=f"{request.script_root}{API_PREFIX}/openapi.json",
        )

    return app
