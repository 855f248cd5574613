"""Serving on the GPU (issue 14): batching gain and the mixed closed loop, GPU against CPU.

    python benchmarks/gpu_serving.py [--duration 10] [--json out.json]

Starts real servers (``python -m app``) on loopback: SWIRL_DEVICE=cuda with batching on (the
default) and off.
1. 64 concurrent clients × n = 100: throughput with batching on against batching off.
2. The mixed closed loop (48 clients, n = 100, ddpm / ddim-10 / dpmpp2m-10): points/s and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, raw_get, table
from benchmarks.engine import ROOT, closed_loop, start, stop


async def crowd(port: int, clients: int = 64, n: int = 100) -> float:
    """Seconds for ``clients`` concurrent n-point requests."""
    t0 = time.perf_counter()
    answers = await asyncio.gather(*(raw_get("127.0.0.1", port, f"/sample?n={n}&seed={i}") for i in range(clients)))
    assert all(status == 200 for status, _ in answers), [status for status, _ in answers]
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--json", type=Path)
    p.add_argument("--device", default="cuda", help="cpu only to rehearse the script")
    args = p.parse_args()
    gpu = {"SWIRL_DEVICE": args.device}
    report: dict[str, Any] = {"machine": machine()}
    print(f"machine: {report['machine']}\n", flush=True)
    crowd_times: dict[str, float] = {}
    report["mixed"] = {}
    rows = []
    for label, env in (("batching on", gpu), ("batching off", {**gpu, "SWIRL_BATCHING": "false"})):
        server = start(label, ROOT, env)
        try:
            asyncio.run(crowd(server.port))  # warm-up (graph captures)
            crowd_times[label] = statistics.median(asyncio.run(crowd(server.port)) for _ in range(args.rounds))
            print(f"{label}: 64 × n=100 in {crowd_times[label] * 1e3:.1f} ms", flush=True)
            if label == "batching on":  # the mixed closed loop on the same (default) server
                asyncio.run(closed_loop(server.port, 48, 2.0, 100))
                tput, p50, p99, errors = asyncio.run(closed_loop(server.port, 48, args.duration, 100))
                report["mixed"][f"{args.device} (defaults)"] = {"points_per_s": tput, "p50_ms": p50, "p99_ms": p99, "non_200": errors}
                rows.append([f"{args.device} (defaults)", f"{tput:,.0f}", f"{p50:.1f}", f"{p99:.1f}", errors])
                print(f"mixed: {tput:,.0f} points/s, p99 {p99:.1f} ms", flush=True)
        finally:
            stop(server)
    on, off = crowd_times["batching on"], crowd_times["batching off"]
    report["crowd"] = {"on_ms": on * 1e3, "off_ms": off * 1e3, "gain": off / on}
    print()
    print(
        table(
            ["server", "64 × n=100 ms", "points/s", "gain"],
            [["batching off", f"{off * 1e3:.1f}", f"{6400 / off:,.0f}", "1×"], ["batching on", f"{on * 1e3:.1f}", f"{6400 / on:,.0f}", f"{off / on:.1f}×"]],
        )
    )
    print("\nmixed closed loop, 48 clients, n = 100:\n")
    print(table(["server", "points/s", "p50 ms", "p99 ms", "non-200"], rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
