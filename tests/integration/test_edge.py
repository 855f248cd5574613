"""The open-internet settings on a real uvicorn process: JSON logs with request ids, X-Forwarded-For from a
trusted proxy only (uvicorn's own proxy-header handling must not pre-empt it), per-client 429s, HEAD, CORS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {
        "SWIRL_LOG_FORMAT": "json",
        "SWIRL_TRUSTED_PROXIES": "127.0.0.1",  # the test client plays the proxy
        "SWIRL_RATE_LIMIT_REQUESTS": "0.2",
        "SWIRL_RATE_LIMIT_REQUESTS_BURST": "3",
        "SWIRL_CORS_ORIGINS": "https://app.example.com",
        "SWIRL_TORCH_THREADS": "1",
        "SWIRL_WORKERS": "1",  # one process: the budgets below are exact (with k processes each holds 1/k)
    }
    running = start_server(tiny_checkpoint, tmp_path_factory.mktemp("edge") / "server.log", **settings)
    try:
        yield running
    finally:
        stop_server(running)


def log_entries(server: Server) -> list[dict[str, Any]]:
    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return entries


def wait_for_entry(server: Server, **fields: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in log_entries(server):
            if all(entry.get(k) == v for k, v in fields.items()):
                return entry
        time.sleep(0.05)
    pytest.fail(f"no log entry with {fields}:\n{server.log()[-3000:]}")


def test_every_log_line_is_json_and_the_access_line_carries_the_request_id(server: Server) -> None:
    response = httpx.get(f"{server.url}/sample", params={"n": 4, "seed": 1, "sampler": "ddim", "steps": 2}, headers={"x-request-id": "edge-1"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "edge-1"
    entry = wait_for_entry(server, logger="swirl.access", request_id="edge-1")
    assert entry["status"] == 200 and entry["method"] == "GET" and entry["path"] == "/sample" and entry["bytes"] == len(response.content)
    assert entry["client"] == "127.0.0.1" and entry["duration_ms"] > 0
    # uvicorn's own start-up lines went through the same formatter
    assert any(e["logger"].startswith("uvicorn") for e in log_entries(server))
    error = httpx.get(f"{server.url}/sample", params={"n": 0}, headers={"x-request-id": "edge-422"})
    assert error.status_code == 422 and error.headers["x-request-id"] == "edge-422"
    assert wait_for_entry(server, logger="swirl.access", request_id="edge-422")["status"] == 422


def test_forwarded_for_from_the_trusted_proxy_names_the_client_and_splits_budgets(server: Server) -> None:
    def schedule(forwarded: str) -> httpx.Response:
        return httpx.get(f"{server.url}/schedule", headers={"x-forwarded-for": forwarded, "x-request-id": f"xff-{time.monotonic_ns()}"})

    first = [schedule("198.51.100.1").status_code for _ in range(4)]
    assert first == [200, 200, 200, 429]
    refused = schedule("198.51.100.1")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    # another client behind the same proxy has its own budget
    assert schedule("198.51.100.2").status_code == 200
    # the client's own claims left of the proxy's entry are ignored
    assert schedule("10.9.9.9, 198.51.100.1").status_code == 429
    entry = wait_for_entry(server, logger="swirl.access", request_id=refused.headers["x-request-id"])
    assert entry["client"] == "198.51.100.1" and entry["status"] == 429


def test_head_and_cors_over_real_http(server: Server) -> None:
    fresh = {"x-forwarded-for": "198.51.100.50"}  # a client of its own, with the whole burst
    for path in ("/healthz", "/"):
        get = httpx.get(f"{server.url}{path}", headers=fresh)
        head = httpx.head(f"{server.url}{path}", headers=fresh)
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"]
        assert head.headers["content-security-policy"] == get.headers["content-security-policy"]
    preflight = httpx.options(
        f"{server.url}/sample",
        headers={"origin": "https://app.example.com", "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    denied = httpx.get(f"{server.url}/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers
