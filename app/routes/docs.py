"""``/docs`` (Swagger UI) and ``/redoc`` served offline, from assets this server hosts.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they are blank without
internet access. Here the assets come from the pinned ``fastapi-offline`` package (only
its ``static/`` folder is used; the package is never imported) and are served under
``/docs-static/``, one path that a Content-Security-Policy for the docs can allow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

SWAGGER_UI_PATH = "/docs"
REDOC_PATH = "/redoc"
DOCS_PAGES = (SWAGGER_UI_PATH, REDOC_PATH)  # the pages that get the docs' own CSP (app.edge.docs_csp)
DOCS_STATIC_PATH = "/docs-static"
ASSETS_PACKAGE = "fastapi_offline"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_directory() -> Path:
    """The folder holding Swagger UI's and ReDoc's files; raises if the package or a file is missing."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the docs assets package {ASSETS_PACKAGE!r} is not installed (it is in requirements/lock.txt)")
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    missing = [name for name in ASSETS if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"{directory}: docs assets missing: {', '.join(missing)}")
    return directory


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; call on an app created with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get(SWAGGER_UI_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{DOCS_STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC_PATH}/favicon.png",
        )

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API reference",
            redoc_js_url=f"{DOCS_STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.mount(DOCS_STATIC_PATH, StaticFiles(directory=assets_directory()), name="docs-static")
