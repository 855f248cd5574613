"""The learned score ∇ log p_t(x) ≈ −ε̂(x, t)/σ_t on a lattice: the field that pulls noise back to the roll."""

from __future__ import annotations

import numpy as np
import torch

from model.denoiser import StepDenoiser
from model.errors import InvalidParameter
from model.prediction import estimates
from model.schedule import Schedule

SCORE_BOUND = 3.0
"""The lattice covers [−3, 3]² in the model's space (the roll lies within about ±2)."""


def lattice(grid: int, bound: float = SCORE_BOUND) -> np.ndarray:
    """(grid², 2) float32 points of a grid × grid lattice over [−bound, bound]²; row r, column c
    is point r·grid + c at (x_c, y_r): x runs fastest, y from −bound up."""
    axis = np.linspace(-bound, bound, grid)
    xs, ys = np.meshgrid(axis, axis)
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def score(denoiser: StepDenoiser, schedule: Schedule, prediction: str, points: torch.Tensor, t: int) -> torch.Tensor:
    """(R, 2) −ε̂(x, t)/σ_t at step t ∈ 1…T, ε̂ converted from the network's output (ε or v)."""
    if not 1 <= t <= schedule.timesteps:
        raise InvalidParameter("t", f"t must be in 1..{schedule.timesteps} (T), got {t}")
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    try:
        e = estimates(prediction, alpha, sigma)
    except ValueError as exc:  # an ε-model at α_t = 0 (never shipped: zero terminal SNR models predict v)
        raise InvalidParameter("t", str(exc)) from exc
    with torch.inference_mode():
        out = denoiser(points, t)
        eps = e.eps_x * points + e.eps_out * out
        return eps / -sigma
