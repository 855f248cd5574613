"""Security headers on every response: Content-Security-Policy, nosniff, no framing, no referrer, caching.

Three policies:

* the page (``/`` and ``/static/*``): scripts, styles, images and fetches from this origin
  only, nothing inline (``app/static`` has no inline script or style);
* the API docs (``/docs``, ``/redoc``): see ``app.edge.docs_csp`` (their inline bootstrap script
  is allowed by its hash, computed from the very HTML being sent);
* everything else (JSON, metrics, errors): ``default-src 'none'``, so a response that a
  browser is tricked into rendering can load and run nothing.

``Cache-Control`` (unless the route set its own): the page, its assets, the docs, any other
answer with a validator (files from any static mount) and the per-checkpoint facts
(``/schedule``, ``/model``, ``/openapi.json``) are ``no-cache``: stored, but revalidated
(static files carry ``ETag``/``Last-Modified`` and answer ``304``); everything else,
``/sample`` and every error included, is ``no-store``, except a seeded ``GET /sample`` answer,
whose route sets ``public, immutable`` with a strong ``ETag`` (docs/qos.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.docs_csp import DocsPolicy

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
NO_STORE = b"no-store"
REVALIDATE = b"no-cache"
REVALIDATED_PATHS = frozenset({"/", "/schedule", "/model", "/openapi.json"})
VALIDATORS = frozenset({b"etag", b"last-modified"})


def _missing(existing: Iterable[tuple[bytes, bytes]], wanted: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in existing}
    return [(name, value) for name, value in wanted if name not in present]


class SecurityHeaders:
    """Adds the headers above to every HTTP response that does not set them itself."""

    def __init__(
        self,
        app: ASGIApp,
        docs_pages: Iterable[str] = ("/docs", "/redoc"),
        asset_prefixes: Iterable[str] = ("/static/",),
    ) -> None:
        self.app = app
        self.docs_pages = frozenset(p for p in docs_pages if p)
        self.asset_prefixes = tuple(asset_prefixes)
        self.docs_policy = DocsPolicy()
        self.page_headers = (*COMMON, (b"content-security-policy", PAGE_CSP.encode()))
        self.api_headers = (*COMMON, (b"content-security-policy", API_CSP.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in self.docs_pages:
            await self.docs_policy.serve(self.app, scope, receive, send, (*COMMON, (b"cache-control", REVALIDATE)))
            return
        if path == "/" or path.startswith(self.asset_prefixes):
            wanted, cache = self.page_headers, REVALIDATE
        else:
            wanted, cache = self.api_headers, REVALIDATE if path in REVALIDATED_PATHS else NO_STORE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                caching = cache
                if message["status"] >= 400:
                    caching = NO_STORE
                elif caching is NO_STORE and any(name in VALIDATORS for name, _ in headers):
                    caching = REVALIDATE  # a file from any static mount (e.g. the docs' assets): revalidate, don't refetch
                headers += _missing(headers, (*wanted, (b"cache-control", caching)))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
