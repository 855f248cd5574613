"""Per-request context: the request id, the client address and the access log line.

* ``X-Request-ID``: a client's id is kept when it is 1–128 characters of letters, digits and
  ``-_.:+/=@`` (UUIDs, base64, trace ids); anything else is replaced by a fresh one (never
  echoed: the header must not carry arbitrary text into logs or other systems). The id is on
  every response, errors included, and on every log record made while serving the request.
* The client address (see ``app.edge.client_address``) is resolved once here and kept in the
  ASGI scope for the rate limiter and the access log.
* An exception that escapes the app is answered here with a JSON 500 (so it carries the
  id and the security headers) and logged with its traceback.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.client_address import ClientResolver
from app.edge.head import HEAD_KEY, method_of
from app.edge.logs import REQUEST_ID
from app.process.randomness import request_id
from app.wire.encoding import dumps

log = logging.getLogger("swirl.errors")
access_log = logging.getLogger("swirl.access")

HEADER = b"x-request-id"
VALID_ID = re.compile(rb"[A-Za-z0-9\-_.:+/=@]{1,128}")
CLIENT_KEY = "swirl.client"  # ASGI scope keys
REQUEST_ID_KEY = "swirl.request_id"


def new_request_id() -> str:
    return request_id()


def request_id_from(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """(id, whether the client's own was rejected): the client's id when valid, else a new one."""
    for name, value in headers:
        if name == HEADER:
            if VALID_ID.fullmatch(value):
                return value.decode("ascii"), False
            return new_request_id(), True
    return new_request_id(), False


def client_of(scope: Scope) -> str:
    """The client address RequestContext resolved (the socket peer when it did not run)."""
    client = scope.get(CLIENT_KEY)
    if client is not None:
        return str(client)
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"


class RequestContext:
    def __init__(self, app: ASGIApp, resolver: ClientResolver, access_log: bool = True) -> None:
        self.app = app
        self.resolver = resolver
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        request_id, rejected = request_id_from(headers)
        peer = scope.get("client")
        forwarded = [v.decode("latin-1") for n, v in headers if n == b"x-forwarded-for"] if self.resolver.trusted else []
        client = self.resolver.client(peer[0] if peer else None, forwarded)
        scope[CLIENT_KEY] = client
        scope[REQUEST_ID_KEY] = request_id
        token = REQUEST_ID.set(request_id)
        encoded_id = request_id.encode("ascii")
        status = 0
        sent = 0
        head = bool(scope.get(HEAD_KEY))
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, encoded_id)]}
            elif message["type"] == "http.response.body" and not head:  # HEAD: app.edge.head drops the body
                sent += len(message.get("body", b""))
            await send(message)

        if rejected:
            log.info("replaced an invalid X-Request-ID from %s", client)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.exception("unexpected error on %s %s", method_of(scope), scope.get("path"), extra={"request_id": request_id})
            if status:  # the answer has begun: all that is left is to drop the connection
                raise
            body = dumps({"error": f"internal error: {type(exc).__name__}"})
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            if self.access_log:
                method = method_of(scope)
                path = scope.get("path", "")
                query = scope.get("query_string", b"").decode("latin-1")
                duration_ms = round((time.perf_counter() - started) * 1000, 3)
                access_log.info(
                    '%s "%s %s%s" %s %d B %.1f ms',
                    client,
                    method,
                    path,
                    f"?{query}" if query else "",
                    status or "-",
                    sent,
                    duration_ms,
                    extra={
                        "request_id": request_id,
                        "client": client,
                        "method": method,
                        "path": path,
                        "query": query,
                        "status": status,
                        "bytes": sent,
                        "duration_ms": duration_ms,
                    },
                )
            REQUEST_ID.reset(token)
