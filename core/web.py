"""What every Yima Flask app shares: the runtime, one unit of work per request, problem+json
errors, the ``/healthz`` (alive) and ``/readyz`` (database reachable) probes, and what pages
share: the reader's language and the security headers."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask.sessions import SessionInterface
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter, Map

from core.config import Settings
from core.errors import (
    ServiceUnavailableError,
    ValidationFailedError,
    register_error_handlers,
    unexpected_error_response,
)
from core.runtime import Runtime, get_runtime, set_runtime


class _NoSessions(SessionInterface):
    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id, 1..2^31-1; anything else is a 404, never a database error."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=2**31 - 1)


def build_app(import_name: str, settings: Settings | None = None) -> Flask:
    """A Flask app wired to the process runtime (``settings`` overrides the environment)."""
    if settings is not None:
        runtime = Runtime(settings)
        set_runtime(runtime)
    else:
        runtime = get_runtime()
    app = Flask(import_name)
    app.url_map.converters["id"] = IdConverter
    # No Flask cookie sessions: the API authenticates by key, pages by nothing; opening an
    # unused signed-cookie session costs every request.
    app.session_interface = _NoSessions()
    app.config["SECRET_KEY"] = runtime.settings.secret_key
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["yima.runtime"] = runtime
    register_error_handlers(app)

    @app.after_request
    def _commit(response: Response) -> Response:
        # Commit before the answer leaves: an answered request is durable.
        session: Session | None = g.pop("yima_session", None)
        if session is not None and not session.in_transaction():
            session.close()  # nothing was read or written (a forged code, say)
        elif session is not None:
            try:
                if response.status_code < 400:
                    session.commit()
                else:
                    session.rollback()
            except Exception as exc:
                # The answer must not claim what was not committed.
                session.rollback()
                return unexpected_error_response(exc)
            finally:
                session.close()
        return response

    @app.teardown_request
    def _rollback(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("yima_session", None)
        if session is not None:
            session.rollback()
            session.close()

    @app.before_request
    def _refuse_nul_bytes() -> None:
        # PostgreSQL text cannot hold NUL: refuse it at the door instead of failing later.
        for name, value in request.args.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise ValidationFailedError.field(name.replace("\x00", ""), "contains a NUL byte")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Any:
        db = app_runtime().db
        try:
            db.ping()
        except Exception as exc:
            raise ServiceUnavailableError("the database is not reachable") from exc
        return jsonify(status="ready", database=db.engine.dialect.name)

    return app


def app_runtime() -> Runtime:
    from flask import current_app

    runtime: Runtime = current_app.extensions["yima.runtime"]
    return runtime


def db_session() -> Session:
    """This request's session; committed after a successful response, else rolled back."""
    session: Session | None = g.get("yima_session")
    if session is None:
        session = app_runtime().db.sessionmaker()
        g.yima_session = session
    return session


def client_ip() -> str | None:
    return request.remote_addr


# --- pages ---------------------------------------------------------------------------------------

LANG_COOKIE = "yima_lang"
_YEAR = 365 * 86400
HSTS = "max-age=31536000; includeSubDomains"


def page_lang() -> str:
    """``?lang=``, else the ``yima_lang`` cookie, else Accept-Language; Chinese by default."""
    environ = request.environ
    if environ.get("QUERY_STRING") or environ.get("HTTP_COOKIE"):
        chosen = request.args.get("lang") or request.cookies.get(LANG_COOKIE)
        if chosen in ("zh", "en"):
            return chosen
    if not environ.get("HTTP_ACCEPT_LANGUAGE"):  # most apps send none: skip the parsing
        return "zh"
    return "en" if request.accept_languages.best_match(["zh", "en"]) == "en" else "zh"


def remember_lang(response: Response, lang: str) -> Response:
    """Keep a language chosen by ``?lang=`` in the ``yima_lang`` cookie."""
    if request.args.get("lang") in ("zh", "en"):
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=_YEAR,
            samesite="Lax",
            secure=request.is_secure,
        )
    return response


def security_headers(
    response: Response, *, csp: str, referrer: str = "no-referrer", cache: bool = False
) -> Response:
    """The headers every page (and API answer) carries: its Content-Security-Policy, no
    framing, no MIME sniffing, the referrer policy, HSTS over TLS, and ``no-store`` unless
    ``cache``."""
    headers = response.headers
    headers["Content-Security-Policy"] = csp
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = referrer
    if request.is_secure:
        headers["Strict-Transport-Security"] = HSTS
    if not cache:
        headers["Cache-Control"] = "no-store"
    return response
