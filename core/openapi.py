"""The management API's OpenAPI 3.1 document, generated from the views themselves.

A view declares its contract with :func:`operation` (summary, request and response models,
query parameters); :func:`build_spec` walks the app's URL map and assembles the document, so
the spec cannot drift from the routes. Request bodies are validated with the same pydantic
models by :func:`parse_body`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, request
from pydantic import BaseModel, ValidationError

from core.errors import ValidationFailedError, YimaError

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


@dataclass
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    binary: str | None = None  # media type of a file download
    errors: tuple[int, ...] = ()


def operation(
    summary: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: dict[str, dict[str, Any]] | None = None,
    binary: str | None = None,
    errors: tuple[int, ...] = (),
) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        view._yima_operation = Operation(  # type: ignore[attr-defined]
            summary=summary,
            tag=tag,
            body=body,
            response=response,
            status=status,
            query=query or {},
            binary=binary,
            errors=errors,
        )
        return view

    return decorate


MAX_ID = 2**31 - 1  # ids are 32-bit integers in every table

PAGINATION = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    "after": {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**31 - 1,
        "description": "id of the last item seen",
    },
}


def secured(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view as needing credentials in the OpenAPI spec (:func:`build_spec` reads it)."""
    view.__dict__["_yima_security"] = True
    return view


def next_after(items: list[Any], limit: int) -> int | None:
    """The cursor of a keyset page: the last id when the page is full, else None (the end)."""
    return int(items[-1].id) if len(items) == limit else None


def page_args() -> tuple[int, int]:
    """The ``limit`` and ``after`` query parameters of a list endpoint, validated."""
    return (
        query_int("limit", default=50, low=1, high=200),
        query_int("after", default=0, low=0, high=MAX_ID),
    )


def query_int(name: str, *, default: int | None = None, low: int = 0, high: int = 2**31 - 1) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw):
        raise ValidationFailedError.field(name, "must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise ValidationFailedError.field(name, f"must be between {low} and {high}")
    return value


def parse_body(model: type[M]) -> M:
    """The JSON body validated against ``model``; 415/422 problems otherwise."""
    if not request.is_json:
        raise UnsupportedMediaTypeError("send the body as application/json")
    raw = request.get_data(cache=True)
    if b"\x00" not in raw and b"\\u0000" not in raw:
        # Parsed and validated in one pass by pydantic's JSON parser: a packing line's upload
        # of 10,000 pairs costs a third of building Python objects first.
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            if any(err["type"] == "json_invalid" for err in exc.errors()):
                raise ValidationFailedError(
                    "the body is not valid JSON", errors={"body": "invalid JSON"}
                ) from None
            raise _invalid(exc) from None
    data = request.get_json(silent=True)
    if data is None:
        raise ValidationFailedError("the body is not valid JSON", errors={"body": "invalid JSON"})
    nul = _path_of_nul(data)
    if nul is not None:
        raise ValidationFailedError.field(nul or "body", "contains a NUL byte")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


MAX_FIELD_ERRORS = 20  # a 10,000-item upload with a wrong type everywhere names the first few


def _invalid(exc: ValidationError) -> ValidationFailedError:
    found = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = {
        ".".join(str(p) for p in err["loc"]) or "body": err["msg"]
        for err in found[:MAX_FIELD_ERRORS]
    }
    first = next(iter(errors.items()))
    return ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors)


def _path_of_nul(data: Any, path: str = "") -> str | None:
    """The dotted path of the first string holding a NUL byte (PostgreSQL text cannot)."""
    if isinstance(data, str):
        return path if "\x00" in data else None
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where.replace("\x00", "")
            found = _path_of_nul(value, where)
            if found is not None:
                return found
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = _path_of_nul(value, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


class UnsupportedMediaTypeError(YimaError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        # One stable code per field of ``errors``, the same in every language (core/errors.py).
        "error_codes": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def build_spec(
    app: Flask,
    *,
    title: str,
    version: str,
    prefix: str,
    scheme: tuple[str, str] = ("apiKey", "yk_... API key"),
    secured_only: bool = False,
) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes under ``prefix``. Every operation takes the
    bearer ``scheme`` (name, description), or with ``secured_only`` only the views marked
    ``_yima_security``."""
    scheme_name, scheme_text = scheme
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, Any] = {}

    def schema_ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(prefix):
            continue
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, "_yima_operation", None)
        if op is None:
            continue
        parameters: list[dict[str, Any]] = []

        def path_param(match: re.Match[str], params: list[dict[str, Any]] = parameters) -> str:
            converter, name = match.group(1), match.group(2)
            schema: dict[str, Any] = (
                {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
                if converter in ("int", "id")
                else {"type": "string"}
            )
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
            return "{" + name + "}"

        path = _CONVERTER.sub(path_param, rule.rule)
        for name, schema in op.query.items():
            parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry: dict[str, Any] = {
                "summary": op.summary,
                "operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(),
                "tags": [op.tag],
                "parameters": parameters,
                "security": []
                if rule.rule.endswith("openapi.json")
                or (secured_only and not getattr(view, "_yima_security", False))
                else [{scheme_name: []}],
                "responses": {},
            }
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema_ref(op.body)}},
                }
            ok: dict[str, Any] = {"description": "OK"}
            if op.response is not None:
                ok["content"] = {"application/json": {"schema": schema_ref(op.response)}}
            elif op.binary:
                ok["content"] = {op.binary: {"schema": {"type": "string", "format": "binary"}}}
            entry["responses"][str(op.status)] = ok
            problem_ref = {"$ref": "#/components/schemas/Problem"}
            problem = {"application/problem+json": {"schema": problem_ref}}
            for status in sorted({400, 401, 403, 404, 422, *op.errors}):
                entry["responses"][str(status)] = {"description": "Problem", "content": problem}
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                scheme_name: {"type": "http", "scheme": "bearer", "description": scheme_text}
            },
        },
    }
