"""What the network predicts, and the one place its output is converted into x̂_0 and ε̂.

With x_t = α_t x_0 + σ_t ε (α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), α_t² + σ_t² = 1):

* ``eps`` (Ho et al. 2020): out = ε̂;   x̂_0 = (x_t − σ_t out)/α_t   (undefined where α_t = 0)
* ``v`` (Salimans & Ho 2022): v = α_t ε − σ_t x_0;   x̂_0 = α_t x_t − σ_t out,  ε̂ = σ_t x_t + α_t out
* ``x0``: out = x̂_0;   ε̂ = (x_t − α_t out)/σ_t   (σ_t > 0 for every t ≥ 1)

Each conversion is linear in (x_t, out), so a sampler step, itself linear in x̂_0 and ε̂,
folds it into its coefficients once per plan: the chain loop only ever sees the raw
network output. v-prediction stays finite at zero terminal SNR (α_T = 0: x̂_0 = −out,
ε̂ = x_T), which ε-prediction cannot do.

Classifier-free guidance (Ho & Salimans 2022) mixes a conditioned network's two outputs,
``out = (1 + w)·out(x_t, t, u) − w·out(x_t, t, ∅)`` (``guided_output``). Because x̂_0 and ε̂
are linear in ``out`` with weights that add up over the mix ((1 + w) − w = 1 on the x_t
term), guiding the raw output is guiding ε̂ (and v, and x̂_0): ε̂ = (1 + w)·ε̂_u − w·ε̂_∅.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

Prediction = Literal["eps", "v", "x0"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"Unknown prediction {prediction!r}; valid ones are {', '.join(PREDICTIONS)}")


@dataclass(frozen=True)
class Estimates:
    """x̂_0 = x0_x·x_t + x0_out·out and ε̂ = eps_x·x_t + eps_out·out at one step."""

    x0_x: float
    x0_out: float
    eps_x: float
    eps_out: float


def estimates(prediction: str, alpha: float, sigma: float) -> Estimates:
    """The linear maps from (x_t, network output) to (x̂_0, ε̂) at a step with scales α_t, σ_t."""
    if prediction == "eps":
        if alpha == 0.0:
            raise ValueError("an ε-prediction network cannot estimate x_0 where ᾱ_t = 0 (zero terminal SNR); train it with v-prediction")
        return Estimates(x0_x=1.0 / alpha, x0_out=-sigma / alpha, eps_x=0.0, eps_out=1.0)
    if prediction == "v":
        return Estimates(x0_x=alpha, x0_out=-sigma, eps_x=sigma, eps_out=alpha)
    if prediction == "x0":
        if sigma == 0.0:
            raise ValueError("an x0-prediction network cannot estimate ε at t = 0")
        return Estimates(x0_x=0.0, x0_out=1.0, eps_x=1.0 / sigma, eps_out=-alpha / sigma)
    check_prediction(prediction)
    raise AssertionError("unreachable")  # pragma: no cover


def guided_output(conditional: torch.Tensor, null: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """(1 + w)·conditional − w·null, rows (R, 2) with w a float or (R, 1); a new tensor.

    Two multiplies and a subtraction per element (no fused op), so a row's result does not
    depend on which other rows share the call.
    """
    guided = conditional * (1.0 + weight)
    guided -= null * weight
    return guided


def training_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """What the network is regressed on for x_t = α x_0 + σ ε; ``alpha``/``sigma`` broadcast (B, 1)."""
    if prediction == "eps":
        return eps
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "x0":
        return x0
    check_prediction(prediction)
    raise AssertionError("unreachable")  # pragma: no cover
