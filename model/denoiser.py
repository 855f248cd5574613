"""The network as the engine calls it: raw outputs for rows that each carry their own t.

``Denoiser`` precomputes the time-bias table τ_l(t) for t = 0…T once per model version,
so a network evaluation is only ``act(h @ W_lᵀ + τ_l(t))`` per layer. Rows may all share
one t (the bias is one row of the table, broadcast) or each have their own (the bias rows
are gathered per row): either way each row's output depends on that row alone.

A conditioned network (arc position u, ``model.net``) takes per-row ``Conditions``: each
row's u as the denoiser encoded it once (``encode_condition``; for the MLP, κ(u) − κ(∅) per
layer, added to the bias table, which itself holds τ(t) + κ(∅)), and optionally each row's
guidance weight w. A guided row (w ≠ 0) is evaluated twice in the same batched evaluation,
with its own u and with ∅, and returns ``(1 + w)·out(u) − w·out(∅)`` (``guided_evaluation``).
Rows without conditions are the null condition at the cost of an unconditional network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn import functional as F

from model.net import NULL_CONDITION, EpsilonMLP
from model.prediction import guided_output

CPU_CHUNK_ROWS = 8192
"""On CPU the network runs over rows in chunks of this size: each row's output depends on
that row alone, so chunking changes no result, keeps activation memory flat in n and keeps
the activations cache-sized."""

Timesteps = int | torch.Tensor
"""One t for every row (int), or a (R,) int64 tensor with each row's t."""


@dataclass(frozen=True)
class Conditions:
    """Each row's condition for one evaluation of a conditioned denoiser.

    ``features`` (R, F): each row's u as ``encode_condition`` made it (∅ rows: ``null_features``).
    ``guidance`` (R,) float32: each row's w; 0 for conditional-only and ∅ rows; None when no row is guided.
    ``all_guided``: every row has w ≠ 0 (saves finding the guided rows).
    """

    features: torch.Tensor
    guidance: torch.Tensor | None = None
    all_guided: bool = False


class Denoiser(Protocol):
    device: torch.device
    conditioned: bool  # takes Conditions (a network trained with a condition and ∅)
    null_features: torch.Tensor  # (1, F): the encoded null condition ∅ (conditioned denoisers)

    def __call__(self, x: torch.Tensor, t: Timesteps, conditions: Conditions | None = None) -> torch.Tensor:
        """(R, 2) points at steps t → (R, 2) raw network output (ε or v, as the model was trained),
        in a new tensor that the caller may overwrite (the engine updates in place). Without
        ``conditions`` every row has the null condition (an unconditional model's only one)."""

    def encode_condition(self, u: torch.Tensor) -> torch.Tensor:
        """(R,) float32 arc positions (NaN: ∅) → (R, F) features for ``Conditions``: computed once
        per request block, so that a step does no embedding work."""


NO_CONDITION = "this model has no condition input"


class StepDenoiser(Protocol):
    """What the likelihood and the score need: every row at one step t, with the null condition
    ∅ (for a conditioned network, the model's own unconditional density). Every ``Denoiser`` is one."""

    device: torch.device

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """(R, 2) points at step t → (R, 2) raw network output."""


def evaluate_rows(
    evaluate: Callable[[torch.Tensor, Timesteps, torch.Tensor | None], torch.Tensor],
    conditioned: bool,
    x: torch.Tensor,
    t: Timesteps,
    conditions: Conditions | None,
) -> torch.Tensor:
    """A denoiser's call: without conditions every row has ∅; with them, each row its own (guided pairs included)."""
    if conditions is None:
        return evaluate(x, t, None)
    if not conditioned:
        raise ValueError(NO_CONDITION)
    return guided_evaluation(evaluate, x, t, conditions)


def guided_evaluation(
    evaluate: Callable[[torch.Tensor, Timesteps, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: Timesteps,
    conditions: Conditions,
) -> torch.Tensor:
    """One batched evaluation of R conditioned rows in which each guided row also appears with ∅.

    ``evaluate(x, t, features)`` runs the network over rows; ``features`` covers the first rows
    and every row after them has the null condition. The G guided rows are appended as null
    copies (same x and t), so the network sees R + G rows at once; each guided row then returns
    ``(1 + w)·out(x, t, u) − w·out(x, t, ∅)``. A fresh (R, 2) tensor.
    """
    rows = x.shape[0]
    weights = conditions.guidance
    if weights is None:
        return evaluate(x, t, conditions.features)
    if conditions.all_guided:  # every row guided (a request alone, or a cohort): the pairs are [x; x]
        out = evaluate(torch.cat([x, x]), t if isinstance(t, int) else torch.cat([t, t]), conditions.features)
        return guided_output(out[:rows], out[rows:], weights[:, None])
    guided = torch.nonzero(weights).squeeze(1)  # (G,) guided rows
    if guided.numel() == 0:
        return evaluate(x, t, conditions.features)
    paired_x = torch.cat([x, x.index_select(0, guided)])  # (R + G, 2): the rows, then the guided ones again, with ∅
    paired_t = t if isinstance(t, int) else torch.cat([t, t.index_select(0, guided)])
    out = evaluate(paired_x, paired_t, conditions.features)
    w = weights.index_select(0, guided)[:, None]
    out[guided] = guided_output(out.index_select(0, guided), out[rows:], w)
    return out[:rows]


class NetDenoiser:
    """An ``EpsilonMLP`` (eval mode, on its device) with its bias table computed once.

    The table holds τ_l(t), plus κ_l(∅) for a conditioned network, so that unconditional rows
    cost what an unconditional network's do.
    """

    def __init__(self, net: EpsilonMLP, device: torch.device | str, chunk_rows: int | None = None) -> None:
        self.device = torch.device(device)
        self.activation = net.config.activation
        self.conditioned = net.config.conditioned
        self.width = net.config.hidden
        self.net = net
        with torch.inference_mode():
            table = net.row_bias(torch.arange(net.timesteps + 1, device=self.device))  # (T+1, depth, width): τ(t) [+ κ(∅)]
        self.biases = [table[:, i, :].contiguous() for i in range(net.config.depth)]  # per layer (T+1, width)
        self.bias_rows = [[bias[t] for bias in self.biases] for t in range(net.timesteps + 1)]  # [t][layer]: (width,) views
        self.weights_t = [layer.weight.detach().t() for layer in net.layers if isinstance(layer, torch.nn.Linear)]  # (in, width) views
        self.out_weight_t = net.out.weight.detach().t()
        self.out_bias = net.out.bias.detach()
        self.null_features = torch.zeros((1, net.config.depth * net.config.hidden), device=self.device)  # κ(∅) − κ(∅)
        if chunk_rows is None and self.device.type == "cpu":
            chunk_rows = CPU_CHUNK_ROWS
        self.chunk_rows = chunk_rows

    def encode_condition(self, u: torch.Tensor) -> torch.Tensor:
        """(R,) u (NaN: ∅) → (R, depth·width): κ_l(u) − κ_l(∅) for every layer (zero for ∅), added to the table's rows."""
        if not self.conditioned:
            raise ValueError(NO_CONDITION)
        with torch.inference_mode():
            kappa = self.net.condition_bias(u.to(self.device, torch.float32)) - self.net.null_condition
        return kappa.reshape(u.shape[0], -1)

    def __call__(self, x: torch.Tensor, t: Timesteps, conditions: Conditions | None = None) -> torch.Tensor:
        return evaluate_rows(self._chunked, self.conditioned, x, t, conditions)

    def _chunked(self, x: torch.Tensor, t: Timesteps, features: torch.Tensor | None) -> torch.Tensor:
        rows = x.shape[0]
        if self.chunk_rows is None or rows <= self.chunk_rows:
            return self._forward(x, t, features)
        out = torch.empty_like(x)
        for start in range(0, rows, self.chunk_rows):
            stop = start + self.chunk_rows
            chunk_t = t if isinstance(t, int) else t[start:stop]
            out[start:stop] = self._forward(x[start:stop], chunk_t, None if features is None or start >= features.shape[0] else features[start:stop])
        return out

    def _forward(self, x: torch.Tensor, t: Timesteps, features: torch.Tensor | None) -> torch.Tensor:
        """Rows' outputs; ``features`` (κ(u) − κ(∅)) covers the first rows, the rest are ∅ (zero features)."""
        h = x
        rows = x.shape[0]
        # one t: that t's bias rows, broadcast; else each row's own bias rows, gathered
        biases = self.bias_rows[t] if isinstance(t, int) else [torch.index_select(table, 0, t) for table in self.biases]
        for layer, (bias, weight_t) in enumerate(zip(biases, self.weights_t)):
            if features is not None:  # each row's κ(u) − κ(∅) on top of τ(t) + κ(∅); rows past the features: ∅
                kappa = features[:, layer * self.width : (layer + 1) * self.width]
                covered = kappa.shape[0]
                if bias.dim() == 1 and covered == rows:
                    # one u for every row (a stride-0 view): one row τ(t) + κ(u), broadcast like τ(t) alone
                    bias = kappa[0] + bias if kappa.stride(0) == 0 else kappa + bias
                else:
                    if bias.dim() == 1:  # a shared t's row, made one per row (the same bits as broadcasting it)
                        bias = bias.expand(rows, -1).clone()
                    bias[:covered].add_(kappa)
            h = torch.addmm(bias, h, weight_t) if bias.dim() == 1 else bias.addmm_(h, weight_t)
            if self.activation == "silu":
                F.silu(h, inplace=True)
            elif self.activation == "relu":
                F.relu(h, inplace=True)
            else:
                h = F.gelu(h)
        return torch.addmm(self.out_bias, h, self.out_weight_t)


ConditionedFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
"""A conditioned oracle: (n, 2) points, one t, (n,) u with NaN for ∅ → (n, 2) output."""


class FunctionDenoiser:
    """Any ``f(x, t: int) -> output`` as a denoiser (test oracles, reference models).

    With ``conditioned_fn`` (x, t, u) it is a conditioned denoiser whose features are u
    itself (NaN for ∅): the oracle for guided sampling, whose pairs go through the same
    ``guided_evaluation`` as the network's. Rows with different t are evaluated one distinct
    t at a time; ``calls`` counts the evaluations (each call of ``__call__``).
    """

    def __init__(
        self, fn: Callable[[torch.Tensor, int], torch.Tensor], device: torch.device | str = "cpu", conditioned_fn: ConditionedFn | None = None
    ) -> None:
        self.fn = fn
        self.conditioned_fn = conditioned_fn
        self.conditioned = conditioned_fn is not None
        self.device = torch.device(device)
        self.null_features = torch.full((1, 1), NULL_CONDITION, device=self.device)
        self.calls = 0

    def encode_condition(self, u: torch.Tensor) -> torch.Tensor:
        if not self.conditioned:
            raise ValueError(NO_CONDITION)
        return u.to(self.device, torch.float32).reshape(-1, 1).clone()

    def __call__(self, x: torch.Tensor, t: Timesteps, conditions: Conditions | None = None) -> torch.Tensor:
        self.calls += 1
        return evaluate_rows(self._rows, self.conditioned, x, t, conditions)

    def _apply(self, x: torch.Tensor, t: int, features: torch.Tensor | None) -> torch.Tensor:
        if features is None:
            return self.fn(x, t)
        assert self.conditioned_fn is not None
        return self.conditioned_fn(x, t, features[:, 0])

    def _rows(self, x: torch.Tensor, t: Timesteps, features: torch.Tensor | None) -> torch.Tensor:
        if features is not None and features.shape[0] < x.shape[0]:  # rows past the features: ∅
            features = torch.cat([features, self.null_features.expand(x.shape[0] - features.shape[0], -1)])
        if isinstance(t, int):
            return torch.empty_like(x).copy_(self._apply(x, t, features))  # fresh, whatever fn returns (x itself, a view …)
        out = torch.empty_like(x)
        for value in torch.unique(t).tolist():
            mask = t == value
            out[mask] = self._apply(x[mask], int(value), None if features is None else features[mask])
        return out


class DifferentiableNetDenoiser:
    """An ``EpsilonMLP`` at integer steps whose output keeps its autograd graph in x (the
    likelihood's divergence differentiates it). The bias τ(t) (plus κ(∅) for a conditioned network:
    its unconditional density) is computed once per step, without a graph (it depends on t alone);
    the layers are the net's own differentiable ``forward_with_shared_bias``."""

    def __init__(self, net: EpsilonMLP, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.net = net
        with torch.no_grad():
            table = net.row_bias(torch.arange(net.timesteps + 1, device=self.device))  # (T+1, depth, width)
        self.bias = [row.clone() for row in table]  # [t]: (depth, width), ordinary tensors (not inference ones)

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.net.forward_with_shared_bias(x, self.bias[t])
