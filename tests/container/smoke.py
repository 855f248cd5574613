"""Smoke check of a running Swirl server (the container test's first step).

    python tests/container/smoke.py http://127.0.0.1:8000             # check
    python tests/container/smoke.py http://127.0.0.1:8000 --print-id  # print /model's id

Independent of the integration suite: liveness, readiness, the model's identity and
one seeded sample of 100 points (shape, finiteness, determinism).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any, NoReturn

import httpx

N = 100
SEED = 1


def fail(message: str) -> NoReturn:
    print(f"smoke: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def find_points(body: Any) -> list[Any]:
    """The list of [x, y] rows in a /sample response (a bare list or one under a key)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("points", "samples", "x0", "x", "data"):
            value = body.get(key)
            if isinstance(value, list):
                return value
        lists = [v for v in body.values() if isinstance(v, list) and len(v) == N]
        if len(lists) == 1:
            return lists[0]
    fail(f"/sample: cannot find the points in {str(body)[:200]}")


def get_json(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    if response.status_code != 200:
        fail(f"GET {path} -> {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        fail(f"GET {path}: not JSON: {response.text[:200]}")


def model_id(client: httpx.Client) -> str:
    model = get_json(client, "/model")
    if not isinstance(model, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(model.get("id", ""))):
        fail(f"/model: no sha256 'id' in {str(model)[:300]}")
    return str(model["id"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--print-id", action="store_true", help="print /model's id and exit")
    args = parser.parse_args()

    with httpx.Client(base_url=args.base_url, timeout=60) as client:
        if args.print_id:
            print(model_id(client))
            return 0

        for path in ("/healthz", "/readyz"):
            response = client.get(path)
            if response.status_code != 200:
                fail(f"GET {path} -> {response.status_code}: {response.text[:300]}")
            print(f"smoke: {path} 200")

        ident = model_id(client)
        print(f"smoke: /model id {ident}")

        for path, kind in (("/", "text/html"), ("/static/app.js", "javascript"), ("/static/js/sample.js", "javascript"), ("/static/style.css", "text/css")):
            response = client.get(path)
            if response.status_code != 200 or kind not in response.headers.get("content-type", ""):
                fail(f"GET {path} -> {response.status_code} {response.headers.get('content-type')}: the page is not served")
        print("smoke: the page and its assets are served")

        docs = [("/docs", "text/html"), ("/redoc", "text/html")]
        docs += [("/docs-static/swagger-ui-bundle.js", "javascript"), ("/docs-static/redoc.standalone.js", "javascript")]
        for path, kind in docs:
            response = client.get(path)
            if response.status_code != 200 or kind not in response.headers.get("content-type", ""):
                fail(f"GET {path} -> {response.status_code} {response.headers.get('content-type')}: the API docs are not served offline")
        print("smoke: /docs and /redoc and their assets are served by the image")

        first = get_json(client, "/sample", n=N, seed=SEED)
        points = find_points(first)
        if len(points) != N:
            fail(f"/sample?n={N}: {len(points)} points")
        for row in points:
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in row)):
                fail(f"/sample: a row is not two finite numbers: {row!r}")
        if isinstance(first, dict) and "model" in first and first["model"] != ident:
            fail(f"/sample names model {first['model']}, /model says {ident}")
        again = find_points(get_json(client, "/sample", n=N, seed=SEED))
        if again != points:
            fail("/sample with the same seed gave different points")
        print(f"smoke: /sample?n={N}&seed={SEED}: {N}x2 finite, deterministic")
    print("smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
