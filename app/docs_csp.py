"""The Content-Security-Policy of the API docs pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``).

Their HTML (FastAPI's) bootstraps the viewer with a small inline ``<script>`` (and ReDoc's
with an inline ``<style>``). Instead of ``'unsafe-inline'``, the policy sent with each docs
page allows exactly the inline elements of that page by their sha256: the hashes are
computed from the HTML being sent, so the policy stays right whatever the HTML holds, and
nothing injected later (which would not match a hash) can run. ReDoc renders its styles with
styled-components, which inject ``<style>`` elements at run time: the page's ``<redoc>``
element gets a fresh nonce per response, which ReDoc puts on every style element it makes,
and the policy allows that nonce. Everything else must come from this origin (the viewers'
assets are self-hosted); ``data:`` images and fonts are allowed because the viewers' CSS
embeds its icons that way.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
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


def policy_for(html: bytes) -> tuple[str, bytes]:
    """(the policy for this docs page, the page with a nonce on its ``<redoc>`` element if it has one)."""
    scripts = sorted({_hash(body) for attrs, body in INLINE_SCRIPT.findall(html) if not HAS_SRC.search(attrs) and body.strip()})
    styles = sorted({_hash(body) for body in INLINE_STYLE.findall(html)})
    if REDOC_ELEMENT.search(html):
        nonce = secrets.token_urlsafe(18)
        html = REDOC_ELEMENT.sub(b'<redoc nonce="' + nonce.encode() + b'"', html, count=1)
        styles.append(f"'nonce-{nonce}'")
    return policy(scripts, styles), html


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
            if start["status"] == 200 and content_type.startswith(b"text/html") and scope.get("method") != "HEAD":
                csp, body = policy_for(body)
            else:
                csp = self.base
            await finish(body, csp)

        await app(scope, receive, buffering_send)
