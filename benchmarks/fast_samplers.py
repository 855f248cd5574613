"""Quality against cost for the fast samplers, with the evaluation command's measures.

    python benchmarks/fast_samplers.py [--checkpoint checkpoints/swiss-roll] [--w2]

Each row: network evaluations, wall time for 10,000 samples, and the two-sample accuracy
averaged over three draws (0.5 = indistinguishable from a fresh roll).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, table
from model.checkpoint import load_checkpoint
from model.diffusion import SamplerSpec
from model.evaluate import EvalConfig, evaluate_samplers, make_reference, sampler_label

SPECS = (
    SamplerSpec("ddpm"),
    SamplerSpec("ddim", steps=25),
    SamplerSpec("ddim", steps=10),
    SamplerSpec("ddim", steps=5),
    SamplerSpec("dpmpp2m", steps=10),
    SamplerSpec("dpmpp2m", steps=5),
    SamplerSpec("dpmpp2m", steps=10, spacing="time"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("-n", type=int, default=10_000)
    args = p.parse_args()
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    config = EvalConfig(n=args.n)
    reference = make_reference(checkpoint, config)
    results = evaluate_samplers(checkpoint, SPECS, reference, config)
    print(f"machine: {machine()}")
    print(f"model: {args.checkpoint} ({checkpoint.sha256[:12]}); accuracy floor (two fresh rolls) {reference.accuracy_floor:.4f}\n")
    rows = []
    for spec in SPECS:
        row = results[sampler_label(spec, checkpoint.schedule.timesteps)]
        label = f"{spec.sampler}-{row['steps']}" + (f" ({spec.spacing} spacing)" if spec.spacing else "")
        rows.append([label, row["network_evaluations"], f"{row['sample_seconds']:.3f}", f"{row['two_sample_accuracy']:.4f}", f"{row['w2_over_floor']:.2f}"])
    headers = ["sampler", "network evaluations", f"seconds (n={args.n})", "two-sample accuracy", f"W2 / floor (n={config.n_w2})"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
