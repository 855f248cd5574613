"""Draw docs/guidance.png: guided samples at three arc positions u and three guidance weights w,
next to draws from the true conditional N(c(t(u)), 0.5² I), in the roll's own (data) space.

python scripts/make_guidance_figure.py [--checkpoint checkpoints/swiss-roll-guided] [--out docs/guidance.png]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from model.checkpoint import load_checkpoint
from model.data import conditional_swiss_roll, swiss_roll
from model.evaluate import REFERENCE_SEED
from model.evaluate_guided import CONDITIONAL_SEED, guided_samples

log = logging.getLogger("swirl.figure")

POSITIONS = (0.1, 0.5, 0.9)
WEIGHTS = (0.0, 0.25, 1.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/swiss-roll-guided")
    p.add_argument("--out", type=Path, default=Path("docs/guidance.png"))
    p.add_argument("-n", type=int, default=2000, help="points per panel (default: 2000)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint, "cpu")
    norm = checkpoint.normalisation
    roll = swiss_roll(4000, norm.noise, seed=REFERENCE_SEED)  # drawn faintly behind every panel
    columns = [f"w = {w:g}" for w in WEIGHTS] + ["true conditional"]
    fig, axes = plt.subplots(len(POSITIONS), len(columns), figsize=(3.2 * len(columns), 3.2 * len(POSITIONS)), dpi=110)
    for row, u in enumerate(POSITIONS):
        truth = conditional_swiss_roll(u, args.n, norm.noise, seed=CONDITIONAL_SEED)
        panels = [norm.denormalise(guided_samples(checkpoint, args.n, args.seed, u, w)) for w in WEIGHTS] + [truth]
        for col, points in enumerate(panels):
            ax = axes[row][col]
            ax.scatter(roll[:, 0], roll[:, 1], s=0.6, color="#bbbbbb", alpha=0.35, linewidths=0)
            if col < len(WEIGHTS):
                ax.scatter(truth[:, 0], truth[:, 1], s=1.0, color="#1f5fa8", alpha=0.12, linewidths=0)
            color = "#1f5fa8" if col == len(WEIGHTS) else "#c2491d"
            ax.scatter(points[:, 0], points[:, 1], s=1.2, color=color, alpha=0.5, linewidths=0)
            spread = points.std(axis=0).mean()
            ax.set_title(f"u = {u:g}, {columns[col]}  (std {spread:.2f})", fontsize=9)
            ax.set_xlim(-13, 15)
            ax.set_ylim(-13, 15)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    fig.suptitle(
        f"guided DDPM-50 samples (orange, {args.n:,} per panel) over the true conditional N(c(t(u)), 0.5² I) (blue), model {checkpoint.sha256[:12]}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    log.info("%s", args.out)


if __name__ == "__main__":
    main()
