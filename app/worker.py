"""The one thread that owns the device: a bounded queue, cross-request batching, splitting.

Requests that share (sampler, steps, eta, trajectory_every) are coalesced into one
reverse chain, up to ``max_batch_points`` points, waiting at most ``batch_wait_ms`` for
company. Each request draws its x_T and noise from its own ``torch.Generator(seed)``, so
its points are the same alone or batched. A request whose client is gone before its
chain starts is skipped (its future was cancelled).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from app.metrics import Metrics
from model.checkpoint import Checkpoint
from model.diffusion import (
    ChainResult,
    EpsFn,
    GeneratorNoise,
    NonFiniteError,
    SamplerSpec,
    SamplingPlan,
    make_plan,
    net_eps_fn,
    run_chain,
)
from model.graphs import GraphedChains

log = logging.getLogger("swirl.worker")

BatchKey = tuple[SamplerSpec, int | None]


class QueueFull(RuntimeError):
    """The worker's queue is at SWIRL_MAX_QUEUE; shed the request (503)."""


class WorkerStopped(RuntimeError):
    """The worker is shutting down and takes no new work."""


@dataclass
class SampleResult:
    points: np.ndarray  # (n, 2) float32
    trajectory: list[tuple[int, np.ndarray]]  # [(t, (n, 2))] from x_T to x_0, empty unless asked
    batch_requests: int  # how many requests shared the chain
    chain_seconds: float
    queue_seconds: float = 0.0  # from submit to the start of its chain
    compute_seconds: float = 0.0  # its chain, start to x_0 (shared with its batch)


@dataclass
class SampleJob:
    n: int
    seed: int
    spec: SamplerSpec
    trajectory_every: int | None = None
    future: Future[SampleResult] = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)  # for SampleResult.queue_seconds

    @property
    def key(self) -> BatchKey:
        return (self.spec, self.trajectory_every)


class Worker:
    def __init__(
        self,
        checkpoint: Checkpoint,
        metrics: Metrics,
        *,
        max_queue: int,
        max_batch_points: int,
        batch_wait_ms: float,
        cuda_graphs: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.metrics = metrics
        self.max_batch_points = max_batch_points
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._queue: queue.Queue[SampleJob | None] = queue.Queue(maxsize=max_queue)
        self._deferred: deque[SampleJob] = deque()  # taken from the queue but for another batch
        self._plans: dict[SamplerSpec, SamplingPlan] = {}
        self._eps: EpsFn = net_eps_fn(checkpoint.net, checkpoint.schedule.timesteps, checkpoint.device)
        # On a GPU, whole chains replay as CUDA graphs (one launch instead of hundreds)
        self._graphs = GraphedChains(self._eps, checkpoint.device) if cuda_graphs and checkpoint.device.type == "cuda" else None
        self._thread = threading.Thread(target=self._loop, name="swirl-worker", daemon=True)
        self._accepting = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._accepting = True
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what was admitted, then end the thread."""
        self._accepting = False
        if self._thread.is_alive():
            self._queue.put(None)  # wakes the loop; admitted jobs ahead of it still run
            self._thread.join(timeout)
        for job in self._drain():
            job.future.cancel()

    def warm_up(self) -> None:
        """Run each common chain once so the first request pays no first-call costs."""
        for spec in (SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10), SamplerSpec("dpmpp2m", steps=10)):
            job = SampleJob(n=256, seed=0, spec=spec)
            job.future.set_running_or_notify_cancel()
            self._run_batch([job])
            job.future.result()

    # -- admission ------------------------------------------------------------------------

    def submit(self, job: SampleJob) -> Future[SampleResult]:
        if not self._accepting:
            raise WorkerStopped("the server is shutting down")
        self.plan(job.spec)  # a bad spec fails here, in the caller, not in the worker
        full = QueueFull(f"{self._queue.maxsize} requests are already queued")
        if self.queue_depth >= self._queue.maxsize:  # jobs set aside for another batch count too
            raise full
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise full from None
        self.metrics.queue_depth.set(self.queue_depth)
        return job.future

    def plan(self, spec: SamplerSpec) -> SamplingPlan:
        plan = self._plans.get(spec)
        if plan is None:
            plan = self._plans[spec] = make_plan(self.checkpoint.schedule, spec)
        return plan

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._deferred)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while True:
            first: SampleJob | None = self._deferred.popleft() if self._deferred else None
            if first is None:
                if stopping:
                    return
                first = self._queue.get()
                if first is None:
                    stopping = True  # drain what is left, then leave
                    self._take_rest_of_queue()
                    continue
            batch = self._gather(first)
            self.metrics.queue_depth.set(self.queue_depth)
            # jobs cancelled while queued (client gone, timed out) are skipped; the route has counted them
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if live:
                self._run_batch(live)

    def _take_rest_of_queue(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._deferred.append(job)

    def _gather(self, first: SampleJob) -> list[SampleJob]:
        """Coalesce jobs with ``first``'s key, within the point budget and the wait window."""
        batch, points = [first], first.n
        if self.max_batch_points <= first.n:
            return batch
        for job in list(self._deferred):
            if job.key == first.key and points + job.n <= self.max_batch_points:
                self._deferred.remove(job)
                batch.append(job)
                points += job.n
        deadline = time.monotonic() + self.batch_wait_s
        while points < self.max_batch_points:
            remaining = deadline - time.monotonic()
            try:
                incoming = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if incoming is None:  # stop requested: finish this batch, then drain
                self._take_rest_of_queue()
                self._queue.put_nowait(None)
                break
            job = incoming
            if job.key == first.key and points + job.n <= self.max_batch_points:
                batch.append(job)
                points += job.n
            else:
                self._deferred.append(job)
        return batch

    def _run_batch(self, jobs: list[SampleJob]) -> None:
        spec, trajectory_every = jobs[0].key
        total = sum(job.n for job in jobs)
        started = time.perf_counter()
        try:
            result = self._chain(jobs, spec, trajectory_every)
            x0 = result.x0.cpu().numpy()
            frames = [(t, points.numpy()) for t, points in result.trajectory]
        except NonFiniteError as exc:
            log.error("chain for %d request(s) (%s) produced non-finite values; failing them", len(jobs), spec)
            for job in jobs:
                job.future.set_exception(exc)
            return
        except Exception as exc:  # never let one bad batch kill the worker
            log.exception("chain for %d request(s) failed", len(jobs))
            for job in jobs:
                job.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self.metrics.batch_points.observe(total)
        self.metrics.batch_requests.observe(len(jobs))
        self.metrics.chain_seconds.observe(elapsed)
        start = 0
        for job in jobs:
            stop = start + job.n
            job.future.set_result(
                SampleResult(
                    points=x0[start:stop],
                    trajectory=[(t, frame[start:stop]) for t, frame in frames],
                    batch_requests=len(jobs),
                    chain_seconds=elapsed,
                    queue_seconds=max(0.0, started - job.submitted),
                    compute_seconds=elapsed,
                )
            )
            start = stop

    def _noise(self, jobs: list[SampleJob]) -> GeneratorNoise:
        device = self.checkpoint.device
        return GeneratorNoise([torch.Generator(device=device).manual_seed(job.seed) for job in jobs], [job.n for job in jobs])

    def _chain(self, jobs: list[SampleJob], spec: SamplerSpec, trajectory_every: int | None) -> ChainResult:
        """One reverse chain for the whole batch: a CUDA-graph replay where possible, else eager."""
        plan, total = self.plan(spec), sum(job.n for job in jobs)
        if self._graphs is not None and trajectory_every is None:
            try:
                graphed = self._graphs.run(plan, self._noise(jobs), total)
            except NonFiniteError:
                raise
            except Exception:
                log.exception("CUDA graph path failed; serving eagerly from now on")
                self._graphs = None
                graphed = None
            if graphed is not None:
                return graphed
        return run_chain(self._eps, plan, self._noise(jobs), total, device=self.checkpoint.device, trajectory_every=trajectory_every)

    def _drain(self) -> list[SampleJob]:
        jobs = list(self._deferred)
        self._deferred.clear()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)
