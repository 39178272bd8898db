"""Typed errors and their problem+json (RFC 9457) form.

Services raise :class:`YimaError` subclasses with a machine code; one Flask handler (see
:func:`register_error_handlers`) turns them into ``application/problem+json``. The CLI prints the
same ``detail`` and field errors. Unexpected errors answer 500 with a trace id only.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("yima")

PROBLEM_JSON = "application/problem+json"


class YimaError(Exception):
    """Base of every error a service raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}

    def to_problem(self, lang: Lang = "en") -> dict[str, Any]:
        """The problem+json body; ``lang`` "zh" puts the field errors and the detail in Chinese
        where the message catalogue knows them. ``error_codes`` names each field error's kind,
        the same in either language."""
        body: dict[str, Any] = {
            "type": f"https://yima.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": localize(self.detail, lang) if lang != "en" else self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = {
                field: localize(message, lang) if lang != "en" else message
                for field, message in self.errors.items()
            }
            body["error_codes"] = {
                field: message_code(message) for field, message in self.errors.items()
            }
            first_field, first_message = next(iter(self.errors.items()))
            if lang != "en" and self.detail == f"{first_field}: {first_message}":
                body["detail"] = f"{first_field}: {body['errors'][first_field]}"
        return body


class ValidationFailedError(YimaError):
    status = 422
    code = "validation_failed"
    title = "The request has invalid fields"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailedError:
        return cls(f"{name}: {message}", errors={name: message})


class NotFoundError(YimaError):
    status = 404
    code = "not_found"
    title = "Not found"


class ConflictError(YimaError):
    status = 409
    code = "conflict"
    title = "Conflict"


class AuthenticationRequiredError(YimaError):
    status = 401
    code = "authentication_required"
    title = "Authentication required"


class PermissionDeniedError(YimaError):
    status = 403
    code = "permission_denied"
    title = "Permission denied"


class CsrfTokenInvalidError(YimaError):
    status = 403
    code = "csrf_token_invalid"
    title = "The request's CSRF token is missing or wrong"


class ServiceUnavailableError(YimaError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


# --- field errors in the reader's language -------------------------------------------------------
#
# Services word their errors in English (the API's default, which existing clients read). A
# catalogue recognises each kind of message by its English form and gives it a stable code (for
# clients that branch on it) and a Chinese template filled from the English message's named groups.
# Packages register their own messages next to the code that raises them.

Lang = Literal["zh", "en"]


@dataclass(frozen=True)
class Message:
    code: str
    english: re.Pattern[str]
    zh: str | Callable[[Mapping[str, str]], str]


_CATALOGUE: list[Message] = []
_PROBLEM_LANGS = ("en", "zh")


def register_messages(*messages: tuple[str, str, str | Callable[[Mapping[str, str]], str]]) -> None:
    """Teach the catalogue messages: ``(code, English regex, Chinese template)``. The regex must
    match the whole English message; the template is ``str.format``-ed with its named groups (or a
    callable given them). The first registered match wins."""
    for code, english, zh in messages:
        _CATALOGUE.append(Message(code, re.compile(english, re.DOTALL), zh))


def _lookup(message: str) -> tuple[Message, Mapping[str, str]] | None:
    message = message.removeprefix("Value error, ")  # a pydantic validator's ValueError
    for entry in _CATALOGUE:
        found = entry.english.fullmatch(message)
        if found is not None:
            return entry, {k: v or "" for k, v in found.groupdict().items()}
    return None


def message_code(message: str) -> str:
    """The stable code of a field error's message ("invalid" when the catalogue has none)."""
    found = _lookup(message)
    return found[0].code if found else "invalid"


def localize(message: str, lang: str) -> str:
    """``message`` in ``lang``: the catalogue's Chinese for "zh" (the English when unknown)."""
    if lang != "zh":
        return message
    found = _lookup(message)
    if found is None:
        return message
    entry, params = found
    return entry.zh(params) if callable(entry.zh) else entry.zh.format(**params)


def problem_lang() -> Lang:
    """The language of an API problem: ``?lang=``, else Accept-Language preferring Chinese over
    English; English when the request says neither (what API clients have always read)."""
    chosen = request.args.get("lang")
    if chosen in _PROBLEM_LANGS:
        return "zh" if chosen == "zh" else "en"
    if not request.environ.get("HTTP_ACCEPT_LANGUAGE"):
        return "en"
    return "zh" if request.accept_languages.best_match(_PROBLEM_LANGS) == "zh" else "en"


_NUMBER = r"(?P<n>-?[\d.]+)"
register_messages(
    ("required", r"Field required", "必填。"),
    ("too_short", r"String should have at least 1 character", "不能为空。"),
    ("too_short", r"String should have at least (?P<n>\d+) characters?", "至少 {n} 个字符。"),
    ("too_long", r"String should have at most (?P<n>\d+) characters?", "最多 {n} 个字符。"),
    (
        "too_short",
        r"List should have at least (?P<n>\d+) items? after validation, not \d+",
        "至少 {n} 项。",
    ),
    (
        "too_long",
        r"List should have at most (?P<n>\d+) items? after validation, not \d+",
        "最多 {n} 项。",
    ),
    (
        "greater_than_equal",
        rf"Input should be greater than or equal to {_NUMBER}",
        "不能小于 {n}。",
    ),
    ("less_than_equal", rf"Input should be less than or equal to {_NUMBER}", "不能大于 {n}。"),
    ("greater_than", rf"Input should be greater than {_NUMBER}", "必须大于 {n}。"),
    ("less_than", rf"Input should be less than {_NUMBER}", "必须小于 {n}。"),
    ("int_type", r"Input should be a valid integer.*", "请输入整数。"),
    ("number_type", r"Input should be a valid (number|decimal).*", "请输入数字。"),
    (
        "decimal_places",
        r"Decimal input should have no more than (?P<n>\d+) decimal places?",
        "最多 {n} 位小数。",
    ),
    ("string_type", r"Input should be a valid string", "请输入文字。"),
    ("bool_type", r"Input should be a valid boolean.*", "请选择是或否。"),
    ("list_type", r"Input should be a valid list", "应为一个列表。"),
    ("date_type", r"Input should be a valid date\b.*", "请输入有效的日期。"),
    ("datetime_type", r"Input should be a valid datetime\b.*", "请输入有效的日期和时间。"),
    ("pattern", r"String should match pattern .*", "格式不正确。"),
    ("choice", r"Input should be '[^']*'(, '[^']*')*( or '[^']*')?", "请从选项中选择。"),
    ("extra_forbidden", r"Extra inputs are not permitted", "不接受此字段。"),
    ("invalid_json", r"invalid JSON", "不是有效的 JSON。"),
    ("nul_byte", r"contains a NUL byte", "含有 NUL 字符。"),
    ("whole_number", r"must be a whole number", "请输入整数。"),
    (
        "between",
        r"must be between (?P<low>-?\d+) and (?P<high>-?\d+)",
        "应在 {low} 到 {high} 之间。",
    ),
    ("length", r"1-(?P<n>\d+) characters", "请填写 1–{n} 个字符。"),
    ("true_or_false", r"true or false", "请选择是或否。"),
    ("email", r"must be an e-mail address", "请输入有效的电子邮箱地址。"),
    (
        "phone",
        r"a mainland China mobile number: 13812345678",
        "请输入中国大陆手机号，如 13812345678。",
    ),
    ("one_of", r"(must be )?one of (?P<choices>.+)", "请从以下选项中选择：{choices}。"),
    ("unknown_product", r"unknown product", "产品不存在。"),
    (
        "region_format",
        r"a region is a string such as CN, CN-ZJ or CN-ZJ/杭州市",
        "地区应写作 CN、CN-ZJ 或 CN-ZJ/杭州市。",
    ),
    (
        "region_country",
        r"'(?P<raw>[^']*)': '(?P<head>[^']*)' is not an ISO 3166-1 country",
        "“{raw}”：{head} 不是国家代码（ISO 3166-1）。",
    ),
    (
        "region_province",
        r"'(?P<raw>[^']*)': '(?P<head>[^']*)' is not a province of China",
        "“{raw}”：{head} 不是中国的省级行政区。",
    ),
    (
        "region_division",
        r"'(?P<raw>[^']*)': '(?P<head>[^']*)' is not an ISO 3166-2 division",
        "“{raw}”：{head} 不是一级行政区代码（ISO 3166-2）。",
    ),
    (
        "region_city_needs_province",
        r"'(?P<raw>[^']*)': a city needs its province, CN-ZJ/杭州市",
        "“{raw}”：城市前须写省份，如 CN-ZJ/杭州市。",
    ),
    (
        "region_city_outside_china",
        r"'(?P<raw>[^']*)': cities are known in China only",
        "“{raw}”：只能指定中国的城市。",
    ),
    (
        "region_city",
        r"'(?P<raw>[^']*)': no city '(?P<city>[^']*)' in (?P<head>\S+)",
        "“{raw}”：{head} 没有城市“{city}”。",
    ),
    ("region_list", r"a list of at most (?P<n>\d+) regions", "最多 {n} 个地区。"),
)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(body, ensure_ascii=False), status=body["status"], mimetype=PROBLEM_JSON
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def database_unavailable(exc: BaseException) -> bool:
    """True for a database that cannot be reached or is busy (not for a bad statement)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    # SQLite reports statement errors ("no such column") as OperationalError too.
    text = str(exc.orig).lower()
    return "no such" not in text and "syntax error" not in text


def register_error_handlers(app: Flask) -> None:
    """Every error of ``app`` answers problem+json."""

    @app.errorhandler(YimaError)
    def _yima_error(exc: YimaError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return problem_response(exc.to_problem(problem_lang()), headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        body = {
            "type": "about:blank",
            "title": exc.name,
            "status": status,
            "detail": exc.description or exc.name,
            "code": exc.name.lower().replace(" ", "_"),
        }
        response = problem_response(body)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return unexpected_error_response(exc)


def unexpected_error_response(exc: BaseException) -> Response:
    """503 with Retry-After for an unreachable database, else 500 with a trace id only."""
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        return problem_response(
            ServiceUnavailableError("the database is unavailable; retry shortly").to_problem(),
            {"Retry-After": "2"},
        )
    trace_id = uuid.uuid4().hex
    log.error("unexpected error %s on %s %s", trace_id, request.method, request.path, exc_info=exc)
    return problem_response(
        {
            "type": "about:blank",
            "title": "Internal server error",
            "status": 500,
            "detail": f"An unexpected error occurred; trace id {trace_id}.",
            "code": "internal_error",
            "trace_id": trace_id,
        }
    )
