"""Cost of the open-internet middleware (security headers, request ids + access log, HEAD, CORS, rate limits).

    python benchmarks/edge.py [--checkpoint checkpoints/swiss-roll] [--rounds 30] [--per-round 40]

Four real uvicorn processes on loopback, side by side in one run, requests interleaved
round-robin so machine noise hits them alike:

* before: the app with only the middleware it had before (body limit, request metrics);
* after, defaults: everything on that is on by default (headers, request id, access log, HEAD);
* after, SWIRL_ACCESS_LOG=false: the same without the access log line;
* after, all on: plus CORS (with an Origin header sent), both rate limits, trusted proxies and JSON logs.

Sequential keep-alive round trips of ``GET /healthz`` and a small ``GET /sample``
(n=10, ddim, 2 steps); medians and the difference to "before". Logs go to /dev/null.

Over loopback HTTP on a shared, loaded 2-core machine the round trip's noise is larger than
the middleware, so the same four stacks are also driven in-process (``--in-process``: the
ASGI app called directly, no sockets, no uvicorn): that isolates the middleware's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, table  # noqa: E402
from tests.conftest import make_settings  # noqa: E402

LAUNCH = """
import sys, uvicorn
from app.config import Settings
from app.main import create_app
from app.edge.middleware import BodyLimit, RequestMetrics
app = create_app(Settings())
if sys.argv[1] == "before":
    app.user_middleware = [m for m in app.user_middleware if m.cls in (BodyLimit, RequestMetrics)]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_config=None, proxy_headers=False)
"""
ALL_ON = {
    "SWIRL_CORS_ORIGINS": "https://app.example.com",
    "SWIRL_RATE_LIMIT": "1e12",
    "SWIRL_RATE_LIMIT_REQUESTS": "1e9",
    "SWIRL_TRUSTED_PROXIES": "127.0.0.1",
    "SWIRL_LOG_FORMAT": "json",
}
VARIANTS = {
    "before": ("before", {}),
    "after, defaults": ("after", {}),
    "after, SWIRL_ACCESS_LOG=false": ("after", {"SWIRL_ACCESS_LOG": "false"}),
    "after, all on": ("after", ALL_ON),
}
REQUESTS = {"GET /healthz": ("/healthz", {}), "GET /sample n=10 ddim 2 steps": ("/sample", {"n": 10, "seed": 1, "sampler": "ddim", "steps": 2})}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(checkpoint: str, variant: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {**os.environ, "SWIRL_CHECKPOINT": checkpoint, "SWIRL_DEVICE": "cpu", "SWIRL_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", **env}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, variant, str(port)], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{variant} server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=0.5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{variant} server not ready")


def in_process(checkpoint: str, rounds: int, per_round: int) -> list[list[str]]:
    """Median µs per request with the ASGI app called directly, the three stacks interleaved."""
    from asgi_lifespan import LifespanManager

    from app.edge.middleware import BodyLimit, RequestMetrics
    from app.main import create_app

    apps = {
        name: create_app(make_settings(Path(checkpoint), torch_threads=1, **{k[len("SWIRL_") :].lower(): v for k, v in env.items()}))
        for name, (_, env) in VARIANTS.items()
    }
    before = apps["before"]
    before.user_middleware = [m for m in before.user_middleware if m.cls in (BodyLimit, RequestMetrics)]
    extra_headers = {"after, all on": [(b"origin", b"https://app.example.com"), (b"x-forwarded-for", b"198.51.100.1")]}

    async def call(app: object, name: str, path: str, query: bytes) -> int:
        done = asyncio.Event()
        first = True
        status = 0

        async def receive() -> dict[str, object]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
            elif not message.get("more_body"):
                done.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"bench"), *extra_headers.get(name, [])],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)  # type: ignore[operator]
        return status

    async def run() -> dict[tuple[str, str], list[float]]:
        times: dict[tuple[str, str], list[float]] = {(r, v): [] for r in REQUESTS for v in apps}
        managers = {name: LifespanManager(app, startup_timeout=120) for name, app in apps.items()}
        started = {name: await manager.__aenter__() for name, manager in managers.items()}
        for handler in logging.getLogger().handlers:  # the access log is part of the cost; its output is not
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        try:
            for request, (path, params) in REQUESTS.items():
                query = "&".join(f"{k}={v}" for k, v in params.items()).encode()
                for name, app in started.items():
                    for _ in range(20):
                        assert await call(app.app, name, path, query) == 200
                for _ in range(rounds):
                    for name, app in started.items():
                        for _ in range(per_round):
                            t0 = time.perf_counter()
                            status = await call(app.app, name, path, query)
                            times[(request, name)].append(time.perf_counter() - t0)
                            assert status == 200
        finally:
            for manager in managers.values():
                await manager.__aexit__(None, None, None)
        return times

    return rows_of(asyncio.run(run()))


def rows_of(times: dict[tuple[str, str], list[float]]) -> list[list[str]]:
    rows = []
    for request in REQUESTS:
        base = statistics.median(times[(request, "before")])
        for name in VARIANTS:
            values = sorted(times[(request, name)])
            median = statistics.median(values)
            p90 = values[int(0.9 * (len(values) - 1))]
            rows.append([request, name, f"{median * 1e6:.0f}", f"{p90 * 1e6:.0f}", "–" if name == "before" else f"{(median - base) * 1e6:+.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--in-process", action="store_true", help="call the ASGI app directly instead of over HTTP")
    args = parser.parse_args()
    headers_row = ["request", "middleware", "median µs", "p90 µs", "Δ median µs"]
    if args.in_process:
        rows = in_process(args.checkpoint, args.rounds, args.per_round)
        print(f"in-process ASGI; machine: {machine()}; load: {os.getloadavg()[0]:.2f}; {args.rounds} rounds × {args.per_round} requests per variant")
        print(table(headers_row, rows))
        return
    servers = {name: start(args.checkpoint, variant, env) for name, (variant, env) in VARIANTS.items()}
    headers = {"origin": "https://app.example.com", "x-forwarded-for": "198.51.100.1"}
    clients = {name: httpx.Client(base_url=url, headers=headers if name == "after, all on" else {}) for name, (_, url) in servers.items()}
    times: dict[tuple[str, str], list[float]] = {(r, v): [] for r in REQUESTS for v in VARIANTS}
    try:
        for request, (path, params) in REQUESTS.items():
            for client in clients.values():  # warm-up
                for _ in range(20):
                    assert client.get(path, params=params).status_code == 200
            for _ in range(args.rounds):
                for name, client in clients.items():
                    for _ in range(args.per_round):
                        started = time.perf_counter()
                        response = client.get(path, params=params)
                        times[(request, name)].append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
    finally:
        for client in clients.values():
            client.close()
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print(f"HTTP over loopback; machine: {machine()}; load: {os.getloadavg()[0]:.2f}; {args.rounds} rounds × {args.per_round} requests per variant")
    print(table(headers_row, rows_of(times)))


if __name__ == "__main__":
    main()
