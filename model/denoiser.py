"""The network as the engine calls it: raw outputs for rows that each carry their own t.

``Denoiser`` precomputes the time-bias table τ_l(t) for t = 0…T once per model version,
so a network evaluation is only ``act(h @ W_lᵀ + τ_l(t))`` per layer. Rows may all share
one t (the bias is one row of the table, broadcast) or each have their own (the bias rows
are gathered per row): either way each row's output depends on that row alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch.nn import functional as F

from model.net import EpsilonMLP

CPU_CHUNK_ROWS = 8192
"""On CPU the network runs over rows in chunks of this size: each row's output depends on
that row alone, so chunking changes no result, keeps activation memory flat in n and keeps
the activations cache-sized."""

Timesteps = int | torch.Tensor
"""One t for every row (int), or a (R,) int64 tensor with each row's t."""


class Denoiser(Protocol):
    device: torch.device

    def __call__(self, x: torch.Tensor, t: Timesteps) -> torch.Tensor:
        """(R, 2) points at steps t → (R, 2) raw network output (ε or v, as the model was trained),
        in a new tensor that the caller may overwrite (the engine updates in place)."""


class NetDenoiser:
    """An ``EpsilonMLP`` (eval mode, on its device) with its time-bias table computed once."""

    def __init__(self, net: EpsilonMLP, device: torch.device | str, chunk_rows: int | None = None) -> None:
        self.device = torch.device(device)
        self.activation = net.config.activation
        with torch.inference_mode():
            table = net.time_bias(torch.arange(net.timesteps + 1, device=self.device))  # (T+1, depth, width)
        self.biases = [table[:, i, :].contiguous() for i in range(net.config.depth)]  # per layer (T+1, width)
        self.bias_rows = [[bias[t] for bias in self.biases] for t in range(net.timesteps + 1)]  # [t][layer]: (width,) views
        self.weights_t = [layer.weight.detach().t() for layer in net.layers if isinstance(layer, torch.nn.Linear)]  # (in, width) views
        self.out_weight_t = net.out.weight.detach().t()
        self.out_bias = net.out.bias.detach()
        if chunk_rows is None and self.device.type == "cpu":
            chunk_rows = CPU_CHUNK_ROWS
        self.chunk_rows = chunk_rows

    def __call__(self, x: torch.Tensor, t: Timesteps) -> torch.Tensor:
        rows = x.shape[0]
        if self.chunk_rows is None or rows <= self.chunk_rows:
            return self._forward(x, t)
        out = torch.empty_like(x)
        for start in range(0, rows, self.chunk_rows):
            stop = start + self.chunk_rows
            out[start:stop] = self._forward(x[start:stop], t if isinstance(t, int) else t[start:stop])
        return out

    def _forward(self, x: torch.Tensor, t: Timesteps) -> torch.Tensor:
        h = x
        # one t: that t's bias rows, broadcast; else each row's own bias rows, gathered
        biases = self.bias_rows[t] if isinstance(t, int) else [torch.index_select(table, 0, t) for table in self.biases]
        for bias, weight_t in zip(biases, self.weights_t):
            h = torch.addmm(bias, h, weight_t) if bias.dim() == 1 else bias.addmm_(h, weight_t)
            if self.activation == "silu":
                F.silu(h, inplace=True)
            elif self.activation == "relu":
                F.relu(h, inplace=True)
            else:
                h = F.gelu(h)
        return torch.addmm(self.out_bias, h, self.out_weight_t)


class FunctionDenoiser:
    """Any ``f(x, t: int) -> output`` as a denoiser (test oracles, reference models).

    Rows with different t are evaluated one distinct t at a time.
    """

    def __init__(self, fn: Callable[[torch.Tensor, int], torch.Tensor], device: torch.device | str = "cpu") -> None:
        self.fn = fn
        self.device = torch.device(device)

    def __call__(self, x: torch.Tensor, t: Timesteps) -> torch.Tensor:
        if isinstance(t, int):
            return torch.empty_like(x).copy_(self.fn(x, t))  # fresh, whatever fn returns (x itself, a view …)
        out = torch.empty_like(x)
        for value in torch.unique(t).tolist():
            mask = t == value
            out[mask] = self.fn(x[mask], int(value))
        return out


class DifferentiableNetDenoiser:
    """An ``EpsilonMLP`` at integer steps whose output keeps its autograd graph in x (the
    likelihood's divergence differentiates it). τ(t) is computed once per step, without a graph
    (it depends on t alone); the layers are the net's own differentiable ``forward_with_shared_bias``."""

    def __init__(self, net: EpsilonMLP, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.net = net
        with torch.no_grad():
            table = net.time_bias(torch.arange(net.timesteps + 1, device=self.device))  # (T+1, depth, width)
        self.bias = [row.clone() for row in table]  # [t]: (depth, width), ordinary tensors (not inference ones)

    def __call__(self, x: torch.Tensor, t: Timesteps) -> torch.Tensor:
        if not isinstance(t, int):
            raise TypeError("DifferentiableNetDenoiser evaluates rows that share one step t")
        return self.net.forward_with_shared_bias(x, self.bias[t])
