"""``HEAD`` on every ``GET`` route: answered as the ``GET`` would be, headers only.

FastAPI routes list only the methods they declare, so ``HEAD /healthz`` would be a 405.
This middleware runs a ``HEAD`` request as a ``GET`` and drops the body, so the status and
every header (``Content-Length`` and ``Content-Type`` included) are the ``GET``'s, for the
routes that exist today and any added later. Once the headers are out, the app is told the
client has gone, so a streaming answer stops instead of being produced for nobody.
The original method is kept in the scope (``HEAD_KEY``) for logs and metrics.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEAD_KEY = "swirl.head"


def method_of(scope: Scope) -> str:
    """The method the client sent (``HEAD`` for a request this middleware turned into ``GET``)."""
    return "HEAD" if scope.get(HEAD_KEY) else str(scope.get("method", ""))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        headers_sent = finished = False

        async def receive_until_answered() -> Message:
            if headers_sent:
                return {"type": "http.disconnect"}
            return await receive()

        async def send_headers_only(message: Message) -> None:
            nonlocal headers_sent, finished
            if message["type"] == "http.response.start":
                headers_sent = True
                await send(message)
            elif message["type"] == "http.response.body":
                if not finished:
                    finished = True
                    await send({"type": "http.response.body", "body": b""})
            else:
                await send(message)

        await self.app({**scope, "method": "GET", HEAD_KEY: True}, receive_until_answered, send_headers_only)
