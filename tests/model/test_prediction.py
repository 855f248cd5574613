"""ε, v and x̂_0 conversions against float64 formulas (model/prediction.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.prediction import PREDICTIONS, estimates, training_target


def draws(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alpha_bar = rng.uniform(0.0, 1.0, n)
    alpha_bar[:3] = [0.0, 1e-12, 1 - 1e-12]  # zero terminal SNR and the extremes
    alpha, sigma = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
    return alpha, sigma, rng.normal(size=(n, 2)), rng.normal(size=(n, 2))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_each_prediction_recovers_x0_and_eps_exactly_from_its_own_target(prediction: str) -> None:
    alpha, sigma, x0, eps = draws()
    for a, s, x0_i, eps_i in zip(alpha, sigma, x0, eps):
        if (prediction == "eps" and a == 0.0) or (prediction == "x0" and s == 0.0):
            continue
        xt = a * x0_i + s * eps_i
        target = training_target(prediction, torch.tensor(x0_i), torch.tensor(eps_i), torch.tensor(a), torch.tensor(s)).numpy()
        e = estimates(prediction, float(a), float(s))
        # float64 reference formulas, written out independently
        expected_target = {"eps": eps_i, "v": a * eps_i - s * x0_i, "x0": x0_i}[prediction]
        np.testing.assert_allclose(target, expected_target, rtol=1e-12, atol=1e-12)
        tol = 1e-9 / max(min(a, s), 1e-3) if prediction != "v" else 1e-12
        np.testing.assert_allclose(e.x0_x * xt + e.x0_out * target, x0_i, rtol=0, atol=tol)
        np.testing.assert_allclose(e.eps_x * xt + e.eps_out * target, eps_i, rtol=0, atol=tol)


def test_v_is_the_rotation_of_x0_and_eps() -> None:
    # with α = cos φ, σ = sin φ: x_t = cos φ x_0 + sin φ ε and v = cos φ ε − sin φ x_0 (Salimans & Ho 2022)
    for phi in np.linspace(0.0, math.pi / 2, 7):
        a, s = math.cos(phi), math.sin(phi)
        e = estimates("v", a, s)
        assert (e.x0_x, e.x0_out, e.eps_x, e.eps_out) == pytest.approx((a, -s, s, a), abs=1e-15)
        # the map (x_t, v) → (x̂_0, ε̂) is orthogonal: it preserves norms
        matrix = np.array([[e.x0_x, e.x0_out], [e.eps_x, e.eps_out]])
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(2), atol=1e-15)


def test_at_zero_terminal_snr_v_stays_finite_and_eps_refuses() -> None:
    e = estimates("v", 0.0, 1.0)
    assert (e.x0_x, e.x0_out, e.eps_x, e.eps_out) == (0.0, -1.0, 1.0, 0.0)  # x̂_0 = −v, ε̂ = x_T
    with pytest.raises(ValueError, match="zero terminal SNR"):
        estimates("eps", 0.0, 1.0)


def test_unknown_prediction_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="eps, v, x0"):
        estimates("score", 0.5, math.sqrt(0.75))
