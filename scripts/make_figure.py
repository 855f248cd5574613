"""Draw docs/samples.png: generated samples next to the true swiss roll (for the README).

python scripts/make_figure.py [--checkpoint checkpoints/swiss-roll] [--out docs/samples.png]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll")
    p.add_argument("--out", type=Path, default=Path("docs/samples.png"))
    p.add_argument("-n", type=int, default=5000)
    args = p.parse_args()
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    norm = checkpoint.normalisation
    real = norm.normalise(swiss_roll(args.n, norm.noise, seed=REFERENCE_SEED))
    panels = [("true swiss roll (fresh draw)", real)]
    for spec, title in ((SamplerSpec("ddpm"), "DDPM, 50 steps"), (SamplerSpec("dpmpp2m", steps=10), "DPM-Solver++(2M), 10 steps")):
        samples, _ = draw_samples(checkpoint, spec, args.n, seed=7)
        panels.append((f"Swirl samples: {title}", samples))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), dpi=110)
    for ax, (title, points) in zip(axes, panels):
        ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.5, color="#1f5fa8" if ax is axes[0] else "#c2491d", linewidths=0)
        ax.set_title(title, fontsize=11)
        ax.set_xlim(-2.6, 2.6)
        ax.set_ylim(-2.6, 2.6)
        ax.set_aspect("equal")
        ax.grid(alpha=0.2)
    fig.suptitle(f"{args.n:,} points each, model {checkpoint.sha256[:12]} ({checkpoint.net.parameter_count():,} parameters)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
