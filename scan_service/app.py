"""The consumer-facing scan app: code pages, and the published keys of signed GS1 codes."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request

import codegen
from core.config import Settings
from core.web import app_runtime, build_app, db_session
from scan_service.orchestrator import scan

VERDICT_TEXT = {
    "genuine": ("正品", "Genuine", "此商品为品牌正品。", "This item is genuine."),
    "counterfeit": (
        "无法验证",
        "Not verified",
        "此码无法通过验证，商品可能为假冒，请谨慎购买。",
        "This code failed verification; the item may be counterfeit.",
    ),
}


def create_app(settings: Settings | None = None) -> Flask:
    app = build_app(__name__, settings)

    def answer(code: str) -> Any:
        result = scan(db_session(), app_runtime(), code)
        english = request.accept_languages.best_match(["zh", "en"]) == "en"
        texts = VERDICT_TEXT[result.verdict]
        status = 200
        return render_template(
            "scan.html",
            result=result,
            english=english,
            title=texts[1] if english else texts[0],
            message=texts[3] if english else texts[2],
        ), status

    @app.get("/c/<path:token>")
    @app.get("/C/<path:token>")
    def short_code(token: str) -> Any:
        return answer(token[:200])

    @app.get("/01/<gtin>/10/<lot>/21/<serial>")
    def gs1_code(gtin: str, lot: str, serial: str) -> Any:
        return answer(request.url[:2048])

    @app.get("/.well-known/yima/keys.json")
    def published_keys() -> Any:
        response = jsonify(codegen.public_keys(app_runtime()))
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return app
