"""X-Request-ID: kept when valid, replaced when not, on every response (errors included) and in the log line."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.app.conftest import MODULE_LOOP
from tests.conftest import make_settings

pytestmark = MODULE_LOOP

GENERATED = re.compile(r"[0-9a-f]{32}")


class Boom(RuntimeError):
    pass


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(tiny_checkpoint: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tiny_checkpoint))

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise Boom("a bug")

    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as client:
            yield client


@pytest.mark.parametrize("request_id", ["3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f", "a", "abc.DEF_123:+/=@-", "x" * 128])
async def test_a_valid_client_id_comes_back(http: httpx.AsyncClient, request_id: str) -> None:
    response = await http.get("/healthz", headers={"x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["", "x" * 129, "has space", "semi;colon", 'quote"d', "<script>", "ünïcode", "new\tline"])
async def test_an_invalid_client_id_is_replaced_never_echoed(http: httpx.AsyncClient, request_id: str) -> None:
    response = await http.get("/healthz", headers={"x-request-id": request_id.encode("utf-8")})
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["x-request-id"]), response.headers["x-request-id"]


async def test_every_response_carries_an_id_and_generated_ids_differ(http: httpx.AsyncClient) -> None:
    responses = [
        await http.get("/healthz"),
        await http.get("/sample", params={"n": 0}),  # 422
        await http.get("/nowhere"),  # 404
        await http.post("/sample", content=b"x" * 4_000_000, headers={"content-type": "application/json"}),  # 413
        await http.delete("/sample"),  # 405
        await http.get("/boom"),  # an unexpected exception: 500
    ]
    assert [r.status_code for r in responses] == [200, 422, 404, 413, 405, 500]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(GENERATED.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    boom = responses[-1]
    assert boom.json() == {"error": "internal error: Boom"}
    assert boom.headers["x-content-type-options"] == "nosniff" and boom.headers["cache-control"] == "no-store"
    mine = await http.get("/boom", headers={"x-request-id": "trace-500"})
    assert mine.status_code == 500 and mine.headers["x-request-id"] == "trace-500"


async def test_the_access_line_and_the_error_log_carry_the_id(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await http.get("/sample", params={"n": 2, "seed": 3, "sampler": "ddim", "steps": 2}, headers={"x-request-id": "req-ok-1"})
    await http.get("/boom", headers={"x-request-id": "req-boom-1"})
    access = [r for r in caplog.records if r.name == "swirl.access"]
    ok = next(r for r in access if r.request_id == "req-ok-1")  # type: ignore[attr-defined]
    assert ok.status == 200 and ok.method == "GET" and ok.path == "/sample" and "seed=3" in ok.query  # type: ignore[attr-defined]
    assert ok.bytes > 0 and ok.duration_ms > 0  # type: ignore[attr-defined]
    assert "/sample?n=2&seed=3" in ok.getMessage() and " 200 " in ok.getMessage()
    failed = next(r for r in access if r.request_id == "req-boom-1")  # type: ignore[attr-defined]
    assert failed.status == 500  # type: ignore[attr-defined]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and getattr(r, "request_id", None) == "req-boom-1"]
    assert errors and errors[0].exc_info and "Boom" in caplog.text
