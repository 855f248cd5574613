"""The denoising network: an MLP f_θ(x_t, t) with a sinusoidal time embedding.

What it predicts (ε, v or x_0) is ``NetConfig.prediction``; ``model.prediction`` converts.

Time enters every hidden layer as a learned bias τ_l(t) computed from a sinusoidal
embedding of t (never the raw integer). Because τ depends on t alone, samplers compute
the whole table τ(t) for t = 0…T once per chain, and each step is then just
``act(h @ W_lᵀ + τ_l(t))``: no per-step embedding work.

A conditioned network (``NetConfig.condition = "arc_position"``) also takes, per row, the
arc position u ∈ [0, 1] or the null condition ∅ (written NaN): κ_l(u), from a sinusoidal
embedding of u, is added to each hidden layer's bias next to τ_l(t), and κ(∅) is a learned
bias of its own. Trained with u dropped to ∅ at random, one network gives ε(x, t, u) and
ε(x, t, ∅), the two halves of classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from model.prediction import Prediction, check_prediction

Activation = Literal["silu", "relu", "gelu"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
Condition = Literal["none", "arc_position"]
CONDITIONS: tuple[str, ...] = get_args(Condition)
CONDITION_RANGE = (0.0, 1.0)  # the arc position u: 0 the roll's inner end, 1 its outer end (model/data.py)
CONDITION_EMBEDDING_SPAN = 10
"""u enters the sinusoidal embedding as u' = 1000·u/10 = 100·u: angular frequencies 100…0.01 per
unit of u, around the roll's own 3π per unit (c(t(u)) turns 1.5 times), none finer than ~0.06 in u."""
NULL_CONDITION = float("nan")  # the value of u that stands for ∅ in a row's condition


@dataclass(frozen=True)
class NetConfig:
    hidden: int = 64  # width of every hidden layer (the smallest that met the targets: RESULTS.md)
    depth: int = 3  # number of hidden layers (each conditioned on t)
    time_embedding_dim: int = 32  # size of the sinusoidal embedding of t
    activation: Activation = "silu"  # the nonlinearity after every hidden layer
    data_dim: int = 2  # the swiss roll is 2D
    prediction: Prediction = "eps"  # what the output means: ε, v = α_t ε − σ_t x_0, or x_0 (model/prediction.py)
    condition: Condition = "none"  # none, or arc_position: u ∈ [0, 1] along the roll (with a learned null ∅) enters every hidden layer's bias
    condition_embedding_dim: int = 32  # size of the sinusoidal embedding of u (a conditioned network only)

    def __post_init__(self) -> None:
        check_prediction(self.prediction)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; valid ones are {', '.join(ACTIVATIONS)}")
        if self.hidden < 1 or self.depth < 1:
            raise ValueError(f"hidden and depth must be positive, got {self.hidden}, {self.depth}")
        if self.time_embedding_dim < 2 or self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even and >= 2, got {self.time_embedding_dim}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"Unknown condition {self.condition!r}; valid ones are {', '.join(CONDITIONS)}")
        if self.condition_embedding_dim < 2 or self.condition_embedding_dim % 2:
            raise ValueError(f"condition_embedding_dim must be even and >= 2, got {self.condition_embedding_dim}")

    @property
    def conditioned(self) -> bool:
        return self.condition != "none"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.conditioned:  # an unconditional net's record stays what it was before conditions existed
            del data["condition"], data["condition_embedding_dim"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        return cls(**data)


def sinusoidal_embedding(t: torch.Tensor, dim: int, timesteps: int) -> torch.Tensor:
    """(B,) integer steps → (B, dim) [sin(ω_k t'), cos(ω_k t')] with t' = 1000·t/T.

    Scaling t to the 0…1000 range keeps the embedding's frequencies comparable for any T.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.to(torch.float32) * (1000.0 / timesteps))[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU(), "relu": nn.ReLU(), "gelu": nn.GELU()}[name]


class EpsilonMLP(nn.Module):
    """f_θ(x_t, t): (B, 2) points and (B,) integer steps → (B, 2) prediction (ε by default).

    The name is the seed's; with ``config.prediction = "v"`` the output is v = α_t ε − σ_t x_0.
    """

    def __init__(self, config: NetConfig, timesteps: int) -> None:
        super().__init__()
        self.config = config
        self.timesteps = timesteps
        width, depth = config.hidden, config.depth
        # τ(t): embedding → hidden → one bias per hidden layer, (B, depth·width)
        self.time_mlp = nn.Sequential(
            nn.Linear(config.time_embedding_dim, width),
            _activation(config.activation),
            nn.Linear(width, depth * width),
        )
        if config.conditioned:
            # κ(u): embedding of u → hidden → one bias per hidden layer; κ(∅): a learned bias
            self.condition_mlp = nn.Sequential(
                nn.Linear(config.condition_embedding_dim, width),
                _activation(config.activation),
                nn.Linear(width, depth * width),
            )
            self.null_condition = nn.Parameter(torch.zeros(depth, width))
        self.layers = nn.ModuleList([nn.Linear(config.data_dim, width, bias=False)] + [nn.Linear(width, width, bias=False) for _ in range(depth - 1)])
        self.out = nn.Linear(width, config.data_dim)
        self.act = _activation(config.activation)

    def time_bias(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) integer steps → (B, depth, width): the per-layer bias τ_l(t)."""
        emb = sinusoidal_embedding(t, self.config.time_embedding_dim, self.timesteps)
        first = self.time_mlp[0]
        assert isinstance(first, nn.Linear)
        return self.time_mlp(emb.to(first.weight.dtype)).view(-1, self.config.depth, self.config.hidden)  # a float64 copy of the net too

    def condition_bias(self, u: torch.Tensor) -> torch.Tensor:
        """(B,) arc positions, NaN for ∅ → (B, depth, width): the per-layer bias κ_l(u), κ(∅) where NaN."""
        if not self.config.conditioned:
            raise ValueError("this network has no condition input (NetConfig.condition is 'none')")
        null = torch.isnan(u)
        emb = sinusoidal_embedding(torch.where(null, torch.zeros_like(u), u), self.config.condition_embedding_dim, CONDITION_EMBEDDING_SPAN)
        emb = emb.to(self.out.weight.dtype)  # float32 angles; a float64 copy of the net (tests) computes on in float64
        kappa = self.condition_mlp(emb).view(-1, self.config.depth, self.config.hidden)
        return torch.where(null[:, None, None], self.null_condition.expand_as(kappa), kappa)

    def row_bias(self, t: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) steps and (B,) conditions (None: all ∅) → (B, depth, width): τ_l(t) + κ_l(u)."""
        bias = self.time_bias(t)
        if not self.config.conditioned:
            if u is not None:
                raise ValueError("this network has no condition input (NetConfig.condition is 'none')")
            return bias
        if u is None:
            return bias + self.null_condition
        return bias + self.condition_bias(u)

    def forward(self, x: torch.Tensor, t: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2) points, (B,) steps, optional (B,) conditions (NaN or None: ∅) → (B, 2) prediction."""
        return self.forward_with_row_bias(x, self.row_bias(t, u))

    def forward_with_row_bias(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``forward`` with each row's τ(t) given, (B, depth, width), differentiable.

        When a batch draws its t from a few values (a distilled student's grid), computing
        τ once per value and indexing it skips most of the time MLP's work.
        """
        h = x
        for i, layer in enumerate(self.layers):
            h = self.act(layer(h) + bias[:, i])
        return self.out(h)

    def forward_with_shared_bias(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``forward`` for rows that share one t, with τ(t) given, (depth, width), differentiable.

        Training on a few values of t (a distilled student's grid): τ once per value, added
        by ``addmm`` as a broadcast bias.
        """
        h = x
        for i, layer in enumerate(self.layers):
            assert isinstance(layer, nn.Linear)
            h = self.act(torch.addmm(bias[i], h, layer.weight.t()))
        return self.out(h)

    def forward_with_bias(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Fast path for a batch that shares one t: ``bias`` is τ(t) for that t, (depth, width).

        Fused ``addmm`` per layer and in-place activations; used by every sampler.
        """
        act = self.config.activation
        h = x
        for i, layer in enumerate(self.layers):
            assert isinstance(layer, nn.Linear)
            h = torch.addmm(bias[i], h, layer.weight.t())
            if act == "silu":
                F.silu(h, inplace=True)
            elif act == "relu":
                F.relu(h, inplace=True)
            else:
                h = F.gelu(h)
        return torch.addmm(self.out.bias, h, self.out.weight.t())

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
