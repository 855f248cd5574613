"""GPU chain timings (run on a CUDA machine): naive loop vs eager Swirl vs CUDA-graph replay.

    python benchmarks/gpu.py [--checkpoint checkpoints/swiss-roll]

Also compares 64 separate n=100 chains (batching off) with one batched 6,400-point chain,
the GPU case where cross-request batching pays most. Times are medians over repeats,
each bracketed by torch.cuda.synchronize().
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, table
from benchmarks.reference_loops import naive_article_loop
from model.checkpoint import load_checkpoint
from model.diffusion import GeneratorNoise, SamplerSpec, make_plan, net_eps_fn, run_chain
from model.graphs import GraphedChains


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    device = torch.device("cuda")
    checkpoint = load_checkpoint(args.checkpoint, device)
    eps_fn = net_eps_fn(checkpoint.net, checkpoint.schedule.timesteps, device)
    plan = make_plan(checkpoint.schedule, SamplerSpec("ddpm"))
    graphs = GraphedChains(eps_fn, device)
    print(f"machine: {machine()}\n")

    def noise(n: int) -> GeneratorNoise:
        return GeneratorNoise.single(torch.Generator(device=device).manual_seed(0), n)

    rows = []
    for n in args.sizes:
        naive = timed(lambda n=n: naive_article_loop(checkpoint.net, checkpoint.schedule, n, torch.Generator(device=device).manual_seed(0)), args.repeats)  # type: ignore[misc]
        eager = timed(lambda n=n: run_chain(eps_fn, plan, noise(n), n, device=device), args.repeats)  # type: ignore[misc]
        graph = timed(lambda n=n: graphs.run(plan, noise(n), n), args.repeats)  # type: ignore[misc]
        rows.append([n, f"{naive * 1e3:.2f}", f"{eager * 1e3:.2f}", f"{graph * 1e3:.2f}", f"{naive / graph:.1f}×"])
    print(table(["n", "naive loop ms", "Swirl eager ms", "Swirl CUDA graph ms", "naive / graph"], rows))

    def separate() -> None:
        for seed in range(64):
            graphs.run(plan, GeneratorNoise.single(torch.Generator(device=device).manual_seed(seed), 100), 100)

    def batched() -> None:
        gens = [torch.Generator(device=device).manual_seed(seed) for seed in range(64)]
        graphs.run(plan, GeneratorNoise(gens, [100] * 64), 6400)

    off, on = timed(separate, args.repeats), timed(batched, args.repeats)
    print("\n64 requests × n=100, chain compute only:\n")
    print(
        table(
            ["mode", "ms", "points/s", "gain"],
            [["batching off", f"{off * 1e3:.2f}", f"{6400 / off:,.0f}", "1×"], ["batching on", f"{on * 1e3:.2f}", f"{6400 / on:,.0f}", f"{off / on:.1f}×"]],
        )
    )


if __name__ == "__main__":
    main()
