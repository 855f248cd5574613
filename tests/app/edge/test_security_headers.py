"""Security headers, caching and HEAD on every route: the route table comes from the OpenAPI schema,
so routes added later are covered without touching this file."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from app.edge.security_headers import API_CSP, PAGE_CSP
from app.main import create_app
from tests.app.conftest import MODULE_LOOP
from tests.conftest import make_settings

pytestmark = MODULE_LOOP

# not in the schema, but served: the page, its assets, the docs, the schema itself, an unknown path
EXTRA_GETS = ("/", "/static/app.js", "/static/js/api.js", "/static/style.css", "/static/favicon.svg", "/docs", "/redoc", "/openapi.json", "/no-such-page")
REQUEST_ID = re.compile(r"[A-Za-z0-9\-_.:+/=@]{1,128}")
# small, valid values for every parameter a route might declare (unknown names get "1")
PARAMETER_VALUES = {"n": "3", "seed": "1", "t": "5", "sampler": "ddim", "steps": "2"}


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


def assert_secure(response: httpx.Response, what: str) -> None:
    h = response.headers
    assert h.get("x-content-type-options") == "nosniff", what
    assert h.get("x-frame-options") == "DENY", what
    assert h.get("referrer-policy") == "no-referrer", what
    csp = directives(h.get("content-security-policy", ""))
    assert csp.get("frame-ancestors") == ["'none'"], (what, h.get("content-security-policy"))
    assert csp.get("default-src") == ["'none'"], (what, h.get("content-security-policy"))
    assert csp.get("base-uri") == ["'none'"], what
    for directive, sources in csp.items():
        assert "'unsafe-eval'" not in sources and "*" not in sources, (what, csp)
        # ReDoc injects its styles at run time (see app/edge/docs_csp.py): its page alone may have inline styles
        if not (what.startswith(("GET /redoc", "HEAD /redoc")) and directive == "style-src"):
            assert "'unsafe-inline'" not in sources, (what, csp)
    assert h.get("cache-control"), what
    assert REQUEST_ID.fullmatch(h.get("x-request-id", "")), what
    if response.status_code >= 400:
        assert h["cache-control"] == "no-store", what


def schema_requests(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any] | None]]:
    """(method, url path, query, json body) for every operation: valid small parameters, path templates filled."""
    requests = []
    for template, operations in schema["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method, operation in operations.items():
            query = {p["name"]: PARAMETER_VALUES.get(p["name"], "1") for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
            query.update({name: value for name, value in PARAMETER_VALUES.items() if any(p["name"] == name for p in operation.get("parameters", []))})
            body = {"n": 3, "seed": 1, "sampler": "ddim", "steps": 2} if "requestBody" in operation else None
            requests.append((method.upper(), path, query, body))
    return requests


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(tiny_checkpoint: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tiny_checkpoint))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as client:
            yield client


async def operations(http: httpx.AsyncClient) -> list[tuple[str, str, dict[str, str], dict[str, Any] | None]]:
    schema = (await http.get("/openapi.json")).json()
    ops = schema_requests(schema)
    assert {("GET", "/sample"), ("POST", "/sample"), ("GET", "/healthz"), ("GET", "/metrics")} <= {(m, p) for m, p, _, _ in ops}
    return ops


async def test_every_schema_route_answers_with_the_security_headers(http: httpx.AsyncClient) -> None:
    for method, path, query, body in await operations(http):
        ok = await http.request(method, path, params=query, json=body)
        assert ok.status_code < 500, (method, path, ok.status_code, ok.text)
        assert_secure(ok, f"{method} {path} -> {ok.status_code}")
        assert ok.headers["content-security-policy"] == API_CSP, (method, path)
        # the same route refusing its input (unknown parameters are refused everywhere that takes any)
        bad = await http.request(method, path, params={**query, "n": "-1"}, json={**body, "n": -1} if body is not None else None)
        assert_secure(bad, f"{method} {path} (bad input) -> {bad.status_code}")


async def test_page_assets_docs_and_errors_answer_with_the_security_headers(http: httpx.AsyncClient) -> None:
    docs = directives((await http.get("/docs")).headers["content-security-policy"])
    assert any(source.startswith("'sha256-") for source in docs["script-src"]), docs  # its inline bootstrap, by hash
    for path in EXTRA_GETS:
        response = await http.get(path)
        assert_secure(response, f"GET {path} -> {response.status_code}")
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_CSP
    assert (await http.get("/static/app.js")).headers["content-security-policy"] == PAGE_CSP
    assert (await http.get("/no-such-page")).status_code == 404
    # refused before routing: too large a body, a method the route lacks
    too_large = await http.post("/sample", content=b"x" * 4_000_000, headers={"content-type": "application/json"})
    assert too_large.status_code == 413
    assert_secure(too_large, "413")
    not_allowed = await http.delete("/healthz")
    assert not_allowed.status_code == 405
    assert_secure(not_allowed, "405")


async def test_cache_control_fits_each_endpoint(http: httpx.AsyncClient) -> None:
    sample = await http.get("/sample", params={"n": 3, "seed": 1, "sampler": "ddim", "steps": 2})
    assert sample.status_code == 200 and sample.headers["cache-control"] == "public, max-age=31536000, immutable"  # seeded: its own (docs/qos.md)
    unseeded = await http.get("/sample", params={"n": 3, "sampler": "ddim", "steps": 2})
    assert unseeded.status_code == 200 and unseeded.headers["cache-control"] == "no-store"
    assert (await http.post("/sample", json={"n": 3, "seed": 1})).headers["cache-control"] == "no-store"
    assert (await http.get("/forward", params={"t": 3, "n": 3})).headers["cache-control"] == "no-store"
    assert (await http.get("/healthz")).headers["cache-control"] == "no-store"
    assert (await http.get("/metrics")).headers["cache-control"] == "no-store"
    for path in ("/", "/schedule", "/model", "/openapi.json"):
        assert (await http.get(path)).headers["cache-control"] == "no-cache", path
    # static assets: stored, revalidated with their validators (304 without a body)
    asset = await http.get("/static/app.js")
    assert asset.status_code == 200 and asset.headers["cache-control"] == "no-cache"
    assert asset.headers.get("etag") and asset.headers.get("last-modified")
    again = await http.get("/static/app.js", headers={"if-none-match": asset.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert_secure(again, "304")


async def test_head_answers_every_get_route_with_the_get_headers_and_no_body(http: httpx.AsyncClient) -> None:
    gets = [(path, query) for method, path, query, _ in await operations(http) if method == "GET"]
    gets += [(path, {}) for path in EXTRA_GETS]
    for path, query in gets:
        query = {**query, "seed": "1"} if path == "/sample" or path == "/forward" else query
        get = await http.get(path, params=query)
        head = await http.head(path, params=query)
        what = f"HEAD {path} -> {head.status_code}"
        assert head.status_code == get.status_code != 405, what
        assert head.content == b"", what
        assert_secure(head, what)
        for name in ("content-type", "content-security-policy", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), (what, name)
        if path not in ("/metrics", "/readyz"):  # their bodies change between two calls (counters, queue depth)
            assert head.headers.get("content-length") == get.headers.get("content-length"), what
    # HEAD of a path that does not exist is a 404 like its GET
    assert (await http.head("/no-such-page")).status_code == 404


async def test_head_counts_as_head_in_metrics_and_logs(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swirl.access")
    await http.head("/healthz", headers={"x-request-id": "head-1"})
    access = [r for r in caplog.records if r.name == "swirl.access" and getattr(r, "request_id", None) == "head-1"]
    assert len(access) == 1 and access[0].method == "HEAD" and access[0].bytes == 0  # type: ignore[attr-defined]
    text = (await http.get("/metrics")).text
    assert re.search(r'swirl_requests_total\{endpoint="/healthz",method="HEAD",status="200"\} [1-9]', text), text
