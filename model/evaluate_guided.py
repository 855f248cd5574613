"""The guided model's measures (``python -m model.evaluate`` runs them for a conditioned checkpoint).

Each is a mean over the evaluation's seeded draws (``EvalConfig.seeds``), against fresh draws of
the truth that the model never saw (``model.data``: the roll with its arc positions u, and the
true conditional N(c(t(u)), noise² I) at a given u):

* ``whole_roll``: u drawn uniformly per point, guidance w, DDPM-50: the two-sample accuracy of
  the (x, z) samples against the roll, and of the (u, x, z) triples against true triples (does
  each point sit where its u says?); run for each w of ``GUIDANCE_GRID``, and the best (lowest
  triple accuracy, ties to the smaller w) is the model's default guidance;
* ``fixed_u``: every point at one u ∈ ``FIXED_U``, w = 0: the sample mean's distance from
  c(t(u)), the per-axis standard deviation over the true 0.5, and the accuracy against true
  conditional draws (data space);
* ``spread``: at the same u, the mean per-axis standard deviation for w ∈ ``SPREAD_WEIGHTS``
  (guidance as a temperature: it falls as w grows).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from model.checkpoint import Checkpoint
from model.data import conditional_swiss_roll, roll_centre, swiss_roll_with_position
from model.denoiser import NetDenoiser
from model.diffusion import SamplerSpec
from model.engine import sample

log = logging.getLogger("swirl.evaluate")

GUIDANCE_GRID = (0.0, 0.25, 0.5, 1.0)  # candidates for the default guidance
FIXED_U = (0.1, 0.5, 0.9)
SPREAD_WEIGHTS = (0.0, 0.25, 1.0, 3.0)
POSITION_SEED = 30_003  # the per-point u of the samples (the reference's come with its roll)
CONDITIONAL_SEED = 40_004  # true conditional draws
DDPM = SamplerSpec("ddpm")

TwoSample = Any  # (a, b, seed?, folds) → accuracy: model.evaluate.two_sample_accuracy, handed in (no import cycle)


def guided_samples(checkpoint: Checkpoint, n: int, seed: int, u: float | np.ndarray, guidance: float) -> np.ndarray:
    """(n, 2) DDPM-50 samples at u (one or per point) with guidance w, float64, in model space."""
    denoiser = NetDenoiser(checkpoint.net, checkpoint.device)
    return sample(denoiser, checkpoint.plan(DDPM), n, seed, u=u, guidance=guidance).x0.numpy().astype(np.float64)


def whole_roll(checkpoint: Checkpoint, n: int, seeds: tuple[int, ...], folds: int, two_sample: TwoSample, reference_seed: int) -> dict[str, Any]:
    """For each w of GUIDANCE_GRID: accuracy on (x, z) against the roll and on (u, x, z) against true triples."""
    norm = checkpoint.normalisation
    raw, true_u = swiss_roll_with_position(n, norm.noise, seed=reference_seed)
    roll = norm.normalise(raw)
    triples = np.column_stack([true_u, roll])
    rows: dict[str, Any] = {}
    for w in GUIDANCE_GRID:
        points_accuracy, triple_accuracy = [], []
        for seed in seeds:
            u = np.random.default_rng(POSITION_SEED + seed).uniform(0.0, 1.0, n)
            samples = guided_samples(checkpoint, n, seed, u, w)
            points_accuracy.append(two_sample(samples, roll, folds=folds))
            triple_accuracy.append(two_sample(np.column_stack([u, samples]), triples, folds=folds))
        rows[f"{w:g}"] = {
            "guidance": w,
            "two_sample_accuracy": round(float(np.mean(points_accuracy)), 4),
            "two_sample_accuracy_per_seed": [round(a, 4) for a in points_accuracy],
            "triple_accuracy": round(float(np.mean(triple_accuracy)), 4),
            "triple_accuracy_per_seed": [round(a, 4) for a in triple_accuracy],
        }
        log.info("whole roll, u per point, w = %g: %s", w, rows[f"{w:g}"])
    return rows


def best_guidance(rows: dict[str, Any]) -> float:
    """The w whose (u, x, z) accuracy is lowest (closest to 0.5); ties go to the smaller w."""
    return float(min(rows.values(), key=lambda row: (row["triple_accuracy"], row["guidance"]))["guidance"])


def fixed_u(checkpoint: Checkpoint, n: int, seeds: tuple[int, ...], folds: int, two_sample: TwoSample) -> dict[str, Any]:
    """At each u of FIXED_U, w = 0: mean error (data units), std over the true noise, accuracy against the true conditional;
    and the spread for each w of SPREAD_WEIGHTS."""
    norm = checkpoint.normalisation
    rows: dict[str, Any] = {}
    for u in FIXED_U:
        truth = conditional_swiss_roll(u, n, norm.noise, seed=CONDITIONAL_SEED)
        errors, ratios, accuracies, spreads = [], [], [], {f"{w:g}": [] for w in SPREAD_WEIGHTS}  # type: ignore[var-annotated]
        for seed in seeds:
            for w in SPREAD_WEIGHTS:
                data = norm.denormalise(guided_samples(checkpoint, n, seed, u, w))
                spreads[f"{w:g}"].append(float(data.std(axis=0).mean()))
                if w == 0.0:
                    errors.append(float(np.linalg.norm(data.mean(axis=0) - roll_centre(u))))
                    ratios.append((data.std(axis=0) / norm.noise).tolist())
                    accuracies.append(two_sample(data, truth, folds=folds))
        rows[f"{u:g}"] = {
            "u": u,
            "mean_error": round(float(np.mean(errors)), 4),
            "std_ratio": [round(float(v), 4) for v in np.mean(ratios, axis=0)],
            "two_sample_accuracy": round(float(np.mean(accuracies)), 4),
            "two_sample_accuracy_per_seed": [round(a, 4) for a in accuracies],
            "spread": {w: round(float(np.mean(values)), 4) for w, values in spreads.items()},
        }
        log.info("fixed u = %g: %s", u, rows[f"{u:g}"])
    return rows
