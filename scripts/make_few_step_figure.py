"""Draw docs/few-step.png: samples at 1, 2, 4 and 50 network evaluations (distilled students
and their zero-terminal-SNR v-model teacher), next to the seed model's 4-step DPM-Solver++ and the true roll.

python scripts/make_few_step_figure.py [--out docs/few-step.png] [-n 5000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.checkpoint import load_checkpoint
from model.data import swiss_roll
from model.diffusion import SamplerSpec
from model.evaluate import REFERENCE_SEED, draw_samples

PANELS = (  # (checkpoint, spec, title)
    ("checkpoints/swiss-roll", SamplerSpec("dpmpp2m", steps=4), "seed model, DPM-Solver++, 4 evaluations"),
    ("checkpoints/swiss-roll-v-student-1", SamplerSpec("student", steps=1), "student, 1 evaluation"),
    ("checkpoints/swiss-roll-v-student-2", SamplerSpec("student", steps=2), "student, 2 evaluations"),
    ("checkpoints/swiss-roll-v-student-4", SamplerSpec("student", steps=4), "student, 4 evaluations"),
    ("checkpoints/swiss-roll-v", SamplerSpec("dpmpp2m"), "v-model teacher, DPM-Solver++, 50"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("docs/few-step.png"))
    p.add_argument("-n", type=int, default=5000)
    args = p.parse_args()
    first = load_checkpoint(PANELS[1][0], "cpu")
    norm = first.normalisation
    panels = [("true swiss roll (fresh draw)", norm.normalise(swiss_roll(args.n, norm.noise, seed=REFERENCE_SEED)))]
    for path, spec, title in PANELS:
        samples, _ = draw_samples(load_checkpoint(path, "cpu"), spec, args.n, seed=7)
        panels.append((title, samples))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9), dpi=110)
    for i, (ax, (title, points)) in enumerate(zip(axes, panels)):
        ax.scatter(points[:, 0], points[:, 1], s=1.2, alpha=0.5, color="#1f5fa8" if i == 0 else "#c2491d", linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-2.6, 2.6)
        ax.set_ylim(-2.6, 2.6)
        ax.set_aspect("equal")
        ax.grid(alpha=0.2)
    fig.suptitle(f"{args.n:,} points each: few-step sampling (docs/quality.md)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
