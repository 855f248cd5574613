"""Quality of service over HTTP, this tree against a previous commit, one server process each.

    python benchmarks/qos.py [--previous 8833e25] [--rounds 2] [--duration 10] [--only bound|priority]

1. bound: small DDPM-50 requests (10 and 1,000 points), each sent as soon as the previous one
   answers, all through a 100,000-point DDPM request's life, its start and its end included:
   every small request's latency (median and max) and the big request's time against its time
   alone (``benchmarks/engine.head_of_line``), with the server's CPU seconds per round.
2. priority: 16 closed-loop clients of 2,000-point low-priority DDPM requests keep the engine
   saturated while one closed-loop client sends 100-point high-priority requests: the high
   requests' p50/p99 and the low requests' share of the rows; then 16 high clients of 1,000
   points saturate it as well, and the low share shows their floor. The previous commit has no
   priority (its requests are sent without one).
3. cache (this tree, its default 64 MiB cache): a seeded 10,000-point DDPM request sampled
   (fresh seeds) against the same request repeated (a cache hit), and a 304 revalidation
   (``If-None-Match``) against ``/healthz``: median latency and server CPU per request.

Both servers run from their own tree with the same virtual environment (``SWIRL_WORKERS=1``),
in turn, round after round, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, process_tree_cpu_seconds, raw_get, table
from benchmarks.engine import HEAD_OF_LINE_HEADERS, ROOT, export_previous, head_of_line, head_of_line_row, start, stop

ONE_PROCESS = {"SWIRL_WORKERS": "1", "SWIRL_RESPONSE_CACHE_BYTES": "0"}  # seeded repeats must be sampled, not served from the cache
SATURATED = [  # (load, high clients, high n); 16 low clients of 2,000 points in both
    ("1 high client × 100 points, 16 low clients × 2,000", 1, 100),
    ("16 high clients × 1,000 points, 16 low clients × 2,000", 16, 1000),
]


async def saturated(port: int, duration: float, high_clients: int, high_n: int, low_clients: int, priorities: bool) -> tuple[list[float], int, int]:
    """(high latencies s, high rows × steps done, low rows × steps done) under closed-loop load."""
    deadline = time.monotonic() + duration
    high: list[float] = []
    done = {"high": 0, "low": 0}

    async def client(kind: str, n: int, index: int) -> None:
        rng = random.Random(index)
        extra = f"&priority={kind}" if priorities else ""
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            status, _ = await raw_get("127.0.0.1", port, f"/sample?n={n}&seed={rng.randrange(1 << 30)}{extra}")
            if status == 200:
                done[kind] += n * 50
                if kind == "high":
                    high.append(time.perf_counter() - t0)
            else:
                await asyncio.sleep(0.05)  # shed: back off a little

    clients = [client("low", 2000, i) for i in range(low_clients)] + [client("high", high_n, 100 + i) for i in range(high_clients)]
    await asyncio.gather(*clients)
    return high, done["high"], done["low"]


async def cache_timings(port: int, pid: int, repeats: int = 40) -> list[tuple[str, float, float]]:
    """(name, median ms, server CPU ms per request) for sampled, cached, 304 and /healthz requests."""
    target = "/sample?n=10000&seed={}"
    _, _ = await raw_get("127.0.0.1", port, target.format(0))  # warm
    etag = await etag_of(port, target.format(0))

    async def timed(name: str, make: Callable[[int], tuple[str, str]], count: int, status: int) -> tuple[str, float, float]:
        cpu, latencies = process_tree_cpu_seconds(pid), []
        for k in range(count):
            path, headers = make(k)
            t0 = time.perf_counter()
            got, _ = await raw_get("127.0.0.1", port, path, headers)
            latencies.append(time.perf_counter() - t0)
            assert got == status, (name, got)
        return name, statistics.median(latencies) * 1e3, (process_tree_cpu_seconds(pid) - cpu) / count * 1e3

    return [
        await timed("sampled (fresh seeds), n = 10,000", lambda k: (target.format(1000 + k), ""), 10, 200),
        await timed("cache hit, n = 10,000", lambda k: (target.format(0), ""), repeats, 200),
        await timed("If-None-Match → 304", lambda k: (target.format(0), f"If-None-Match: {etag}\r\n"), repeats * 5, 304),
        await timed("/healthz", lambda k: ("/healthz", ""), repeats * 5, 200),
    ]


async def etag_of(port: int, target: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    writer.close()
    return next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("etag:"))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--previous", default="8833e25", help="the commit to compare with (default: the one before #28)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per saturated run")
    p.add_argument("--only", choices=["bound", "priority", "cache"], action="append")
    args = p.parse_args()
    scenarios = set(args.only or ["bound", "priority", "cache"])
    previous = export_previous(args.previous)
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}\n")
    configs = [(f"previous ({args.previous})", previous, False), ("this tree", ROOT, True)]
    bound: dict[tuple[str, int], list[tuple[list[float], float, float]]] = {}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    prio: dict[tuple[str, str], list[tuple[list[float], int, int]]] = {}
    for _ in range(args.rounds):
        for label, cwd, has_priorities in configs:
            server = start(label, cwd, ONE_PROCESS)
            try:
                if "bound" in scenarios:
                    cpu_before = process_tree_cpu_seconds(server.process.pid)
                    for small_n in (10, 1000):
                        bound.setdefault((label, small_n), []).append(asyncio.run(head_of_line(server.port, small_n)))
                    cpu[label].append(process_tree_cpu_seconds(server.process.pid) - cpu_before)
                if "priority" in scenarios:
                    for name, clients, n in SATURATED:
                        result = asyncio.run(saturated(server.port, args.duration, clients, n, 16, has_priorities))
                        prio.setdefault((label, name), []).append(result)
            finally:
                stop(server)
    if "bound" in scenarios:
        rows = []
        for (label, small_n), runs in bound.items():
            row = head_of_line_row(label, runs)
            rows.append([row[0], f"{small_n:,}", *row[1:]])
        print(f"small DDPM-50 requests, each sent as the previous one answers, while a 100,000-point DDPM request runs ({args.rounds} rounds):\n")
        print(table([HEAD_OF_LINE_HEADERS[0], "small n", *HEAD_OF_LINE_HEADERS[1:]], rows))
        spent = "; ".join(f"{k}: {statistics.median(v):.1f}" for k, v in cpu.items())
        print(f"\nserver CPU seconds per round (both small sizes, the big request alone and with them): {spent}")
    if "priority" in scenarios:
        rows = []
        for (label, name), results in prio.items():
            latencies = [s for r in results for s in r[0]]
            high_work, low_work = sum(r[1] for r in results), sum(r[2] for r in results)
            share = low_work / max(high_work + low_work, 1)
            rows.append([label, name, str(len(latencies)), f"{quantile(latencies, 0.5) * 1e3:.0f}", f"{quantile(latencies, 0.99) * 1e3:.0f}", f"{share:.0%}"])
        print(f"\nsaturated by low requests, {args.duration:g} s × {args.rounds} rounds (the previous commit: no priorities):\n")
        print(table(["server", "load", "high requests", "high p50 ms", "high p99 ms", "low share of rows"], rows))
    if "cache" in scenarios:
        server = start("this tree, cache", ROOT, {"SWIRL_WORKERS": "1"})
        try:
            rows = [[name, f"{ms:.2f}", f"{cpu_ms:.2f}"] for name, ms, cpu_ms in asyncio.run(cache_timings(server.port, server.process.pid))]
        finally:
            stop(server)
        print("\nthe response cache (this tree, one process; medians, server CPU per request):\n")
        print(table(["request", "latency ms", "server CPU ms"], rows))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
