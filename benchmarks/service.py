"""HTTP benchmarks against real uvicorn processes on loopback.

    python benchmarks/service.py [--checkpoint checkpoints/swiss-roll]

1. HTTP overhead: GET /sample?n=10000 round trip against the same chain in-process
   (the load generator is a minimal asyncio HTTP client: httpx costs milliseconds per
   request once dozens are in flight, on the same two cores as the server).
2. Cross-request batching: 64 concurrent clients × n=100, batching on vs off, against one
   6,400-point request on the same server.
3. Start-up: process start to /readyz = 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, raw_get, table  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.denoiser import NetDenoiser  # noqa: E402
from model.diffusion import SamplerSpec, make_plan  # noqa: E402
from model.engine import sample  # noqa: E402

SETTLE_S = 0.5  # let OpenMP threads of the previous chain stop spinning before a timed run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, checkpoint: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "SWIRL_CHECKPOINT": checkpoint, "SWIRL_DEVICE": "cpu", "SWIRL_PORT": str(self.port), "SWIRL_LOG_LEVEL": "warning"}
        environment.update(env)
        self.started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.ready_after = self._wait_ready()

    def _wait_ready(self) -> float:
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode() if self.process.stderr else "server died")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def http_overhead(checkpoint_path: str, repeats: int) -> list[list[str]]:
    """Round trip of GET /sample?n=10000 (request, queue, chain, orjson encoding, transfer) against the same chain in-process."""
    checkpoint = load_checkpoint(checkpoint_path, "cpu")
    denoiser = NetDenoiser(checkpoint.net, "cpu")
    plan = make_plan(checkpoint.schedule, SamplerSpec("ddpm"))
    n = 10_000
    server = Server(checkpoint_path)
    try:
        asyncio.run(raw_get("127.0.0.1", server.port, f"/sample?n={n}&seed=0"))
        # Two blocks, not interleaved: after a chain, the server's OpenMP threads spin for a
        # while and would slow an in-process chain started right then (and vice versa).
        compute, round_trip, decode = [], [], []
        for i in range(repeats):
            time.sleep(SETTLE_S)
            started = time.perf_counter()
            sample(denoiser, plan, n, i)
            compute.append(time.perf_counter() - started)
        for i in range(repeats):
            time.sleep(SETTLE_S)
            started = time.perf_counter()
            status, body = asyncio.run(raw_get("127.0.0.1", server.port, f"/sample?n={n}&seed={i}"))
            round_trip.append(time.perf_counter() - started)
            assert status == 200
            started = time.perf_counter()
            json.loads(body)
            decode.append(time.perf_counter() - started)
        c, r, d = statistics.median(compute), statistics.median(round_trip), statistics.median(decode)
    finally:
        server.stop()
    overhead = f"{(r - c) / c * 100:.1f}%"
    return [[f"/sample n={n} ddpm", f"{c * 1e3:.1f}", f"{r * 1e3:.1f}", f"{(r - c) * 1e3:.1f}", overhead, f"{d * 1e3:.1f}", f"{len(body) / 1e6:.2f}"]]


async def crowd(port: int, clients: int, n: int) -> tuple[float, list[float]]:
    async def one(seed: int) -> float:
        started = time.perf_counter()
        status, _ = await raw_get("127.0.0.1", port, f"/sample?n={n}&seed={seed}")
        if status != 200:
            raise RuntimeError(f"/sample answered {status}")
        return time.perf_counter() - started

    started = time.perf_counter()
    latencies = await asyncio.gather(*(one(s) for s in range(clients)))
    return time.perf_counter() - started, list(latencies)


async def single(port: int, n: int) -> float:
    started = time.perf_counter()
    status, _ = await raw_get("127.0.0.1", port, f"/sample?n={n}&seed=0")
    if status != 200:
        raise RuntimeError(f"/sample answered {status}")
    return time.perf_counter() - started


def batching(checkpoint_path: str, repeats: int, clients: int = 64, n: int = 100) -> list[list[str]]:
    rows = []
    for label, env in (("batching on", {}), ("batching off", {"SWIRL_BATCHING": "false"})):
        server = Server(checkpoint_path, **env)
        try:
            walls, lats, singles = [], [], []
            asyncio.run(crowd(server.port, clients, n))  # warm-up
            for _ in range(repeats):
                time.sleep(SETTLE_S)
                wall, latencies = asyncio.run(crowd(server.port, clients, n))
                walls.append(wall)
                lats += latencies
                time.sleep(SETTLE_S)
                singles.append(asyncio.run(single(server.port, clients * n)))
            wall, one = statistics.median(walls), statistics.median(singles)
            lats.sort()
            rows.append(
                [
                    label,
                    f"{wall * 1e3:.0f}",
                    f"{one * 1e3:.0f}",
                    f"{wall / one:.2f}",
                    f"{clients * n / wall:,.0f}",
                    f"{lats[len(lats) // 2] * 1e3:.0f}",
                    f"{lats[int(len(lats) * 0.99) - 1] * 1e3:.0f}",
                ]
            )
        finally:
            server.stop()
    return rows


def startup(checkpoint_path: str, repeats: int) -> list[list[str]]:
    times = []
    for _ in range(repeats):
        server = Server(checkpoint_path)
        times.append(server.ready_after)
        server.stop()
    return [["process start → /readyz 200", f"{statistics.median(times):.2f}", f"{min(times):.2f}", f"{max(times):.2f}"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"machine: {machine()}\n")
    print("HTTP overhead (medians; server-side JSON encoding included, the client's json.loads shown apart):\n")
    print(
        table(
            ["request", "in-process ms", "HTTP round trip ms", "overhead ms", "overhead / compute", "client json.loads ms (not counted)", "body MB"],
            http_overhead(args.checkpoint, args.repeats),
        )
    )
    print("\ncross-request batching: 64 concurrent clients × n=100 vs one n=6400 request on the same server (medians):\n")
    print(table(["server", "64 clients ms", "one 6400-pt request ms", "ratio", "points/s", "p50 ms", "p99 ms"], batching(args.checkpoint, args.repeats)))
    print("\nstart-up (CPU):\n")
    print(table(["what", "median s", "min s", "max s"], startup(args.checkpoint, args.repeats)))


if __name__ == "__main__":
    main()
