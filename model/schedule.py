"""The noise schedule: one immutable object shared by training, sampling and serving.

Convention used everywhere in Swirl: t ∈ {0, …, T}; t = 0 is clean data (ᾱ_0 = 1).
Arrays of length T hold steps t = 1…T (entry i is step t = i + 1). All values are
computed in float64; ``ScheduleTensors`` carries float32 copies onto a device.

Notation of the samplers (Kingma et al. 2021; Lu et al. 2022): x_t = α_t x_0 + σ_t ε with
α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) and the log signal-to-noise ratio λ_t = log(α_t/σ_t).
With ``zero_terminal_snr`` (Lin et al. 2024, Algorithm 1) √ᾱ is shifted and scaled so that
√ᾱ_T = 0 exactly while √ᾱ_1 is kept: x_T is then pure noise, N(0, I), as every sampler
assumes when it starts, and λ_T = −∞ (samplers must not divide by α_T).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch

ScheduleKind = Literal["linear", "cosine"]
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)


@dataclass(frozen=True)
class ScheduleConfig:
    kind: ScheduleKind = "linear"  # "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    timesteps: int = 50  # T, the number of diffusion steps
    beta_start: float = 1e-4  # β_1 for the linear schedule
    beta_end: float = 0.02  # β_T for the linear schedule
    cosine_s: float = 0.008  # offset s of the cosine schedule
    max_beta: float = 0.999  # cap on β_t for the cosine schedule
    zero_terminal_snr: bool = False  # rescale √ᾱ so that √ᾱ_T = 0 (Lin et al. 2024), keeping √ᾱ_1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"Unknown schedule kind {self.kind!r}; valid kinds are {', '.join(SCHEDULE_KINDS)}")
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be at least 1, got {self.timesteps}")
        if self.kind == "linear" and not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleConfig:
        return cls(**data)  # checkpoints written before zero_terminal_snr existed get False


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def linear_betas(timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """Exactly T values, β_1 = beta_start and β_T = beta_end (not the seed's float ``arange``)."""
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float, max_beta: float) -> np.ndarray:
    """β_t = 1 − ᾱ_t/ᾱ_{t−1} with ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


def rescale_zero_terminal_snr(alpha_bars: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1: shift √ᾱ_t so that √ᾱ_T = 0 and scale it so that √ᾱ_1 is kept.

    √ᾱ'_t = (√ᾱ_t − √ᾱ_T) · √ᾱ_1 / (√ᾱ_1 − √ᾱ_T), linear in the original √ᾱ_t and still
    decreasing. Returns ᾱ'_t; then β'_t = 1 − ᾱ'_t/ᾱ'_{t−1}, so β'_T = 1 (α_T = 0).
    """
    sqrt_ab = np.sqrt(alpha_bars)
    first, last = sqrt_ab[0], sqrt_ab[-1]
    rescaled = (sqrt_ab - last) * (first / (first - last))
    rescaled[0], rescaled[-1] = first, 0.0  # exactly, whatever the rounding
    return rescaled**2


@dataclass(frozen=True, eq=False)
class Schedule:
    """β, α, ᾱ and the posterior q(x_{t−1} | x_t, x_0), in float64, indexed by step t = 1…T.

    Build it with ``Schedule.from_config``; every array is read-only.
    """

    config: ScheduleConfig
    betas: np.ndarray = field(repr=False)  # (T,) β_t
    alphas: np.ndarray = field(repr=False)  # (T,) α_t = 1 − β_t
    alpha_bars: np.ndarray = field(repr=False)  # (T,) ᾱ_t = ∏_{s≤t} α_s
    alpha_bars_prev: np.ndarray = field(repr=False)  # (T,) ᾱ_{t−1}, with ᾱ_0 = 1
    posterior_variance: np.ndarray = field(repr=False)  # (T,) β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
    posterior_mean_coef_x0: np.ndarray = field(repr=False)  # (T,) β_t √ᾱ_{t−1} / (1 − ᾱ_t)
    posterior_mean_coef_xt: np.ndarray = field(repr=False)  # (T,) (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> Schedule:
        if config.kind == "linear":
            betas = linear_betas(config.timesteps, config.beta_start, config.beta_end)
        elif config.kind == "cosine":
            betas = cosine_betas(config.timesteps, config.cosine_s, config.max_beta)
        else:  # pragma: no cover - ScheduleConfig validates the kind
            raise ValueError(f"Unknown schedule kind {config.kind!r}; valid kinds are {', '.join(SCHEDULE_KINDS)}")
        alphas = 1.0 - betas
        alpha_bars = np.cumprod(alphas)
        if config.zero_terminal_snr:
            alpha_bars = rescale_zero_terminal_snr(alpha_bars)
            alphas = np.concatenate([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])
            betas = 1.0 - alphas
        alpha_bars_prev = np.concatenate([[1.0], alpha_bars[:-1]])
        one_minus = 1.0 - alpha_bars
        return cls(
            config=config,
            betas=_readonly(betas),
            alphas=_readonly(alphas),
            alpha_bars=_readonly(alpha_bars),
            alpha_bars_prev=_readonly(alpha_bars_prev),
            posterior_variance=_readonly(betas * (1.0 - alpha_bars_prev) / one_minus),
            posterior_mean_coef_x0=_readonly(betas * np.sqrt(alpha_bars_prev) / one_minus),
            posterior_mean_coef_xt=_readonly((1.0 - alpha_bars_prev) * np.sqrt(alphas) / one_minus),
        )

    @property
    def timesteps(self) -> int:
        """T."""
        return self.config.timesteps

    @property
    def alpha_bar_final(self) -> float:
        """ᾱ_T: how much of x_0 is left at the last step (≈ 0.60 for the seed's schedule)."""
        return float(self.alpha_bars[-1])

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t for t ∈ {0…T}, with ᾱ_0 = 1."""
        if not 0 <= t <= self.timesteps:
            raise ValueError(f"t must be in 0..{self.timesteps}, got {t}")
        return 1.0 if t == 0 else float(self.alpha_bars[t - 1])

    @property
    def zero_terminal_snr(self) -> bool:
        """ᾱ_T = 0: x_T carries nothing of x_0 and λ_T = −∞."""
        return self.alpha_bar_final == 0.0

    def alpha(self, t: int) -> float:
        """α_t = √ᾱ_t, the signal scale of x_t = α_t x_0 + σ_t ε (α_0 = 1; α_T = 0 at zero terminal SNR)."""
        return math.sqrt(self.alpha_bar(t))

    def sigma(self, t: int) -> float:
        """σ_t = √(1 − ᾱ_t), the noise scale (σ_0 = 0)."""
        return math.sqrt(1.0 - self.alpha_bar(t))

    def log_snr(self, t: int) -> float:
        """λ_t = log(α_t/σ_t): +∞ at t = 0, −∞ where ᾱ_t = 0 (the last step at zero terminal SNR)."""
        ab = self.alpha_bar(t)
        if ab == 0.0:
            return -math.inf
        if ab == 1.0:
            return math.inf
        return 0.5 * (math.log(ab) - math.log1p(-ab))

    def alpha_bars_with_zero(self) -> np.ndarray:
        """(T+1,) ᾱ_t for t = 0…T, so that index t is step t."""
        return np.concatenate([[1.0], self.alpha_bars])

    def to(self, device: torch.device | str) -> ScheduleTensors:
        return ScheduleTensors.from_schedule(self, torch.device(device))


@dataclass(frozen=True, eq=False)
class ScheduleTensors:
    """Float32 tables on one device, indexed by t ∈ {0…T} (index 0 is clean data).

    Used by training (``q_sample`` with a different t per row). Samplers take Python
    floats from the float64 ``Schedule`` instead, one step at a time.
    """

    sqrt_alpha_bar: torch.Tensor  # (T+1,) √ᾱ_t
    sqrt_one_minus_alpha_bar: torch.Tensor  # (T+1,) √(1 − ᾱ_t)

    @classmethod
    def from_schedule(cls, schedule: Schedule, device: torch.device) -> ScheduleTensors:
        alpha_bar = schedule.alpha_bars_with_zero()
        return cls(
            sqrt_alpha_bar=torch.tensor(np.sqrt(alpha_bar), dtype=torch.float32, device=device),
            sqrt_one_minus_alpha_bar=torch.tensor(np.sqrt(1.0 - alpha_bar), dtype=torch.float32, device=device),
        )
