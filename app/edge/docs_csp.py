"""The Content-Security-Policy of the API docs pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``).

Their HTML (FastAPI's) bootstraps the viewer with a small inline ``<script>`` (and ReDoc's
with an inline ``<style>``). Instead of ``'unsafe-inline'``, the policy sent with each docs
page allows exactly the inline scripts of that page by their sha256: the hashes are computed
from the HTML being sent, so the policy stays right whatever the HTML holds, and no script
injected later (which would not match a hash) can run. Everything else must come from this
origin (the viewers' assets are self-hosted); ``data:`` images and fonts are allowed because
the viewers' CSS embeds its icons that way, ``blob:`` workers because ReDoc's search runs in one.

Swagger UI needs nothing inline beyond its bootstrap script. ReDoc is the one exception, for
styles only: it renders with styled-components and bundles CSS that it injects as
``<style>`` elements at run time, some while its bundle loads, before any nonce could be
handed to it (and Chromium hides a ``nonce`` attribute on the ``<redoc>`` element from the
script that would read it). So a page with a ``<redoc>`` element gets ``style-src 'self'
'unsafe-inline'``; its ``script-src`` stays as strict as Swagger UI's. Inline styles cannot
run script; the docs page shows only this app's own OpenAPI schema.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
INLINE_STYLE = re.compile(rb"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
REDOC_ELEMENT = re.compile(rb"<redoc\b", re.IGNORECASE)
HAS_SRC = re.compile(rb"\bsrc\s*=", re.IGNORECASE)
MAX_HTML_BYTES = 1 << 20


def _hash(content: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


def policy(script_sources: Iterable[str] = (), style_sources: Iterable[str] = ()) -> str:
    scripts = " ".join(["'self'", *script_sources])
    styles = " ".join(["'self'", *style_sources])
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def policy_for(html: bytes) -> str:
    """The policy for this docs page."""
    scripts = sorted({_hash(body) for attrs, body in INLINE_SCRIPT.findall(html) if not HAS_SRC.search(attrs) and body.strip()})
    if REDOC_ELEMENT.search(html):
        return policy(scripts, ["'unsafe-inline'"])  # see the module docstring; a hash next to it would switch it off
    return policy(scripts, sorted({_hash(body) for body in INLINE_STYLE.findall(html)}))


class DocsPolicy:
    """Serves a docs page through ``app`` with a policy made for its HTML."""

    base = policy()

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, extra: Iterable[tuple[bytes, bytes]]) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        extra = tuple(extra)

        async def finish(body: bytes, csp: str) -> None:
            assert start is not None
            names = {b"content-security-policy", b"content-length", *(name for name, _ in extra)}
            headers = [(n, v) for n, v in start.get("headers", ()) if n.lower() not in names]
            headers += [*extra, (b"content-security-policy", csp.encode()), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        async def buffering_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                if sum(map(len, chunks)) > MAX_HTML_BYTES:
                    raise RuntimeError("docs page larger than expected")
                return
            body = b"".join(chunks)
            content_type = dict(start.get("headers", ())).get(b"content-type", b"")
            csp = policy_for(body) if start["status"] == 200 and content_type.startswith(b"text/html") else self.base
            await finish(body, csp)

        await app(scope, receive, buffering_send)
