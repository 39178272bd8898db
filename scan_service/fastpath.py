"""A WSGI fast path for the flood: ``POST /api/v1/scans`` with a code that fails verification.

Forged codes arrive by the hundred thousand and deserve the cheapest honest answer. This
middleware reads the small JSON body itself, verifies the code offline, and when it fails,
answers ``counterfeit`` (or 429) through the orchestrator's own step for invalid codes
(:func:`scan_service.orchestrator.answer_invalid`: evidence spooled, flood windows counted) —
without building a Flask request. Anything else (a valid code, a body it does not recognise
exactly, coordinates) goes to the Flask app unchanged, which answers it in full.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import anti_fraud
import codegen
from core.runtime import Runtime
from scan_service.orchestrator import answer_invalid
from scan_service.texts import verdict_text

PATH = "/api/v1/scans"
MAX_BODY = 4096
_DEVICE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_HEADERS_JSON = [("Content-Type", "application/json")]

StartResponse = Callable[..., Any]


class ForgedCodeFastPath:
    def __init__(self, app: Callable[..., Iterable[bytes]], runtime: Callable[[], Runtime]) -> None:
        self._app = app
        self._runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or not str(environ.get("CONTENT_TYPE", "")).startswith("application/json")
        ):
            return self._app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= MAX_BODY:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again if we pass
        answered = self._answer(environ, body, start_response)
        return answered if answered is not None else self._app(environ, start_response)

    def _answer(
        self, environ: dict[str, Any], body: bytes, start_response: StartResponse
    ) -> list[bytes] | None:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not set(data) <= {"code", "device_id"}:
            return None
        code, device = data.get("code"), data.get("device_id")
        if not isinstance(code, str) or not 1 <= len(code) <= 2048:
            return None
        if device is not None and not (isinstance(device, str) and _DEVICE.match(device)):
            return None
        runtime = self._runtime()
        verification = codegen.verify(runtime, code)
        if not isinstance(verification, codegen.InvalidToken):
            environ["yima.verified"] = (code, verification)  # the orchestrator's step 1, done
            return None  # a valid code: the full scan, in Flask
        request = anti_fraud.ScanRequest(
            code=code,
            ip=environ.get("REMOTE_ADDR"),
            device=device,
            user_agent=str(environ.get("HTTP_USER_AGENT", ""))[:300],
        )
        try:
            answer_invalid(runtime, request, verification.reason)
        except anti_fraud.RateLimitedError as limited:
            problem = anti_fraud.RateLimitedError(limited.retry_after).to_problem()
            start_response(
                "429 TOO MANY REQUESTS",
                [
                    ("Content-Type", "application/problem+json"),
                    ("Retry-After", str(limited.retry_after)),
                ],
            )
            return [json.dumps(problem, ensure_ascii=False).encode()]
        lang = (
            "en" if str(environ.get("HTTP_ACCEPT_LANGUAGE", "")).lower().startswith("en") else "zh"
        )
        start_response("200 OK", _HEADERS_JSON)
        return [_COUNTERFEIT[lang]]


def _counterfeit_body(lang: str) -> bytes:
    _title, message = verdict_text("counterfeit", lang)
    answer: dict[str, object] = {
        "verdict": "counterfeit",
        "message": message,
        "scan_id": None,
        "scan_count": 0,
        "first_scan": None,
        "product": None,
        "lot": None,
        "production_date": None,
        "journey": [],
        "points": None,
        "draw": None,
        "brand": None,
    }
    return json.dumps(answer, ensure_ascii=False).encode()


# The answer to a forged code says nothing about the code: the same bytes every time.
_COUNTERFEIT = {lang: _counterfeit_body(lang) for lang in ("zh", "en")}
