"""Errors as JSON: every 4xx names the field at fault, nothing leaks as a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount

from app.wire.encoding import FastJSON
from app.wire.schemas import LimitError
from model.engine import DeadlineExceeded, NonFiniteError
from model.errors import InvalidParameter

log = logging.getLogger("swirl.errors")

RETRY_AFTER_S = 1


class ServiceUnavailable(Exception):
    """503 with Retry-After: admission refused (too much work in flight) or shutting down."""

    def __init__(self, message: str, reason: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class RequestTimeout(Exception):
    """504: the request waited longer than SWIRL_REQUEST_TIMEOUT_S."""


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """('query', 'n') → 'n'; ('body', 'trajectory_every') → 'trajectory_every'; ('body',) → 'body'."""
    parts = [str(p) for p in loc if p not in ("query", "body", "path")]
    return ".".join(parts) if parts else str(loc[0]) if loc else "request"


def validation_summary(errors: list[dict[str, Any]]) -> str:
    messages = []
    for error in errors:
        if error.get("type") == "json_invalid":
            messages.append(f"body: malformed JSON ({error.get('ctx', {}).get('error', 'could not parse')})")
        else:
            messages.append(f"{_field(error.get('loc', ()))}: {error.get('msg', 'invalid')}")
    return "; ".join(messages)


def _jsonable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # pydantic puts the raw input and exception objects in the error; keep what JSON can carry
    clean = []
    for error in errors:
        item: dict[str, Any] = {k: error[k] for k in ("type", "loc", "msg") if k in error}
        if "input" in error and isinstance(error["input"], str | int | float | bool | type(None)):
            value = error["input"]
            if isinstance(value, int) and not -(2**63) <= value < 2**64:  # past what orjson encodes
                value = str(value)
            item["input"] = value
        clean.append(item)
    return clean


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # those a route here may declare


def allowed_methods(request: Request) -> str | None:
    """Every method the request's path supports (RFC 9110 §15.5.6: a 405 lists them all), over
    every route on the path: Starlette's 405 names only the first route's (``GET`` for
    ``/sample``, which POST serves too). ``HEAD`` wherever ``GET`` is (``app.edge.head``).
    None for a path no route declares (a mounted app's own 405 keeps its own ``Allow``)."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    methods = {method for method in METHODS if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)}
    if not methods:
        return None
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


BODY_PARSE_ERROR = "There was an error parsing the body"  # fastapi.routing's HTTPException(400) detail


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        return FastJSON({"error": validation_summary(errors), "detail": _jsonable(errors)}, status_code=422)

    @app.exception_handler(LimitError)
    async def on_limit(request: Request, exc: LimitError) -> Response:
        detail = [{"type": "value_error", "loc": [exc.location, exc.field], "msg": str(exc)}]
        return FastJSON({"error": f"{exc.field}: {exc}", "detail": detail}, status_code=422)

    @app.exception_handler(InvalidParameter)
    async def on_invalid(request: Request, exc: InvalidParameter) -> Response:
        location = "body" if request.method == "POST" else "query"
        detail = [{"type": "value_error", "loc": [location, exc.field], "msg": str(exc)}]
        return FastJSON({"error": f"{exc.field}: {exc}", "detail": detail}, status_code=422)

    @app.exception_handler(ServiceUnavailable)
    async def on_unavailable(request: Request, exc: ServiceUnavailable) -> Response:
        return FastJSON({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestTimeout)
    async def on_timeout(request: Request, exc: RequestTimeout) -> Response:
        return FastJSON({"error": str(exc)}, status_code=504)

    @app.exception_handler(DeadlineExceeded)
    async def on_deadline(request: Request, exc: DeadlineExceeded) -> Response:
        return FastJSON({"error": f"the deadline (timeout_ms or SWIRL_REQUEST_TIMEOUT_S) passed mid-chain: {exc}"}, status_code=504)

    @app.exception_handler(NonFiniteError)
    async def on_non_finite(request: Request, exc: NonFiniteError) -> Response:
        log.error("refusing to return non-finite samples for %s", request.url.path)
        return FastJSON({"error": f"the model produced non-finite values (NaN or inf); no points returned: {exc}"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # FastAPI's 400 for a body it cannot decode (e.g. not UTF-8): bad input like any other, so 422 naming the body
            message = "body: could not be decoded as JSON text (is it UTF-8?)"
            return FastJSON({"error": message, "detail": [{"type": "json_invalid", "loc": ["body"], "msg": message}]}, status_code=422)
        headers = exc.headers
        allow = allowed_methods(request) if exc.status_code == 405 else None
        if allow is not None:
            headers = {**(headers or {}), "Allow": allow}
        return FastJSON({"error": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return FastJSON({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
