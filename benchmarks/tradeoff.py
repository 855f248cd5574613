"""Width/depth trade-off: quality (two-sample accuracy) against CPU sampling time.

    python benchmarks/tradeoff.py --steps 30000 --configs 64x2 64x3 128x2 128x3 256x3

Trains each network with the default recipe (only width and depth change), evaluates
DDPM-50 and DDIM-10 two-sample accuracy on 10,000 samples against a fresh roll, and
times 10,000 DDPM-50 samples in-process. Checkpoints go to --workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import interleaved_medians, machine, table
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data import swiss_roll
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec, make_plan
from model.engine import sample
from model.evaluate import REFERENCE_SEED, draw_samples, two_sample_accuracy
from model.net import NetConfig
from model.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configs", nargs="+", default=["64x2", "64x3", "128x2", "128x3", "256x3"], help="WIDTHxDEPTH")
    p.add_argument("--steps", type=int, default=TrainConfig().steps)
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/out/tradeoff"))
    p.add_argument("--n", type=int, default=10_000)
    args = p.parse_args()
    print(f"machine: {machine()}\n")
    rows = []
    for spec in args.configs:
        width, depth = (int(v) for v in spec.split("x"))
        config = dataclasses.replace(TrainConfig(), steps=args.steps, batch_size=args.batch_size, net=NetConfig(hidden=width, depth=depth))
        path = args.workdir / spec
        if not (path / "checkpoint.json").exists():
            result = train(config, torch.device("cpu"), progress=False)
            save_checkpoint(path, result.net, config.schedule, result.normalisation, result.summary)
        checkpoint = load_checkpoint(path, "cpu")
        norm = checkpoint.normalisation
        reference = norm.normalise(swiss_roll(args.n, norm.noise, seed=REFERENCE_SEED))
        accuracy = {}
        for sampler in (SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10), SamplerSpec("dpmpp2m", steps=10)):
            samples, _ = draw_samples(checkpoint, sampler, args.n)
            accuracy[sampler.sampler] = two_sample_accuracy(samples, reference)
        plan = make_plan(checkpoint.schedule, SamplerSpec("ddpm"))
        seconds = interleaved_medians({"chain": partial(sample, NetDenoiser(checkpoint.net, "cpu"), plan, args.n, 0)}, 5)["chain"]
        rows.append(
            [
                spec,
                checkpoint.net.parameter_count(),
                f"{checkpoint.meta['training']['wall_time_s']:.0f}",
                f"{checkpoint.meta['training']['final_loss']:.4f}",
                f"{accuracy['ddpm']:.4f}",
                f"{accuracy['ddim']:.4f}",
                f"{accuracy['dpmpp2m']:.4f}",
                f"{seconds:.3f}",
            ]
        )
        print(f"{spec} done at {time.strftime('%H:%M:%S')}: {rows[-1]}", flush=True)
    print()
    print(
        table(
            ["width×depth", "parameters", "train s", "final loss", "DDPM-50 acc", "DDIM-10 acc", "DPM++2M-10 acc", f"DDPM-50 s (n={args.n})"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
