"""CORS: off by default, exact origins or *, preflight handled, denied origins get no CORS headers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.edge.cors import parse_origins
from tests.app.conftest import AppFactory

ALLOWED = "https://app.example.com"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "content-type, x-request-id"}


async def test_no_cross_origin_access_by_default(running_app: AppFactory) -> None:
    async with running_app() as r:
        response = await r.http.get("/healthz", headers={"origin": ALLOWED})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        preflight = await r.http.options("/sample", headers={"origin": ALLOWED, **PREFLIGHT})
        assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


async def test_listed_origins_are_allowed_and_others_denied(running_app: AppFactory) -> None:
    async with running_app(cors_origins=f"{ALLOWED}, http://localhost:3000") as r:
        allowed = await r.http.get("/sample", params={"n": 2, "seed": 1, "sampler": "ddim", "steps": 2}, headers={"origin": ALLOWED})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert "access-control-allow-credentials" not in allowed.headers
        exposed = {h.strip().lower() for h in allowed.headers["access-control-expose-headers"].split(",")}
        assert {"x-request-id", "retry-after"} <= exposed
        assert "origin" in allowed.headers.get("vary", "").lower()
        # errors carry the CORS headers too, so the calling page can read them
        error = await r.http.get("/sample", params={"n": 0}, headers={"origin": "http://localhost:3000"})
        assert error.status_code == 422 and error.headers["access-control-allow-origin"] == "http://localhost:3000"

        denied = await r.http.get("/healthz", headers={"origin": "https://evil.example"})
        assert denied.status_code == 200 and "access-control-allow-origin" not in denied.headers
        other_port = await r.http.get("/healthz", headers={"origin": "https://app.example.com:8443"})
        assert "access-control-allow-origin" not in other_port.headers


async def test_preflight_allowed_and_denied(running_app: AppFactory) -> None:
    async with running_app(cors_origins=ALLOWED) as r:
        ok = await r.http.options("/sample", headers={"origin": ALLOWED, **PREFLIGHT})
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")} >= {"GET", "HEAD", "POST"}
        allowed_headers = {h.strip().lower() for h in ok.headers["access-control-allow-headers"].split(",")}
        assert {"content-type", "x-request-id"} <= allowed_headers
        assert int(ok.headers["access-control-max-age"]) > 0
        # preflights get the security headers and a request id like everything else
        assert ok.headers["x-content-type-options"] == "nosniff" and ok.headers["x-request-id"]

        bad_origin = await r.http.options("/sample", headers={"origin": "https://evil.example", **PREFLIGHT})
        assert bad_origin.status_code == 400 and "access-control-allow-origin" not in bad_origin.headers
        bad_method = await r.http.options("/sample", headers={"origin": ALLOWED, "access-control-request-method": "DELETE"})
        assert bad_method.status_code == 400
        bad_header = await r.http.options(
            "/sample", headers={"origin": ALLOWED, "access-control-request-method": "POST", "access-control-request-headers": "authorization"}
        )
        assert bad_header.status_code == 400


async def test_star_allows_any_origin_without_credentials(running_app: AppFactory) -> None:
    async with running_app(cors_origins="*") as r:
        response = await r.http.get("/healthz", headers={"origin": "https://anyone.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers
        preflight = await r.http.options("/sample", headers={"origin": "https://anyone.example", **PREFLIGHT})
        assert preflight.status_code == 200


def test_origins_are_checked_at_start_up() -> None:
    assert parse_origins("") == ()
    assert parse_origins(" https://A.example.com/ ,http://localhost:3000") == ("https://a.example.com", "http://localhost:3000")
    assert parse_origins("*") == ("*",)
    for bad in ("app.example.com", "https://app.example.com/path", "ftp://x.example", "*, https://a.example", "https://user@a.example"):
        with pytest.raises(ValueError):
            parse_origins(bad)
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins="https://a.example/api")
