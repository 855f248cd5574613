"""POST /log_prob against a real server, and /sample's latency next to a /log_prob flood.

    python benchmarks/likelihood.py [--checkpoint checkpoints/swiss-roll] [--repeats 5] [--samples 30]

1. POST /log_prob with 10,000 fresh roll points (a 0.4 MB JSON body) on the default settings
   (one server process per core): wall time per request, and the server's CPU seconds per
   request (utime + stime of every server process, from /proc: robust on a shared machine).
2. GET /sample?n=1000&sampler=ddim&steps=10 one after another, alone and while 4 clients keep
   posting 10,000-point /log_prob requests (waiting out a 503's Retry-After), on ONE server
   process (SWIRL_WORKERS=1, so the density work and the sampling share one engine thread: the
   worst case): median and p90, and the flood's answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import free_port, machine, raw_get, table, wait_ready  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.data import swiss_roll  # noqa: E402

SAMPLE_TARGET = "/sample?n=1000&sampler=ddim&steps=10"  # unseeded: a seeded one would come from the response cache


class Server:
    def __init__(self, checkpoint: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="swirl-likelihood-", suffix=".log")[1])
        environment = {**os.environ, "SWIRL_CHECKPOINT": checkpoint, "SWIRL_DEVICE": "cpu", "SWIRL_PORT": str(self.port), "SWIRL_LOG_LEVEL": "warning", **env}
        with open(self.log, "wb") as handle:
            self.process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
        wait_ready(self.process, self.url, 180.0, self.log)

    def pids(self) -> list[int]:
        """The supervisor and its server processes."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [self.process.pid]
        if children.exists():
            found += [int(p) for p in children.read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.unlink(missing_ok=True)


def points_body(n: int, checkpoint: str) -> bytes:
    norm = load_checkpoint(checkpoint).normalisation
    points = norm.normalise(swiss_roll(n, norm.noise, seed=50_005))
    return httpx.Request("POST", "http://x", json={"points": points.tolist()}).content


def time_log_prob(server: Server, body: bytes, repeats: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    with httpx.Client(timeout=120.0) as client:
        client.post(f"{server.url}/log_prob", content=body, headers={"content-type": "application/json"})  # warm-up
        for _ in range(repeats):
            cpu = server.cpu_seconds()
            started = time.perf_counter()
            response = client.post(f"{server.url}/log_prob", content=body, headers={"content-type": "application/json"})
            walls.append(time.perf_counter() - started)
            cpus.append(server.cpu_seconds() - cpu)
            assert response.status_code == 200, response.text
    return walls, cpus


async def sample_latencies(server: Server, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = await raw_get("127.0.0.1", server.port, SAMPLE_TARGET)
        latencies.append(time.perf_counter() - started)
        assert status == 200
    return latencies


async def flood_and_sample(server: Server, body: bytes, count: int, clients: int) -> tuple[list[float], dict[int, int]]:
    """/sample latencies while ``clients`` post /log_prob back to back (each waiting out a 503's
    Retry-After, as a well-behaved client does); the flood's answers by status."""
    stop = asyncio.Event()
    statuses: dict[int, int] = {}

    async def flood(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await client.post(f"{server.url}/log_prob", content=body, headers={"content-type": "application/json"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(timeout=300.0) as client:
        tasks = [asyncio.create_task(flood(client)) for _ in range(clients)]
        await asyncio.sleep(1.0)  # the flood is in flight
        latencies = await sample_latencies(server, count)
        stop.set()
        await asyncio.gather(*tasks)
    return latencies, statuses


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.9 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=30, help="/sample requests alone and next to the flood")
    parser.add_argument("--clients", type=int, default=4, help="clients flooding /log_prob")
    args = parser.parse_args()
    body = points_body(10_000, args.checkpoint)
    print(f"machine: {machine()}\n")

    server = Server(args.checkpoint)
    try:
        walls, cpus = time_log_prob(server, body, args.repeats)
    finally:
        server.stop()
    rows = [["POST /log_prob, 10,000 points (default settings)", f"{statistics.median(walls):.2f}", f"{min(walls):.2f}", f"{statistics.median(cpus):.2f}"]]
    print(table(["request", "wall s (median)", "wall s (best)", "server CPU s (median)"], rows) + "\n")

    server = Server(args.checkpoint, SWIRL_WORKERS="1")
    try:
        alone = asyncio.run(sample_latencies(server, args.samples))
        crowded, statuses = asyncio.run(flood_and_sample(server, body, args.samples, args.clients))
    finally:
        server.stop()
    rows = [
        ["alone", f"{statistics.median(alone) * 1000:.0f}", f"{p90(alone) * 1000:.0f}", "–"],
        [
            f"next to {args.clients} clients flooding /log_prob",
            f"{statistics.median(crowded) * 1000:.0f}",
            f"{p90(crowded) * 1000:.0f}",
            ", ".join(f"{count} × {status}" for status, count in sorted(statuses.items())),
        ],
    ]
    print(table([f"GET {SAMPLE_TARGET}, one server process", "median ms", "p90 ms", "/log_prob answers meanwhile"], rows))


if __name__ == "__main__":
    main()
