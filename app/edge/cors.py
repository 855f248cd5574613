"""Cross-origin access as configuration: ``SWIRL_CORS_ORIGINS``.

Empty (the default): no CORS headers, so browsers keep pages on other origins from reading
Swirl's answers. A comma-separated list of exact origins (``https://app.example.com``)
lets those pages call the API; ``*`` lets any page do so. No credentials are ever allowed
(the API has none to protect, and ``*`` with credentials is refused by browsers anyway).
Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered for ``GET``,
``HEAD`` and ``POST`` with the ``Content-Type``, ``Accept`` and ``X-Request-ID`` headers, and
cached by the browser for ``PREFLIGHT_MAX_AGE_S``. Answers expose ``X-Request-ID``,
``Retry-After`` and ``Server-Timing`` to the calling page.

The protocol itself is Starlette's ``CORSMiddleware`` (pure ASGI); this module only turns
the setting into its arguments and checks the origins at start-up.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

PREFLIGHT_MAX_AGE_S = 600
ALLOWED_METHODS = ("GET", "HEAD", "POST")
ALLOWED_HEADERS = ("Content-Type", "Accept", "X-Request-ID")
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After", "Server-Timing")


def parse_origins(spec: str) -> tuple[str, ...]:
    """``"https://a.example, http://localhost:3000"`` → the origins; ``*`` alone means any; ValueError names a bad one."""
    origins = tuple(item.strip().rstrip("/").lower() for item in spec.split(",") if item.strip())
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError("'*' allows every origin: list it alone")
        return origins
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment or parts.username:
            raise ValueError(f"not an origin (scheme://host[:port], nothing after it): {origin!r}")
    return origins


def install(app: FastAPI, origins: tuple[str, ...]) -> None:
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
