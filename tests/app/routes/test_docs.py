"""/docs and /redoc work offline, and the OpenAPI document says what the server really sends."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.routes.docs import DOCS_STATIC_PATH


async def test_docs_pages_load_every_asset_from_this_server(client: httpx.AsyncClient) -> None:
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        response = await client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        urls += re.findall(r"""url: *['"]([^'"]+)['"]""", response.text)
        assert urls, response.text[:500]
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        for name in assets:
            assert f"{DOCS_STATIC_PATH}/{name}" in urls
            asset = await client.get(f"{DOCS_STATIC_PATH}/{name}")
            assert asset.status_code == 200 and len(asset.content) > 10_000
            assert ("javascript" if name.endswith(".js") else "css") in asset.headers["content-type"]
        assert "cdn" not in response.text.lower() and "fonts.googleapis" not in response.text


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


async def test_every_endpoint_documents_a_typed_response_with_an_example(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = operation["responses"]["200"]["content"]
            if path == "/metrics":
                assert "text/plain" in ok
                continue
            if path == "/sample/stream":  # server-sent events, documented per event
                assert "text/event-stream" in ok
                continue
            schema = _resolve(ok["application/json"]["schema"], spec)
            assert schema.get("properties"), f"{method} {path}: untyped 200 response"
            assert schema.get("examples"), f"{method} {path}: no example"
            for status, response in operation["responses"].items():
                if status != "200" and "content" in response:
                    assert _resolve(response["content"]["application/json"]["schema"], spec).get("properties"), (path, status)


@pytest.mark.parametrize(
    "body,content_type",
    [(b"{not json", "application/json"), (b'{"n": 5', "application/json"), (b"\xff\xfe\x00", "application/json"), (b"[1, 2]", "application/json")],
)
async def test_a_bad_post_body_gets_a_status_the_schema_lists(client: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    spec = (await client.get("/openapi.json")).json()
    documented = set(spec["paths"]["/sample"]["post"]["responses"])
    response = await client.post("/sample", content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert str(response.status_code) in documented
    assert "error" in response.json()


async def test_documented_error_codes_are_ones_the_server_sends(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "400" not in spec["paths"]["/sample"]["post"]["responses"]  # malformed bodies get 422, never 400
    assert {"422", "413", "503", "504"} <= set(spec["paths"]["/sample"]["post"]["responses"])
    assert set(spec["paths"]["/healthz"]["get"]["responses"]) == {"200"}
    assert set(spec["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
