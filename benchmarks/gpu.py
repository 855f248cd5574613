"""GPU figures for issue 14 (run on a CUDA machine; ``benchmarks/gpu_all.sh`` runs it with the rest).

    python benchmarks/gpu.py [--checkpoint checkpoints/swiss-roll] [--json out.json]

1. DDPM-50 compute in-process, n = 1k … 1M: the seed article's naive loop, a diffusers
   ``DDPMScheduler`` loop, the engine ticking eagerly, the engine with CUDA-graph ticks,
   and ``model.engine.sample(graphs=True)`` (the whole chain as one graph), all on the same
   weights in the same run. Medians over repeats, each bracketed by ``torch.cuda.synchronize``.
2. 64 requests × n = 100 through the engine (graphed ticks): all in flight together against
   one at a time (batching off), compute only.
3. Optional TF32 matmuls for the largest n (``--tf32``): time, and the largest deviation from fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, table
from benchmarks.reference_loops import diffusers_loop, make_diffusers_scheduler, naive_article_loop
from model.checkpoint import load_checkpoint
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import Engine, EngineRequest, sample
from model.graphs import tick_graphs


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run_engine(engine: Engine, requests: list[EngineRequest]) -> None:
    with torch.inference_mode():
        for request in requests:
            engine.submit(request)
        engine.run()
    assert all(r.error is None for r in requests), [r.error for r in requests]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", type=Path)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--device", default="cuda", help="cpu only to rehearse the script")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    device = torch.device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    denoiser = NetDenoiser(checkpoint.net, device)
    plan = make_plan(checkpoint.schedule, SamplerSpec("ddpm"))
    scheduler = make_diffusers_scheduler(checkpoint.schedule)
    report: dict[str, Any] = {"machine": machine(), "compute_ms": {}, "batching": {}}
    print(f"machine: {report['machine']}\n")

    def gen() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(0)

    rows = []
    for n in args.sizes:
        repeats = args.repeats if n <= 100_000 else max(3, args.repeats // 2)
        ticking = Engine(device, tick_rows=n, tick_graphs=tick_graphs)  # one engine: its graphs are captured once
        ticking.add_model(None, denoiser)
        times = {
            "naive": timed(lambda n=n: naive_article_loop(checkpoint.net, checkpoint.schedule, n, gen()), repeats),  # type: ignore[misc]
            "diffusers": timed(lambda n=n: diffusers_loop(checkpoint.net, scheduler, n, gen()), repeats),  # type: ignore[misc]
            "engine eager": timed(lambda n=n: sample(denoiser, plan, n, 0), repeats),  # type: ignore[misc]
            "engine graphed ticks": timed(lambda n=n, e=ticking: run_engine(e, [EngineRequest(n=n, seed=0, plan=plan)]), repeats),  # type: ignore[misc]
            "engine whole-chain graph": timed(lambda n=n: sample(denoiser, plan, n, 0, graphs=True), repeats),  # type: ignore[misc]
        }
        report["compute_ms"][n] = {k: v * 1e3 for k, v in times.items()}
        best = times["engine whole-chain graph"]
        rows.append([n, *(f"{v * 1e3:.2f}" for v in times.values()), f"{times['naive'] / best:.1f}×", f"{times['diffusers'] / best:.1f}×"])
        print(f"n={n}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()), flush=True)
    print()
    print(table(["n", "naive ms", "diffusers ms", "engine eager ms", "engine graphed ticks ms", "whole-chain graph ms", "vs naive", "vs diffusers"], rows))

    # the engine path equals the whole-chain graph (same noise, same math)
    a = sample(denoiser, plan, 5000, 7).x0
    b = sample(denoiser, plan, 5000, 7, graphs=True).x0
    report["graph_vs_eager_max_abs"] = float((a - b).abs().max())
    print(f"\nwhole-chain graph vs eager engine, n=5000: max |Δ| = {report['graph_vs_eager_max_abs']:.2e}")

    def requests() -> list[EngineRequest]:
        return [EngineRequest(n=100, seed=s, plan=plan) for s in range(64)]

    together = Engine(device, tick_graphs=tick_graphs)
    alone = Engine(device, tick_graphs=tick_graphs, one_at_a_time=True)
    for engine in (together, alone):
        engine.add_model(None, denoiser)
    on = timed(lambda: run_engine(together, requests()), args.repeats)
    off = timed(lambda: run_engine(alone, requests()), max(3, args.repeats // 3))
    report["batching"] = {"on_ms": on * 1e3, "off_ms": off * 1e3, "gain": off / on}
    print("\n64 requests × n=100 through the engine (graphed ticks), compute only:\n")
    print(
        table(
            ["mode", "ms", "points/s", "gain"],
            [["one at a time", f"{off * 1e3:.2f}", f"{6400 / off:,.0f}", "1×"], ["all in flight", f"{on * 1e3:.2f}", f"{6400 / on:,.0f}", f"{off / on:.1f}×"]],
        )
    )
    if args.tf32:
        n = max(args.sizes)
        fp32 = sample(denoiser, plan, n, 0, graphs=True).x0
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32_denoiser = NetDenoiser(checkpoint.net, device)
        t = timed(lambda: sample(tf32_denoiser, plan, n, 0, graphs=True), args.repeats)
        deviation = float((sample(tf32_denoiser, plan, n, 0, graphs=True).x0 - fp32).abs().max())
        torch.backends.cuda.matmul.allow_tf32 = False
        report["tf32"] = {"n": n, "ms": t * 1e3, "max_abs_vs_fp32": deviation}
        print(f"\nTF32 matmuls, n={n}: {t * 1e3:.2f} ms, max |Δ| vs fp32 = {deviation:.2e}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
