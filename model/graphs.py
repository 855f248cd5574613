"""The reverse chain captured as CUDA graphs: one graph per (sampler plan, batch-size bucket).

On a GPU a 50-step chain of a small MLP is launch-bound: hundreds of tiny kernels, each
costing more to launch than to run. Capturing the whole chain once and replaying it makes
it one launch. Buffers are static per bucket (256, 1024, … points); a batch is padded up
to its bucket and the padding rows are ignored.

Randomness stays per request: x_T and every step's noise are drawn *before* the replay,
from each request's own generator, in exactly the order ``run_chain`` draws them, so the
graphed chain gives the same points as the eager one on the same device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from model.diffusion import ChainResult, EpsFn, GeneratorNoise, NonFiniteError, SamplingPlan, apply_step_

log = logging.getLogger(__name__)

BUCKETS = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576)


def bucket_for(n: int, buckets: tuple[int, ...] = BUCKETS) -> int | None:
    """The smallest bucket holding ``n`` points, or None when ``n`` is larger than all."""
    return next((b for b in buckets if b >= n), None)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    x_T: torch.Tensor  # (bucket, 2) static input
    noise: torch.Tensor  # (noisy steps, bucket, 2) static input
    out: torch.Tensor  # (bucket, 2) static output


class GraphedChains:
    """Replays captured chains; ``run`` returns None when a request must take the eager path."""

    def __init__(self, eps_fn: EpsFn, device: torch.device, buckets: tuple[int, ...] = BUCKETS) -> None:
        if device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.eps_fn = eps_fn
        self.device = device
        self.buckets = buckets
        self._graphs: dict[tuple[SamplingPlan, int], _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def _body(self, plan: SamplingPlan, x_T: torch.Tensor, noise: torch.Tensor, out: torch.Tensor) -> None:
        x = x_T.clone()
        d_prev: torch.Tensor | None = None
        k = 0
        for step in plan.steps:
            eps = self.eps_fn(x, step.t)
            z = None
            if step.noise_std > 0:
                z = noise[k]
                k += 1
            x, d_prev = apply_step_(step, x, eps, d_prev, z)
        out.copy_(x)

    def _capture(self, plan: SamplingPlan, bucket: int) -> _Captured:
        noisy = sum(1 for step in plan.steps if step.noise_std > 0)
        x_T = torch.zeros((bucket, 2), device=self.device)
        noise = torch.zeros((max(noisy, 1), bucket, 2), device=self.device)
        out = torch.empty((bucket, 2), device=self.device)
        with torch.inference_mode():
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up outside the graph, as capture requires
                for _ in range(2):
                    self._body(plan, x_T, noise, out)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                self._body(plan, x_T, noise, out)
        log.info("captured a CUDA graph: %s, %d steps, bucket %d", plan.spec.sampler, len(plan.steps), bucket)
        return _Captured(graph, x_T, noise, out)

    def run(self, plan: SamplingPlan, noise: GeneratorNoise, n: int) -> ChainResult | None:
        bucket = bucket_for(n, self.buckets)
        if bucket is None:
            return None
        captured = self._graphs.get((plan, bucket))
        if captured is None:
            captured = self._graphs[(plan, bucket)] = self._capture(plan, bucket)
        with torch.inference_mode():
            # draw in run_chain's order: x_T first, then each noisy step's z
            noise.fill_(captured.x_T[:n])
            k = 0
            for step in plan.steps:
                if step.noise_std > 0:
                    noise.fill_(captured.noise[k, :n])
                    k += 1
            captured.graph.replay()
            x0 = captured.out[:n].clone()
        if not bool(torch.isfinite(x0).all()):
            raise NonFiniteError("the reverse chain produced non-finite values (NaN or inf)")
        return ChainResult(x0=x0, trajectory=[])
