"""The forward process q(x_t | x_0) and the reverse-process samplers.

Every sampler is compiled into a list of ``Step`` coefficients (float64 math, done once
per plan), and the engine (``model/engine.py``) applies them to every row it holds:

    ε   = ε_θ(x_t, t)
    D   = d_x·x_t + d_eps·ε                       (data prediction, multistep samplers only)
    x'  = x_coef·x_t + eps_coef·ε + prev_coef·D_prev + noise_std·z

* DDPM (Ho et al. 2020, Algorithm 2): x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε) + σ_t z.
* DDIM (Song et al. 2021, eq. 12) with η ∈ [0, 1] on a subsequence T = τ_1 > … > τ_S = 1.
* DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), first order on the first and last step.

Randomness enters only in the engine, from each request's own ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch

from model.schedule import Schedule, ScheduleTensors

SamplerName = Literal["ddpm", "ddim", "dpmpp2m"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
DDPMVariance = Literal["beta", "beta_tilde"]
DDPM_VARIANCES: tuple[str, ...] = get_args(DDPMVariance)
Spacing = Literal["time", "logsnr"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
DEFAULT_SPACING = {"ddpm": "time", "ddim": "time", "dpmpp2m": "logsnr"}

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
"""ε-prediction for a batch that shares one step: (n, 2) points, t → (n, 2) (test oracles)."""


# ---------------------------------------------------------------------------------------
# Forward process
# ---------------------------------------------------------------------------------------


def q_sample(tables: ScheduleTensors, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, in closed form; ``t`` is (B,) with t ∈ {0…T}, one per row."""
    return tables.sqrt_alpha_bar[t][:, None] * x0 + tables.sqrt_one_minus_alpha_bar[t][:, None] * noise


# ---------------------------------------------------------------------------------------
# Sampler recipes: float64 coefficients for each step
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    sampler: str = "ddpm"  # one of SAMPLERS
    steps: int | None = None  # network evaluations; None means T (DDPM always takes T)
    eta: float = 0.0  # DDIM only: 0 is deterministic, 1 matches DDPM's σ² = β̃
    variance: str = "beta"  # DDPM only: σ_t² = β_t ("beta") or β̃_t ("beta_tilde")
    spacing: str | None = None  # DDIM/DPM-Solver subsequence: "time" or "logsnr"; None = DEFAULT_SPACING

    def __post_init__(self) -> None:
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise ValueError(f"Unknown spacing {self.spacing!r}; valid ones are {', '.join(SPACINGS)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; valid samplers are {', '.join(SAMPLERS)}")
        if self.variance not in DDPM_VARIANCES:
            raise ValueError(f"Unknown DDPM variance {self.variance!r}; valid ones are {', '.join(DDPM_VARIANCES)}")
        if not (0.0 <= self.eta <= 1.0):  # also rejects NaN
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class Step:
    t: int  # the step ε_θ is evaluated at
    t_next: int  # the step x lands on
    x_coef: float
    eps_coef: float
    noise_std: float = 0.0  # σ of fresh noise; 0 draws none
    prev_coef: float = 0.0  # multiplies the previous data prediction D_prev
    d_x: float = 0.0  # D = d_x·x_t + d_eps·ε, kept for the next step
    d_eps: float = 0.0


@dataclass(frozen=True)
class SamplingPlan:
    spec: SamplerSpec
    steps: tuple[Step, ...] = field(repr=False)

    @property
    def timesteps(self) -> list[int]:
        return [step.t for step in self.steps]

    @property
    def draws_noise(self) -> bool:
        return any(step.noise_std > 0 for step in self.steps)


def subsequence(schedule: Schedule, steps: int, spacing: str = "time") -> list[int]:
    """``steps`` distinct integers from T down to 1: T = τ_1 > … > τ_S = 1.

    ``time`` spaces them evenly in t; ``logsnr`` evenly in λ_t = log(√ᾱ_t/√(1 − ᾱ_t)), the
    variable DPM-Solver integrates in (Lu et al. 2022), which puts more steps near the data.
    """
    T = schedule.timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"Unknown spacing {spacing!r}; valid ones are {', '.join(SPACINGS)}")
    if steps == 1:
        return [T]
    if spacing == "time":
        return [int(v) for v in np.round(np.linspace(T, 1, steps))]
    lam = 0.5 * (np.log(schedule.alpha_bars) - np.log1p(-schedule.alpha_bars))  # λ_t for t = 1…T
    targets = np.linspace(lam[-1], lam[0], steps)
    nearest = [int(np.argmin(np.abs(lam - v))) + 1 for v in targets]
    taus: list[int] = []
    for i, t in enumerate(nearest):  # keep them distinct, leaving room for the steps still to come
        highest = T if i == 0 else taus[-1] - 1
        taus.append(min(max(t, steps - i), highest))
    return taus


def ddpm_step(schedule: Schedule, t: int, variance: str = "beta") -> Step:
    """Algorithm 2, line 4: x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε) + σ_t z, with z = 0 at t = 1."""
    i = t - 1
    alpha, beta, alpha_bar = schedule.alphas[i], schedule.betas[i], schedule.alpha_bars[i]
    sigma2 = beta if variance == "beta" else schedule.posterior_variance[i]
    return Step(
        t=t,
        t_next=t - 1,
        x_coef=float(1.0 / math.sqrt(alpha)),
        eps_coef=float(-beta / (math.sqrt(1.0 - alpha_bar) * math.sqrt(alpha))),
        noise_std=float(math.sqrt(sigma2)) if t > 1 else 0.0,
    )


def ddim_step(schedule: Schedule, t: int, s: int, eta: float) -> Step:
    """DDIM from t to s < t (Song et al. eq. 12), written as x_s = a·x_t + b·ε + σ·z.

    x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t;  σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s);
    x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε + σ z.
    """
    ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
    sigma = eta * math.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * math.sqrt(1.0 - ab_t / ab_s)
    direction = math.sqrt(max(1.0 - ab_s - sigma**2, 0.0))
    ratio = math.sqrt(ab_s / ab_t)
    return Step(
        t=t,
        t_next=s,
        x_coef=ratio,
        eps_coef=direction - ratio * math.sqrt(1.0 - ab_t),
        noise_std=sigma,
    )


def _log_snr(alpha_bar: float) -> float:
    """λ = log(α/σ) with α = √ᾱ, σ = √(1 − ᾱ)."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def dpmpp2m_step(schedule: Schedule, t: int, s: int, t_prev: int | None) -> Step:
    """DPM-Solver++(2M) from t to s < t; ``t_prev`` is the step before t (None on the first step).

    x_s = (σ_s/σ_t) x_t + α_s (1 − e^{−h}) D,  h = λ_s − λ_t,
    D = (1 + 1/2r) D_t − (1/2r) D_prev with r = h_prev/h (first order: D = D_t).
    The step to s = 0 (σ_0 = 0) is x_0 = D_t, the final denoising.
    """
    ab_t = schedule.alpha_bar(t)
    alpha_t, sigma_t = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
    d_x, d_eps = 1.0 / alpha_t, -sigma_t / alpha_t  # D_t = (x_t − σ_t ε)/α_t
    if s == 0:
        return Step(t=t, t_next=0, x_coef=d_x, eps_coef=d_eps, d_x=d_x, d_eps=d_eps)
    ab_s = schedule.alpha_bar(s)
    alpha_s, sigma_s = math.sqrt(ab_s), math.sqrt(1.0 - ab_s)
    h = _log_snr(ab_s) - _log_snr(ab_t)
    c = alpha_s * (-math.expm1(-h))  # α_s (1 − e^{−h})
    if t_prev is None:
        w_now, w_prev = 1.0, 0.0
    else:
        r = (_log_snr(ab_t) - _log_snr(schedule.alpha_bar(t_prev))) / h
        w_now, w_prev = 1.0 + 1.0 / (2.0 * r), -1.0 / (2.0 * r)
    return Step(
        t=t,
        t_next=s,
        x_coef=sigma_s / sigma_t + c * w_now * d_x,
        eps_coef=c * w_now * d_eps,
        prev_coef=c * w_prev,
        d_x=d_x,
        d_eps=d_eps,
    )


def make_plan(schedule: Schedule, spec: SamplerSpec) -> SamplingPlan:
    """Compile a sampler spec into per-step coefficients for this schedule."""
    T = schedule.timesteps
    if spec.sampler == "ddpm":
        if spec.steps not in (None, T):
            raise ValueError(f"ddpm always takes T = {T} steps, got steps={spec.steps}; use ddim or dpmpp2m for fewer")
        return SamplingPlan(spec, tuple(ddpm_step(schedule, t, spec.variance) for t in range(T, 0, -1)))
    taus = subsequence(schedule, spec.steps or T, spec.spacing or DEFAULT_SPACING[spec.sampler])
    targets = [*taus[1:], 0]
    if spec.sampler == "ddim":
        return SamplingPlan(spec, tuple(ddim_step(schedule, t, s, spec.eta) for t, s in zip(taus, targets)))
    previous: list[int | None] = [None, *taus[:-1]]
    steps = tuple(dpmpp2m_step(schedule, t, s, p) for t, s, p in zip(taus, targets, previous))
    return SamplingPlan(spec, steps)
