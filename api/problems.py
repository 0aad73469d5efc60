"""Every error the API returns: RFC 9457 problem details (`application/problem+json`) with a stable `type`.

Code raises an `ApiError` subclass; the handlers here turn it, FastAPI's validation errors and Starlette's HTTP
errors into problem responses. Nothing else reaches the client: an unexpected exception is a logged 500."""

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from api.paths import methods_of

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    """Where: `body.quantity`, `query.limit`, `path.product_id`, `header.idempotency-key`."""
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details. `type` is stable: clients branch on it, never on `title` or `detail`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    """422 validation: each invalid field and why."""
    available: int | None = None
    """409 insufficient stock: what the source has."""
    requested: int | None = None
    """409 insufficient stock: what the operation asked for."""


class ApiError(Exception):
    """The request failed."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "/problems/internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


class MalformedRequest(ApiError):
    status, type, title = 400, "/problems/malformed-request", "Malformed request"


class Unauthenticated(ApiError):
    status, type, title = 401, "/problems/unauthenticated", "No valid API key"


class Forbidden(ApiError):
    status, type, title = 403, "/problems/forbidden", "The key's role does not allow this"


class OutsideKeyWarehouses(ApiError):
    status, type, title = 403, "/problems/outside-key-warehouses", "The key may not write at this warehouse"


class UnknownProduct(ApiError):
    status, type, title = 404, "/problems/unknown-product", "Unknown product"
    missing = 0
    """The id (when the database named it)."""


class UnknownWarehouse(ApiError):
    status, type, title = 404, "/problems/unknown-warehouse", "Unknown warehouse"
    missing = 0
    """The id (when the database named it)."""


class UnknownOperation(ApiError):
    status, type, title = 404, "/problems/unknown-operation", "Unknown operation"


class UnknownTransfer(ApiError):
    status, type, title = 404, "/problems/unknown-transfer", "Unknown transfer"


class IdTaken(ApiError):
    status, type, title = 409, "/problems/id-taken", "The id is taken"


class UnknownApiKey(ApiError):
    status, type, title = 404, "/problems/unknown-api-key", "Unknown API key"


class InsufficientStock(ApiError):
    status, type, title = 409, "/problems/insufficient-stock", "Insufficient stock"
    row = 1
    """The failing operation's place in its statement (a document names its line from it)."""
    pair = (0, 0)
    """Its product and warehouse."""


class LastAdminKey(ApiError):
    status, type, title = 409, "/problems/last-admin-key", "The last admin key cannot be revoked"


class IdempotencyKeyReused(ApiError):
    status, type, title = 422, "/problems/idempotency-key-reused", "Idempotency-Key reused for another request"


class InvalidRequest(ApiError):
    status, type, title = 422, "/problems/validation", "Invalid request"


class TooManyFailures(ApiError):
    status, type, title = 429, "/problems/too-many-failed-authentications", "Too many failed authentications"


class DatabaseUnavailable(ApiError):
    status, type, title = 503, "/problems/database-unavailable", "Database unavailable"


class RequestTimeout(ApiError):
    status, type, title = 408, "/problems/request-timeout", "Request timeout"


class TooManyConnections(ApiError):
    status, type, title = 503, "/problems/too-many-connections", "Too many connections"


class BodyTooLarge(ApiError):
    status, type, title = 413, "/problems/body-too-large", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, type, title = 415, "/problems/unsupported-media-type", "Unsupported media type"


# Errors Starlette and FastAPI raise themselves (no route, wrong method, a body that cannot be decoded): type, title.
_HTTP_PROBLEMS = {
    400: (MalformedRequest.type, MalformedRequest.title),
    404: ("/problems/not-found", "Not found"),
    405: ("/problems/method-not-allowed", "Method not allowed"),
}


def problem_body(status: int, type_: str, title: str, detail: str, **extensions: Any) -> dict[str, Any]:
    return {"type": type_, "title": title, "status": status, "detail": detail, **extensions}


def problem_response(
    status: int, type_: str, title: str, detail: str, headers: dict[str, str] | None = None, **extensions: Any
) -> JSONResponse:
    body = problem_body(status, type_, title, detail, **extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def answer(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    """`error` as the answer to an HTTP request, or to a WebSocket handshake: an HTTP response instead of the
    upgrade (the ASGI denial-response extension, which uvicorn has), else a close (1008, or 1011 for a 5xx)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        code = 1011 if error.status >= 500 else 1008
        await send({"type": "websocket.close", "code": code, "reason": error.detail[:120]})
        return
    response = problem_response(error.status, error.type, error.title, error.detail, error.headers, **error.extensions)
    await response(scope, receive, send)


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in errors
    ]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status, exc.type, exc.title, exc.detail, exc.headers, **exc.extensions)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    invalid_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if invalid_json:
        reason = invalid_json[0].get("ctx", {}).get("error", "invalid JSON")
        position = invalid_json[0].get("loc", ("body", "?"))[-1]
        return problem_response(
            400,
            MalformedRequest.type,
            MalformedRequest.title,
            f"the body is not JSON: {reason} (at character {position})",
        )
    errors = field_errors(exc.errors())
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(422, InvalidRequest.type, InvalidRequest.title, detail, errors=errors)


async def _websocket_validation_error(websocket: WebSocket, exc: Exception) -> None:
    assert isinstance(exc, WebSocketRequestValidationError)
    errors = field_errors(exc.errors())
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    await answer(websocket.scope, websocket.receive, websocket.send, InvalidRequest(detail, errors=errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # Starlette names only the methods of the first route with this path; a path can have several.
        headers["Allow"] = ", ".join(methods_of(request.app, request.url.path))
    type_, title = _HTTP_PROBLEMS.get(exc.status_code, ("about:blank", _title(exc.status_code)))
    detail = str(exc.detail)
    if exc.status_code == 400:  # FastAPI's "There was an error parsing the body": not UTF-8, say
        detail = "the body is not JSON: it cannot be decoded as UTF-8 JSON text"
    return problem_response(exc.status_code, type_, title, detail, headers or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, ApiError.type, ApiError.title, "the server failed; the error is in its log")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(WebSocketRequestValidationError, _websocket_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route: the problems it can return, besides the 400/401/403/415/422/429/503 of every
    route."""
    common: tuple[type[ApiError], ...] = (
        MalformedRequest, Unauthenticated, Forbidden, UnsupportedMediaType, InvalidRequest, TooManyFailures,
        DatabaseUnavailable,
    )  # fmt: skip
    out: dict[int | str, dict[str, Any]] = {}
    for error in (*common, *errors):
        entry = out.setdefault(error.status, {"description": "", "model": Problem})
        entry["description"] = " / ".join(filter(None, [entry["description"], error.title]))
    return out


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx response of the OpenAPI document as problem+json (FastAPI writes application/json, and its
    own 422 schema, which this API never returns)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return schema
