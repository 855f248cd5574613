"""The forward process q(x_t | x_0) and the reverse-process samplers.

Every sampler is compiled into a list of ``Step`` coefficients (float64 math, done once
per plan), and the engine (``model/engine.py``) applies them to every row it holds:

    out = network output at (x_t, t)              (ε, v or x̂_0: ``model.prediction``)
    D   = d_x·x_t + d_eps·out                     (data prediction, multistep samplers only)
    x'  = x_coef·x_t + eps_coef·out + prev_coef·D_prev + noise_std·z

The conversion from the raw output to x̂_0 and ε̂ is folded into the coefficients.

* DDPM (Ho et al. 2020, Algorithm 2): x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε) + σ_t z.
* DDIM (Song et al. 2021, eq. 12) with η ∈ [0, 1] on a subsequence T = τ_1 > … > τ_S = 1.
* DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), first order on the first and last step.
* ``student``: a distilled network's own grid, one DDIM (η = 0) step per interval (``model.distill``).

Randomness enters only in the engine, from each request's own ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import torch

from model.errors import InvalidParameter
from model.prediction import check_prediction, estimates
from model.schedule import Schedule, ScheduleTensors

SamplerName = Literal["ddpm", "ddim", "dpmpp2m", "student"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
DDPMVariance = Literal["beta", "beta_tilde"]
DDPM_VARIANCES: tuple[str, ...] = get_args(DDPMVariance)
Spacing = Literal["time", "logsnr", "quadratic"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
DEFAULT_SPACING = {"ddpm": "time", "ddim": "time", "dpmpp2m": "logsnr"}
ZERO_SNR_DEFAULT_SPACING = {"ddpm": "time", "ddim": "time", "dpmpp2m": "quadratic"}  # λ_T = −∞: no even λ grid from T
QUADRATIC_RHO = 2.0  # the "quadratic" spacing: τ_k = T·(k/S)^ρ

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
    spacing: str | None = None  # DDIM/DPM-Solver subsequence: "time", "logsnr" or "quadratic"; None = (ZERO_SNR_)DEFAULT_SPACING

    def __post_init__(self) -> None:
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise InvalidParameter("spacing", f"Unknown spacing {self.spacing!r}; valid ones are {', '.join(SPACINGS)}")
        if self.sampler not in SAMPLERS:
            raise InvalidParameter("sampler", f"Unknown sampler {self.sampler!r}; valid samplers are {', '.join(SAMPLERS)}")
        if self.variance not in DDPM_VARIANCES:
            raise InvalidParameter("variance", f"Unknown DDPM variance {self.variance!r}; valid ones are {', '.join(DDPM_VARIANCES)}")
        if not (0.0 <= self.eta <= 1.0):  # also rejects NaN
            raise InvalidParameter("eta", f"eta must be in [0, 1], got {self.eta}")
        if self.eta != 0.0 and self.sampler != "ddim":
            raise InvalidParameter("eta", f"eta applies to the ddim sampler only, got eta={self.eta} with {self.sampler}")
        if self.steps is not None and self.steps < 1:
            raise InvalidParameter("steps", f"steps must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class Step:
    t: int  # the step the network is evaluated at
    t_next: int  # the step x lands on
    x_coef: float
    eps_coef: float  # multiplies the raw network output (ε, v or x̂_0: the model's prediction type)
    noise_std: float = 0.0  # σ of fresh noise; 0 draws none
    prev_coef: float = 0.0  # multiplies the previous data prediction D_prev
    d_x: float = 0.0  # D = d_x·x_t + d_eps·out, kept for the next step
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


def _distinct_descending(values: Sequence[float], T: int) -> list[int]:
    """Round ``values`` (from T down) to distinct integers T = τ_1 > … > τ_S ≥ 1, leaving room below each."""
    count = len(values)
    taus: list[int] = []
    for i, value in enumerate(values):
        highest = T if i == 0 else taus[-1] - 1
        taus.append(min(max(round(value), count - i), highest))
    taus[0] = T
    return taus


def subsequence(schedule: Schedule, steps: int, spacing: str = "time") -> list[int]:
    """``steps`` distinct integers from T down to 1: T = τ_1 > … > τ_S = 1.

    ``time`` spaces them evenly in t; ``logsnr`` evenly in λ_t = log(α_t/σ_t), the variable
    DPM-Solver integrates in (Lu et al. 2022), which puts more steps near the data;
    ``quadratic`` at τ_k = T·(k/S)^ρ with ρ = 2 (k = S…1), between the two. At zero
    terminal SNR (λ_T = −∞) ``logsnr`` starts at T and spaces the other S − 1 steps evenly
    in λ over the finite range λ_{T−1} … λ_1.
    """
    T = schedule.timesteps
    if not 1 <= steps <= T:
        raise InvalidParameter("steps", f"steps must be in 1..{T}, got {steps}")
    if spacing not in SPACINGS:
        raise InvalidParameter("spacing", f"Unknown spacing {spacing!r}; valid ones are {', '.join(SPACINGS)}")
    if steps == 1:
        return [T]
    if spacing == "time":
        return [int(v) for v in np.round(np.linspace(T, 1, steps))]
    if spacing == "quadratic":
        return _distinct_descending([T * (k / steps) ** QUADRATIC_RHO for k in range(steps, 0, -1)], T)
    lam = np.array([schedule.log_snr(t) for t in range(1, T + 1)])  # λ_t for t = 1…T
    if math.isinf(lam[-1]):
        targets = np.concatenate([[lam[-1]], np.linspace(lam[-2], lam[0], steps - 1)]) if steps > 2 else np.array([lam[-1], lam[0]])
    else:
        targets = np.linspace(lam[-1], lam[0], steps)
    nearest = [T if math.isinf(v) else int(np.argmin(np.abs(lam - v))) + 1 for v in targets]
    return _distinct_descending(nearest, T)


def ddpm_step(schedule: Schedule, t: int, variance: str = "beta", prediction: str = "eps") -> Step:
    """Algorithm 2, line 4: x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε) + σ_t z, with z = 0 at t = 1.

    For v- and x0-prediction the same step is written through the posterior mean,
    μ̃_t = β_t √ᾱ_{t−1}/(1 − ᾱ_t) x̂_0 + (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t) x_t, which stays finite
    at zero terminal SNR (at t = T it is √ᾱ_{T−1} x̂_0).
    """
    i = t - 1
    alpha, beta, alpha_bar = schedule.alphas[i], schedule.betas[i], schedule.alpha_bars[i]
    sigma2 = beta if variance == "beta" else schedule.posterior_variance[i]
    noise_std = float(math.sqrt(sigma2)) if t > 1 else 0.0
    if prediction == "eps":
        x_coef = float(1.0 / math.sqrt(alpha))
        eps_coef = float(-beta / (math.sqrt(1.0 - alpha_bar) * math.sqrt(alpha)))
    else:
        e = estimates(prediction, schedule.alpha(t), schedule.sigma(t))
        c0, ct = float(schedule.posterior_mean_coef_x0[i]), float(schedule.posterior_mean_coef_xt[i])
        x_coef, eps_coef = c0 * e.x0_x + ct, c0 * e.x0_out
    return Step(t=t, t_next=t - 1, x_coef=x_coef, eps_coef=eps_coef, noise_std=noise_std)


def ddim_step(schedule: Schedule, t: int, s: int, eta: float, prediction: str = "eps") -> Step:
    """DDIM from t to s < t (Song et al. eq. 12), written as x_s = a·x_t + b·out + σ·z.

    σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s);  x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z,
    with x̂_0 and ε̂ linear in (x_t, out) (``model.prediction``).
    """
    ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
    sigma = eta * math.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * math.sqrt(1.0 - ab_t / ab_s)
    direction = math.sqrt(max(1.0 - ab_s - sigma**2, 0.0))
    if prediction == "eps":  # x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, the original form
        ratio = math.sqrt(ab_s / ab_t)
        return Step(t=t, t_next=s, x_coef=ratio, eps_coef=direction - ratio * math.sqrt(1.0 - ab_t), noise_std=sigma)
    e = estimates(prediction, schedule.alpha(t), schedule.sigma(t))
    alpha_s = math.sqrt(ab_s)
    return Step(
        t=t,
        t_next=s,
        x_coef=alpha_s * e.x0_x + direction * e.eps_x,
        eps_coef=alpha_s * e.x0_out + direction * e.eps_out,
        noise_std=sigma,
    )


def dpmpp2m_step(schedule: Schedule, t: int, s: int, t_prev: int | None, prediction: str = "eps") -> Step:
    """DPM-Solver++(2M) from t to s < t; ``t_prev`` is the step before t (None on the first step).

    x_s = (σ_s/σ_t) x_t + α_s (1 − e^{−h}) D,  h = λ_s − λ_t,
    D = (1 + 1/2r) D_t − (1/2r) D_prev with r = h_prev/h (first order: D = D_t), D_t = x̂_0.
    The step to s = 0 (σ_0 = 0) is x_0 = D_t, the final denoising. From t = T at zero
    terminal SNR, h = ∞: e^{−h} = 0 and the step is x_s = σ_s x_T + α_s x̂_0 (first order);
    the step after it has r = ∞, which is first order too.
    """
    e = estimates(prediction, schedule.alpha(t), schedule.sigma(t))
    d_x, d_eps = e.x0_x, e.x0_out  # D_t = x̂_0
    if s == 0:
        return Step(t=t, t_next=0, x_coef=d_x, eps_coef=d_eps, d_x=d_x, d_eps=d_eps)
    sigma_t, alpha_s, sigma_s = schedule.sigma(t), schedule.alpha(s), schedule.sigma(s)
    lam_t, lam_s = schedule.log_snr(t), schedule.log_snr(s)
    h = lam_s - lam_t
    c = alpha_s * (1.0 if math.isinf(h) else -math.expm1(-h))  # α_s (1 − e^{−h})
    lam_prev = None if t_prev is None else schedule.log_snr(t_prev)
    if lam_prev is None or math.isinf(lam_prev) or math.isinf(h):
        w_now, w_prev = 1.0, 0.0
    else:
        r = (lam_t - lam_prev) / h
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


def student_grid_message(grids: Mapping[int, Sequence[int]]) -> str:
    return ", ".join(str(k) for k in sorted(grids))


def make_plan(
    schedule: Schedule,
    spec: SamplerSpec,
    *,
    prediction: str = "eps",
    student_grids: Mapping[int, Sequence[int]] | None = None,
) -> SamplingPlan:
    """Compile a sampler spec into per-step coefficients for this schedule.

    ``prediction`` is what the network outputs (``model.prediction``): every step's
    coefficients take it in, so the chain loop applies them to the raw output.
    ``student_grids`` maps a distilled student's step counts to the grids it was trained on
    (T = τ_1 > … > τ_S ≥ 1); the ``student`` sampler takes one DDIM (η = 0) step per interval.
    Invalid requests raise ``InvalidParameter`` naming the field.
    """
    check_prediction(prediction)
    T = schedule.timesteps
    if prediction == "eps" and schedule.zero_terminal_snr:
        raise ValueError("an ε-prediction network cannot sample a zero-terminal-SNR schedule (x̂_0 is undefined at t = T); use v-prediction")
    if spec.sampler == "student":
        if not student_grids:
            raise InvalidParameter("sampler", "the student sampler needs a distilled student model; this model has no trained step grids")
        if spec.steps is None or spec.steps not in student_grids:
            valid = student_grid_message(student_grids)
            raise InvalidParameter("steps", f"the student sampler takes one of its trained step counts: {valid}; got {spec.steps}")
        grid = [int(t) for t in student_grids[spec.steps]]
        return SamplingPlan(spec, tuple(ddim_step(schedule, t, s, 0.0, prediction) for t, s in zip(grid, [*grid[1:], 0])))
    if spec.sampler == "ddpm":
        if spec.steps not in (None, T):
            raise InvalidParameter("steps", f"ddpm always takes T = {T} steps, got steps={spec.steps}; use ddim or dpmpp2m for fewer")
        return SamplingPlan(spec, tuple(ddpm_step(schedule, t, spec.variance, prediction) for t in range(T, 0, -1)))
    defaults = ZERO_SNR_DEFAULT_SPACING if schedule.zero_terminal_snr else DEFAULT_SPACING
    taus = subsequence(schedule, spec.steps or T, spec.spacing or defaults[spec.sampler])
    targets = [*taus[1:], 0]
    if spec.sampler == "ddim":
        return SamplingPlan(spec, tuple(ddim_step(schedule, t, s, spec.eta, prediction) for t, s in zip(taus, targets)))
    previous: list[int | None] = [None, *taus[:-1]]
    steps = tuple(dpmpp2m_step(schedule, t, s, p, prediction) for t, s, p in zip(taus, targets, previous))
    return SamplingPlan(spec, steps)
