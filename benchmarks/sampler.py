"""Sampler compute in-process: Swirl's chain against the article-style loop and diffusers, same weights.

    python benchmarks/sampler.py [--checkpoint checkpoints/swiss-roll] [--sizes 1000 10000 100000]

Times are medians of interleaved runs (machines here are noisy); peak memory is the
growth of the process's peak RSS during one chain, each variant in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import interleaved_medians, machine, table
from benchmarks.reference_loops import diffusers_loop, make_diffusers_scheduler, naive_article_loop
from model.checkpoint import Checkpoint, load_checkpoint
from model.denoiser import FunctionDenoiser, NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample

VARIANTS = ("swirl", "naive", "diffusers")
ABLATION = "swirl, no τ table"  # before the optimisation: the full forward (time embedding per row) every step


def runner(checkpoint: Checkpoint, variant: str, n: int):  # type: ignore[no-untyped-def]
    net, schedule = checkpoint.net, checkpoint.schedule
    if variant == "swirl":
        denoiser = NetDenoiser(net, "cpu")
        plan = make_plan(schedule, SamplerSpec("ddpm"))
        return lambda: sample(denoiser, plan, n, 0).x0
    if variant == ABLATION:
        plan = make_plan(schedule, SamplerSpec("ddpm"))

        def per_row_forward(x: torch.Tensor, t: int) -> torch.Tensor:
            return net(x, torch.full((x.shape[0],), t, dtype=torch.long))

        return lambda: sample(FunctionDenoiser(per_row_forward), plan, n, 0).x0
    if variant == "naive":
        return lambda: naive_article_loop(net, schedule, n, torch.Generator().manual_seed(0))
    scheduler = make_diffusers_scheduler(schedule)
    return lambda: diffusers_loop(net, scheduler, n, torch.Generator().manual_seed(0))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(checkpoint_path: str, variant: str, n: int) -> None:
    """Peak resident memory above the starting point during one chain (Linux: VmHWM reset via clear_refs)."""
    checkpoint = load_checkpoint(checkpoint_path, "cpu")
    run = runner(checkpoint, variant, n)
    runner(checkpoint, variant, 1000)()  # warm the allocator and libraries at a small size
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets the peak (VmHWM) to the current resident size
    before = _status_kib("VmRSS")
    run()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_mib": (peak - before) / 1024}))


def peak_memory(checkpoint_path: str, variant: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--checkpoint", checkpoint_path, "--memory-child", variant, "--sizes", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-n", type=int, default=100_000)
    p.add_argument("--memory-child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        peak_memory_child(args.checkpoint, args.memory_child, args.sizes[0])
        return
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    print(f"machine: {machine()}")
    print(f"model: {args.checkpoint} ({checkpoint.net.parameter_count()} parameters, {checkpoint.net_config}), DDPM T={checkpoint.schedule.timesteps}\n")
    rows = []
    for n in args.sizes:
        repeats = args.repeats if n <= 10_000 else max(2, args.repeats // 2)
        medians = interleaved_medians({v: runner(checkpoint, v, n) for v in (*VARIANTS, ABLATION)}, repeats)
        rows.append(
            [
                n,
                f"{medians['swirl'] * 1e3:.1f}",
                f"{medians[ABLATION] * 1e3:.1f}",
                f"{medians['naive'] * 1e3:.1f}",
                f"{medians['diffusers'] * 1e3:.1f}",
                f"{medians['naive'] / medians['swirl']:.2f}×",
                f"{medians['diffusers'] / medians['swirl']:.2f}×",
            ]
        )
    print(table(["n", "swirl ms", "swirl without τ table ms", "naive loop ms", "diffusers ms", "naive / swirl", "diffusers / swirl"], rows))
    memory = {v: peak_memory(args.checkpoint, v, args.memory_n) for v in VARIANTS}
    print(f"\npeak memory growth during one chain at n = {args.memory_n} (fresh process each):\n")
    print(
        table(
            ["variant", "peak MiB", "relative to naive"],
            [[v, f"{memory[v]:.1f}", f"{memory[v] / memory['naive']:.3f}"] for v in VARIANTS],
        )
    )


if __name__ == "__main__":
    main()
