"""How good is the model as a density? Its log p (model/likelihood.py) against the true roll's.

Every measure is in the model's normalised space, on fresh seeded points:

* held-out NLL (nats per point) of ``n`` fresh roll points: the model's, the true density's
  (its floor: ``model.data.model_log_density``) and a Gaussian KDE's, fitted on ``n`` points of
  the training distribution with the bandwidth that scores best on the held-out points themselves
  (an optimistic KDE: beating it means something);
* Spearman rank correlation of the model's log p with the true log p, on the roll points and on
  ``n`` points uniform over the box [−2.5, 2.5]²;
* AUROC of log p at telling the roll points from the box points, the model's and the true density's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from model.checkpoint import Checkpoint
from model.data import model_log_density, swiss_roll
from model.denoiser import DifferentiableNetDenoiser
from model.likelihood import log_prob

log = logging.getLogger("swirl.density_quality")

HELD_OUT_SEED = 30_003  # the fresh roll the NLL is measured on (never a training or evaluation seed)
BOX_SEED = 30_004  # the uniform points over the box
KDE_SEED = 0  # the KDE's points: drawn as the training set is, with the training seed
BOX = 2.5
KDE_BANDWIDTHS = tuple(float(h) for h in np.geomspace(0.02, 0.2, 13))  # searched; the roll's noise is 0.073 in model space


@dataclass(frozen=True)
class DensityConfig:
    n: int = 10_000  # held-out roll points, box points and KDE points each


def kde_log_density(train: np.ndarray, points: np.ndarray, bandwidths: tuple[float, ...], chunk: int = 256) -> np.ndarray:
    """(len(bandwidths), m) log density of an isotropic Gaussian KDE on ``train`` at ``points``, float64."""
    out = np.empty((len(bandwidths), len(points)))
    train_sq = (train**2).sum(axis=1)
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        squared = (block**2).sum(axis=1)[:, None] + train_sq[None, :] - 2.0 * block @ train.T  # (b, n)
        np.maximum(squared, 0.0, out=squared)
        for i, h in enumerate(bandwidths):
            terms = -squared / (2 * h * h)
            top = terms.max(axis=1, keepdims=True)
            out[i, start : start + chunk] = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1)) - math.log(len(train) * 2 * math.pi * h * h)
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(labels, np.concatenate([positive, negative])))


def evaluate_density(checkpoint: Checkpoint, config: DensityConfig | None = None) -> dict[str, Any]:
    """The measures of the module docstring, rounded, with the settings and the time the flow took."""
    config = config or DensityConfig()
    norm = checkpoint.normalisation
    held_out = norm.normalise(swiss_roll(config.n, norm.noise, seed=HELD_OUT_SEED))
    box = np.random.default_rng(BOX_SEED).uniform(-BOX, BOX, size=(config.n, 2))
    denoiser = DifferentiableNetDenoiser(checkpoint.net, checkpoint.device)
    started = time.perf_counter()
    model_roll = log_prob(denoiser, checkpoint.schedule, checkpoint.prediction, held_out)
    flow_seconds = time.perf_counter() - started
    model_box = log_prob(denoiser, checkpoint.schedule, checkpoint.prediction, box)
    true_roll, true_box = model_log_density(held_out, norm), model_log_density(box, norm)
    kde_train = norm.normalise(swiss_roll(config.n, norm.noise, seed=KDE_SEED))
    kde_nll = -kde_log_density(kde_train, held_out, KDE_BANDWIDTHS).mean(axis=1)
    best = int(np.argmin(kde_nll))
    result = {
        "n": config.n,
        "held_out_seed": HELD_OUT_SEED,
        "box": [-BOX, BOX],
        "box_seed": BOX_SEED,
        "evaluations": 2 * checkpoint.schedule.timesteps - 1,
        "nll": round(float(-model_roll.mean()), 4),
        "nll_true": round(float(-true_roll.mean()), 4),
        "nll_kde": round(float(kde_nll[best]), 4),
        "kde_bandwidth": round(KDE_BANDWIDTHS[best], 4),
        "rank_correlation_roll": round(float(spearmanr(model_roll, true_roll)[0]), 4),
        "rank_correlation_box": round(float(spearmanr(model_box, true_box)[0]), 4),
        "auroc": round(auroc(model_roll, model_box), 4),
        "auroc_true": round(auroc(true_roll, true_box), 4),
        "flow_seconds": round(flow_seconds, 2),
    }
    log.info("density: %s", result)
    return result
