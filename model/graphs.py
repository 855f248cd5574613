"""CUDA graphs for the engine: a captured tick per row bucket, and a captured whole chain.

On a GPU a tick of a small MLP is launch-bound: a dozen tiny kernels, each costing more to
launch than to run. Capturing the tick once per row bucket (256, 1024, … rows) and
replaying it makes it one launch; rows are padded up to the bucket and the padding is
ignored. Every per-row input (x, t, the step coefficients, D_prev and the noise) is a
static tensor the engine fills before the replay, and the captured body is the engine's
own ``step_rows`` after the same denoiser, so a graphed tick computes what the eager one does.

``ChainGraphs`` captures a whole chain for one request alone (``model.engine.sample`` with
``graphs=True``: the in-process path of evaluation and benchmarks). Its noise is drawn
before the replay from the request's generator in the engine's order (x_T, then one draw
per noisy step, via the same ``block_seed``), so it gives the engine's points.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from model.denoiser import Denoiser
from model.diffusion import SamplingPlan
from model.engine import NOISE_STD, NonFiniteError, T, TickRunner, block_seed, coefficient_table, step_rows

log = logging.getLogger(__name__)

BUCKETS = (256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576)
TICK_BUCKETS = (256, 1024, 4096, 16_384)
"""Ticks of more rows replay no graph: launches no longer dominate there, and on an H200 the
eager tick (one shared bias row when every row has the same t) measured faster."""


def bucket_for(n: int, buckets: tuple[int, ...] = BUCKETS) -> int | None:
    """The smallest bucket holding ``n`` rows, or None when ``n`` is larger than all."""
    return next((b for b in buckets if b >= n), None)


def _capture(device: torch.device, pool: Any, body: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """Warm ``body`` up on a side stream (as capture requires), then capture it."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            body()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        body()
    return graph


@dataclass
class _Tick:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor  # (bucket, 2) inputs …
    coef: torch.Tensor  # (bucket, 8)
    d_prev: torch.Tensor  # (bucket, 2)
    z: torch.Tensor  # (bucket, 2)
    x_next: torch.Tensor  # … and outputs
    d: torch.Tensor


class TickGraphs:
    """The engine's tick for one denoiser, replayed from a CUDA graph per row bucket."""

    def __init__(self, denoiser: Denoiser, buckets: tuple[int, ...] = TICK_BUCKETS) -> None:
        if denoiser.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.denoiser = denoiser
        self.device = denoiser.device
        self.buckets = buckets
        self._ticks: dict[int, _Tick] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self.failed = False

    def _capture(self, bucket: int) -> _Tick:
        dev = self.device
        x, z, d_prev = (torch.zeros((bucket, 2), device=dev) for _ in range(3))
        coef = torch.zeros((bucket, 8), device=dev)
        coef[:, T] = 1.0
        outputs: dict[str, torch.Tensor] = {}

        def body() -> None:
            out = self.denoiser(x, coef[:, T].long())
            x_next, d = step_rows(x, out, coef, d_prev, z, keep_d=True)
            assert d is not None
            outputs["x_next"], outputs["d"] = x_next, d

        with torch.inference_mode():
            graph = _capture(dev, self._pool, body)
        log.info("captured a CUDA graph of the tick for %d rows", bucket)
        return _Tick(graph, x, coef, d_prev, z, outputs["x_next"], outputs["d"])

    def __call__(
        self, x: torch.Tensor, coef: torch.Tensor, d_prev: torch.Tensor | None, z: torch.Tensor | None, keep_d: bool, rows: int
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        bucket = bucket_for(rows, self.buckets)
        if bucket is None or self.failed:
            return None
        try:
            tick = self._ticks.get(bucket)
            if tick is None:
                tick = self._ticks[bucket] = self._capture(bucket)
        except Exception:
            log.exception("CUDA graph capture failed; the engine ticks eagerly from now on")
            self.failed = True
            return None
        tick.x[:rows].copy_(x)
        tick.coef[:rows].copy_(coef)
        if d_prev is None:
            tick.d_prev[:rows].zero_()
        else:
            tick.d_prev[:rows].copy_(d_prev)
        if z is None:
            tick.z[:rows].zero_()
        else:
            tick.z[:rows].copy_(z)
        tick.graph.replay()
        return tick.x_next[:rows].clone(), tick.d[:rows].clone() if keep_d else None


def tick_graphs(denoiser: Denoiser) -> TickRunner | None:
    """The engine's ``tick_graphs`` hook: graphs on CUDA, None (eager) elsewhere."""
    return TickGraphs(denoiser) if denoiser.device.type == "cuda" else None


@dataclass
class _Chain:
    graph: torch.cuda.CUDAGraph
    x_T: torch.Tensor  # (bucket, 2) static input
    noise: torch.Tensor  # (noisy steps, bucket, 2) static input
    out: torch.Tensor  # (bucket, 2) static output
    table: torch.Tensor  # (steps, 8) coefficients the graph reads: kept alive with it


class ChainGraphs:
    """Whole chains for one denoiser, one graph per (plan, bucket); see the module docstring."""

    def __init__(self, denoiser: Denoiser, buckets: tuple[int, ...] = BUCKETS) -> None:
        if denoiser.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.denoiser = denoiser
        self.device = denoiser.device
        self.buckets = buckets
        self._chains: dict[tuple[SamplingPlan, int], _Chain] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def _capture(self, plan: SamplingPlan, bucket: int) -> _Chain:
        table = torch.from_numpy(coefficient_table(plan)).to(self.device)
        noisy = [i for i in range(len(plan.steps)) if plan.steps[i].noise_std > 0]
        x_T = torch.zeros((bucket, 2), device=self.device)
        noise = torch.zeros((max(len(noisy), 1), bucket, 2), device=self.device)
        out = torch.empty((bucket, 2), device=self.device)

        def body() -> None:
            x, d_prev, k = x_T, None, 0
            for i, step in enumerate(plan.steps):
                z = None
                if step.noise_std > 0:
                    z, k = noise[k], k + 1
                eps = self.denoiser(x, step.t)
                x, d = step_rows(x, eps, table[i : i + 1], d_prev if step.prev_coef else None, z, keep_d=bool(step.d_x or step.d_eps))
                d_prev = d
            out.copy_(x)

        with torch.inference_mode():
            graph = _capture(self.device, self._pool, body)
        log.info("captured a CUDA graph of a %d-step %s chain for %d rows", len(plan.steps), plan.spec.sampler, bucket)
        return _Chain(graph, x_T, noise, out, table)

    def run(self, plan: SamplingPlan, n: int, seed: int) -> torch.Tensor:
        """(n, 2) samples on the device, for one request with this seed (eager past the largest bucket)."""
        bucket = bucket_for(n, self.buckets)
        if bucket is None:
            from model.engine import Engine, EngineRequest

            engine = Engine(self.device, tick_rows=n)
            engine.add_model(None, self.denoiser)
            request = EngineRequest(n=n, seed=seed, plan=plan)
            engine.submit(request)
            engine.run()
            if request.error is not None:
                raise request.error
            assert request.points is not None
            return torch.from_numpy(request.points).to(self.device)
        chain = self._chains.get((plan, bucket))
        if chain is None:
            chain = self._chains[(plan, bucket)] = self._capture(plan, bucket)
        with torch.inference_mode():
            generator = torch.Generator(device=self.device).manual_seed(block_seed(seed, 0))
            chain.x_T[:n].normal_(generator=generator)  # the engine's order: x_T, then each noisy step
            table = coefficient_table(plan)
            for k in range(int((table[:, NOISE_STD] > 0).sum())):
                chain.noise[k, :n].normal_(generator=generator)
            chain.graph.replay()
            x0 = chain.out[:n].clone()
        if not bool(torch.isfinite(x0).all()):
            raise NonFiniteError("the reverse chain produced non-finite values (NaN or inf)")
        return x0


_CHAINS: weakref.WeakKeyDictionary[object, ChainGraphs] = weakref.WeakKeyDictionary()


def chain_graphs(denoiser: Denoiser) -> ChainGraphs:
    """The ``ChainGraphs`` of a denoiser, made once."""
    graphs = _CHAINS.get(denoiser)
    if graphs is None:
        graphs = _CHAINS[denoiser] = ChainGraphs(denoiser)
    return graphs
