"""Cost of the open-internet middleware (security headers, request ids + access log, HEAD, CORS, rate limits).

    python benchmarks/edge.py [--checkpoint checkpoints/swiss-roll] [--rounds 30] [--per-round 40]

Three real uvicorn processes on loopback, side by side in one run, requests interleaved
round-robin so machine noise hits them alike:

* before: the app with only the middleware it had before (body limit, request metrics);
* after, defaults: everything on that is on by default (headers, request id, access log, HEAD);
* after, all on: plus CORS (with an Origin header sent), both rate limits, trusted proxies and JSON logs.

Sequential keep-alive round trips of ``GET /healthz`` and a small ``GET /sample``
(n=10, ddim, 2 steps); medians and the difference to "before". Logs go to /dev/null.
"""

from __future__ import annotations

import argparse
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

LAUNCH = """
import sys, uvicorn
from app.config import Settings
from app.main import create_app
from app.middleware import BodyLimit, RequestMetrics
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
VARIANTS = {"before": ("before", {}), "after, defaults": ("after", {}), "after, all on": ("after", ALL_ON)}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args()
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
    rows = []
    for request in REQUESTS:
        base = statistics.median(times[(request, "before")])
        for name in VARIANTS:
            values = sorted(times[(request, name)])
            median = statistics.median(values)
            p90 = values[int(0.9 * (len(values) - 1))]
            rows.append([request, name, f"{median * 1e6:.0f}", f"{p90 * 1e6:.0f}", "–" if name == "before" else f"{(median - base) * 1e6:+.0f}"])
    print(f"machine: {machine()}; load: {os.getloadavg()[0]:.2f}; {args.rounds} rounds × {args.per_round} requests per variant")
    print(table(["request", "middleware", "median µs", "p90 µs", "Δ median µs"], rows))


if __name__ == "__main__":
    main()
