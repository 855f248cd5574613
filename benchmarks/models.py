"""Several models in one service: memory and warm-up per model, and fairness between models.

    python benchmarks/models.py                 # both tables
    python benchmarks/models.py --counts 1 2 4 8 --probes 40

1. Memory and warm-up: a server (one process, one torch thread) on a repository of k
   copies of the shipped checkpoint, for each k: process start to ready, resident memory
   once ready, and each model's load and warm-up time as ``GET /models`` reports them.
2. Fairness: one server (one process, one engine) with two models. Model A is flooded by
   ``--flood`` clients, each sending 100,000-point DDPM-50 requests back to back; meanwhile
   10-point DDPM-50 requests go to model B, one at a time. Side by side in the same run: the
   same probe on an idle server, and the same probe to the flooded model A. Target: a probe
   to B answers within 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, raw_get, table  # noqa: E402
from benchmarks.service import Server  # noqa: E402

SHIPPED = ROOT / "checkpoints"
TARGET_S = 0.25


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def version_bytes(directory: Path) -> tuple[int, int, int]:
    """Bytes of tensors one loaded model version holds: network weights, the denoiser's
    precomputed time-bias table, the schedule tables (RSS is too noisy to see them)."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.denoiser import NetDenoiser

    checkpoint = load_checkpoint(directory)
    denoiser = NetDenoiser(checkpoint.net, "cpu")
    weights = sum(p.numel() * p.element_size() for p in checkpoint.net.state_dict().values())
    biases = sum(t.numel() * t.element_size() for t in denoiser.biases)
    tables = checkpoint.schedule.to("cpu")
    schedule = sum(v.numel() * v.element_size() for v in vars(tables).values() if isinstance(v, torch.Tensor))
    return weights, biases, schedule


def repository(root: Path, count: int) -> Path:
    """``count`` models: swiss-roll (the default) and copies named swiss-roll-2 … (each loaded as its own version)."""
    directory = root / f"repo-{count}"
    directory.mkdir()
    shutil.copytree(SHIPPED / "swiss-roll", directory / "swiss-roll")
    for k in range(2, count + 1):
        shutil.copytree(SHIPPED / "swiss-roll", directory / f"swiss-roll-{k}")
    return directory


def memory_and_warm_up(counts: list[int], root: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    base_rss = None
    for count in counts:
        server = Server(str(SHIPPED / "swiss-roll"), SWIRL_MODELS=str(repository(root, count)), SWIRL_WORKERS="1", SWIRL_TORCH_THREADS="1")
        try:
            time.sleep(0.5)
            rss = rss_mib(server.process.pid)
            models = httpx.get(f"{server.url}/models", timeout=30).json()["models"]
        finally:
            server.stop()
        base_rss = rss if base_rss is None else base_rss
        default = next(m for m in models if m["default"])
        others = [m for m in models if not m["default"]]
        rows.append(
            [
                count,
                f"{server.ready_after:.2f}",
                f"{rss:.0f}",
                f"{(rss - base_rss) / max(count - 1, 1):.1f}" if count > 1 else "–",
                f"{statistics.mean(m['load_seconds'] for m in models) * 1000:.0f}",
                f"{default['warm_seconds'] * 1000:.0f}",
                f"{statistics.mean(m['warm_seconds'] for m in others) * 1000:.0f}" if others else "–",
            ]
        )
        print(f"  {count} model(s): ready in {server.ready_after:.2f} s, RSS {rss:.0f} MiB", flush=True)
    return rows


async def probe_latencies(port: int, model: str, probes: int, gap_s: float) -> list[float]:
    latencies = []
    for seed in range(probes):
        started = time.perf_counter()
        status, body = await raw_get("127.0.0.1", port, f"/sample?n=10&seed={seed}&model={model}")
        if status != 200:  # refused (503): the probe did not answer in time, whatever it cost
            print(f"    probe to {model} refused: {status} {body[:160]!r}", flush=True)
        latencies.append(time.perf_counter() - started if status == 200 else float("inf"))
        await asyncio.sleep(gap_s)
    return latencies


async def flooded(port: int, flood: int, probes: int, gap_s: float) -> tuple[list[float], list[float], int, int]:
    stop = asyncio.Event()
    served = refused = 0

    async def flooder(k: int) -> None:
        nonlocal served, refused
        seed = 1000 * k
        while not stop.is_set():
            status, _ = await raw_get("127.0.0.1", port, f"/sample?n=100000&seed={seed}&model=swiss-roll")
            if status != 200:  # 503: the backlog is full; 504: past the timeout on a slow machine. Keep flooding
                refused += 1
                await asyncio.sleep(0.2)
                continue
            served += 1
            seed += 1

    tasks = [asyncio.create_task(flooder(k)) for k in range(flood)]
    await asyncio.sleep(2.0)  # the flood is under way
    other = await probe_latencies(port, "swiss-roll-cosine", probes, gap_s)
    print(f"  flooded, probe to B: {summary('B', other)}", flush=True)
    same = await probe_latencies(port, "swiss-roll", probes, gap_s)
    stop.set()
    await asyncio.gather(*tasks)
    return other, same, served, refused


def summary(name: str, latencies: list[float]) -> list[object]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    within = sum(v <= TARGET_S for v in ordered) / len(ordered)
    refused = sum(v == float("inf") for v in ordered)
    return [name, len(ordered), refused, f"{statistics.median(ordered) * 1000:.0f}", f"{p95 * 1000:.0f}", f"{ordered[-1] * 1000:.0f}", f"{within:.0%}"]


def fairness(flood: int, probes: int) -> list[list[object]]:
    root = Path(tempfile.mkdtemp(prefix="swirl-fair-"))
    try:
        for name in ("swiss-roll", "swiss-roll-cosine"):
            shutil.copytree(SHIPPED / name, root / name)
        server = Server(str(SHIPPED / "swiss-roll"), SWIRL_MODELS=str(root), SWIRL_WORKERS="1", SWIRL_TORCH_THREADS="1")
        try:
            port = server.port
            idle = asyncio.run(probe_latencies(port, "swiss-roll-cosine", probes, 0.05))
            print(f"  idle: {summary('idle', idle)}", flush=True)
            other, same, served, refused = asyncio.run(flooded(port, flood, probes, 0.05))
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"  the flood completed {served} requests of 100,000 points meanwhile ({refused} refused: 503 or 504)", flush=True)
    return [
        summary("idle server, probe to B", idle),
        summary(f"A flooded ({flood} clients × 100k points), probe to B", other),
        summary(f"A flooded ({flood} clients × 100k points), probe to A", same),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--flood", type=int, default=2, help="clients flooding model A")
    parser.add_argument("--probes", type=int, default=40, help="10-point requests per row")
    parser.add_argument("--skip-memory", action="store_true", help="only the fairness table")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with open("/proc/loadavg") as handle:
        print(f"load average before: {handle.read().split()[:3]}")
    root = Path(tempfile.mkdtemp(prefix="swirl-models-"))
    try:
        print("\nMemory and warm-up by number of models (one process, one torch thread)")
        rows = [] if args.skip_memory else memory_and_warm_up(args.counts, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    headers = ["models", "start to ready (s)", "RSS (MiB)", "RSS per extra model (MiB)", "load per model (ms)", "warm-up, default (ms)", "warm-up, others (ms)"]
    print(table(headers, rows))
    weights, biases, schedule = version_bytes(SHIPPED / "swiss-roll")
    kib = [f"{value / 1024:.1f} KiB" for value in (weights, biases, schedule)]
    print(f"tensors per loaded version of swiss-roll: weights {kib[0]}, time-bias table {kib[1]}, schedule tables {kib[2]}")
    print(f"\nFairness: 10-point DDPM-50 probes, one at a time (target ≤ {TARGET_S} s)")
    print(table(["case", "probes", "refused (503)", "p50 (ms)", "p95 (ms)", "max (ms)", f"≤ {TARGET_S} s"], fairness(args.flood, args.probes)))
    with open("/proc/loadavg") as handle:
        print(f"load average after: {handle.read().split()[:3]}")


if __name__ == "__main__":
    main()
