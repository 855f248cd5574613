"""The true density of the roll (model/data.py) against many draws, and the score's lattice (model/score.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.data import Normalisation, model_log_density, roll_log_density, roll_quadrature, swiss_roll
from model.denoiser import FunctionDenoiser
from model.errors import InvalidParameter
from model.schedule import Schedule, ScheduleConfig
from model.score import lattice, score


def test_quadrature_weights_integrate_the_uniform_t() -> None:
    nodes, weights = roll_quadrature()
    assert weights.sum() == pytest.approx(1.0, abs=1e-13)
    assert nodes.min() > 1.5 * math.pi and nodes.max() < 4.5 * math.pi
    # E[t] and E[t²] of U(1.5π, 4.5π), exactly
    assert (weights * nodes).sum() == pytest.approx(3 * math.pi, rel=1e-13)
    assert (weights * nodes**2).sum() == pytest.approx((4.5**3 - 1.5**3) * math.pi**2 / (3 * 3), rel=1e-13)


def test_the_oracle_has_converged_where_the_density_matters() -> None:
    rng = np.random.default_rng(0)
    points = np.concatenate([swiss_roll(500, seed=1), rng.uniform(-15, 17, size=(500, 2))])
    coarse, fine = roll_log_density(points), roll_log_density(points, panels=600)
    near = coarse > -20
    assert near.sum() > 600
    np.testing.assert_allclose(coarse[near], fine[near], rtol=0, atol=1e-9)


def test_the_oracle_matches_a_histogram_of_a_million_draws() -> None:
    draws = swiss_roll(1_000_000, seed=11)
    edges = np.arange(-12.0, 16.0 + 1e-9, 1.0)
    counts, _, _ = np.histogram2d(draws[:, 0], draws[:, 1], bins=[edges, edges])
    # P(cell) by a 6 × 6 midpoint rule inside each 1 × 1 cell (the density's width is the noise, 0.5)
    sub = (np.arange(6) + 0.5) / 6
    centres = edges[:-1, None] + sub[None, :]  # (cells, 6)
    xs, ys = np.meshgrid(centres.ravel(), centres.ravel(), indexing="ij")
    density = np.exp(roll_log_density(np.stack([xs.ravel(), ys.ravel()], axis=1))).reshape(len(edges) - 1, 6, len(edges) - 1, 6)
    expected = density.mean(axis=(1, 3)) * len(draws)
    assert expected.sum() == pytest.approx(len(draws), rel=2e-3)  # almost no mass outside [−12, 16]²
    busy = expected > 200
    z = (counts[busy] - expected[busy]) / np.sqrt(expected[busy])
    assert np.abs(z).max() < 5.0
    assert np.mean(z**2) < 1.5  # Poisson: about 1
    # a roll with 10% more noise is told apart by the same cells
    wider = np.exp(roll_log_density(np.stack([xs.ravel(), ys.ravel()], axis=1), noise=0.55)).reshape(density.shape).mean(axis=(1, 3)) * len(draws)
    assert np.mean(((counts[busy] - wider[busy]) / np.sqrt(wider[busy])) ** 2) > 5


def test_model_space_density_carries_the_area_factor() -> None:
    norm = Normalisation(noise=0.5, mean=(2.0, 0.2), scale=6.8)
    raw = swiss_roll(50, seed=2)
    np.testing.assert_allclose(model_log_density(norm.normalise(raw), norm), roll_log_density(raw) + 2 * math.log(6.8), rtol=0, atol=1e-12)


def test_lattice_runs_x_fastest_over_the_bounds() -> None:
    points = lattice(3)
    np.testing.assert_array_equal(points[:3], [[-3, -3], [0, -3], [3, -3]])
    np.testing.assert_array_equal(points[-1], [3, 3])
    assert points.dtype == np.float32 and points.shape == (9, 2)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_score_is_minus_eps_over_sigma_and_matches_a_gaussians_exact_score(prediction: str) -> None:
    schedule = Schedule.from_config(ScheduleConfig(zero_terminal_snr=prediction == "v"))
    mu, s = np.array([0.3, -0.2]), 0.5

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        spread = alpha**2 * s**2 + sigma**2
        eps = sigma * (x - alpha * torch.tensor(mu)) / spread
        x0 = torch.tensor(mu) + alpha * s**2 * (x - alpha * torch.tensor(mu)) / spread
        return eps if prediction == "eps" else alpha * eps - sigma * x0

    points = torch.tensor(lattice(5), dtype=torch.float64)
    for t in (1, 20, 50):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        exact = -(points.numpy() - alpha * mu) / (alpha**2 * s**2 + sigma**2)  # ∇ log N(x; α μ, (α² s² + σ²) I)
        np.testing.assert_allclose(score(FunctionDenoiser(fn), schedule, prediction, points, t).numpy(), exact, rtol=1e-9, atol=1e-9)
    for bad in (0, 51):
        with pytest.raises(InvalidParameter, match=r"t must be in 1\.\.50"):
            score(FunctionDenoiser(fn), schedule, prediction, points, bad)
