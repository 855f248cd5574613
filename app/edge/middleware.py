"""Pure ASGI middleware (no BaseHTTPMiddleware, so disconnects and streaming stay intact)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.head import method_of
from app.metrics import Metrics
from app.wire.encoding import dumps

KNOWN_ENDPOINTS = frozenset(
    {
        "/",
        "/sample",
        "/sample/stream",
        "/forward",
        "/log_prob",
        "/score",
        "/schedule",
        "/model",
        "/models",
        "/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/openapi.json",
    }
)
MODEL_SCOPE_KEY = "swirl.model"
"""Routes that resolved a model put its name here, for the per-model metrics."""


def endpoint_label(path: str) -> str:
    """A bounded label: known paths as they are; /static/…, /models/{name} and the Open Inference Protocol's /v2/… as one each."""
    if path in KNOWN_ENDPOINTS:
        return path
    if path.startswith("/static/"):
        return "/static"
    if path == "/v2" or path.startswith("/v2/"):
        return "/v2"
    if path.startswith("/models/"):
        return "/models/{name}"
    return "other"


class BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, payload: dict[str, str]) -> None:
    body = dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def carries_u(scope: Scope) -> bool:
    """A request whose body may hold u per point: POST /sample and the v2 infer routes."""
    if scope.get("method") != "POST":
        return False
    path: str = scope.get("path", "")
    return path == "/sample" or (path.startswith("/v2/models/") and path.endswith("/infer"))


class BodyLimit:
    """413 for bodies over the limit: at once from Content-Length, else while streaming in, so an
    oversized body is never read whole.

    ``max_bytes`` (SWIRL_MAX_BODY_BYTES) holds for every request but two kinds: the paths in
    ``path_limits`` map to their own (limit, the setting it comes from), so POST /log_prob takes
    thousands of points sized from SWIRL_MAX_LOG_PROB_POINTS; and a body that may carry u per
    point (``carries_u``) gets ``u_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, tuple[int, str]] | None = None, u_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}
        self.u_bytes = max(u_bytes or max_bytes, max_bytes)

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        """The body limit of this request and the setting it comes from."""
        path = scope.get("path", "")
        if path in self.path_limits:
            return self.path_limits[path]
        if self.u_bytes > self.max_bytes and carries_u(scope):
            return self.u_bytes, "SWIRL_MAX_BODY_BYTES + 32 × SWIRL_MAX_POINTS for a body with u"
        return self.max_bytes, "SWIRL_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope)
        message = {"error": f"body: request body larger than {limit} bytes ({setting})"}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"error": "content-length: not an integer"})
                    return
                if declared > limit:
                    await _send_json(send, 413, message)
                    return
        received = 0
        started = too_large = replaced = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    too_large = True
                    raise BodyTooLarge
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started, replaced
            # FastAPI turns any error while reading the body into its own 400; answer 413 instead
            if msg["type"] == "http.response.start" and too_large and not started:
                replaced = True
                started = True
                await _send_json(send, 413, message)
            if replaced:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, message)


class RequestMetrics:
    """Counts requests and latency per endpoint (unknown paths share one label), and per
    model for requests whose route resolved one (``scope[MODEL_SCOPE_KEY]``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # labelled children, looked up once per label set (prometheus_client's .labels() takes a
        # lock and builds a key every call); the label sets are bounded (endpoint_label)
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def _children_for(self, endpoint: str, method: str, status: str, model: str | None) -> tuple[Any, Any]:
        key = (endpoint, method, status, model or "")
        children = self._children.get(key)
        if children is None:
            if model is None:
                children = (self.metrics.latency.labels(endpoint=endpoint), self.metrics.requests.labels(endpoint=endpoint, method=method, status=status))
            else:
                children = (
                    self.metrics.model_latency.labels(model=model, endpoint=endpoint),
                    self.metrics.model_requests.labels(model=model, endpoint=endpoint, status=status),
                )
            self._children[key] = children
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = endpoint_label(path)
        status = 500
        started = time.perf_counter()

        async def tracking_send(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            elapsed = time.perf_counter() - started
            status_label = str(status)
            latency, requests = self._children_for(endpoint, method_of(scope), status_label, None)
            latency.observe(elapsed)
            requests.inc()
            model = scope.get(MODEL_SCOPE_KEY)
            if model is not None:
                model_latency, model_requests = self._children_for(endpoint, "", status_label, model)
                model_requests.inc()
                model_latency.observe(elapsed)
                if status >= 400:
                    self.metrics.model_errors.labels(model=model, endpoint=endpoint, status=str(status)).inc()
