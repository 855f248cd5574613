"""The thread that owns the device: admission by work, futures and metrics around the engine.

Routes call ``submit`` from the event loop; the worker thread moves new requests into the
engine between ticks, ticks while anything is in flight, and resolves the futures of the
requests that ended in a tick together. Everything about batching, scheduling and noise
lives in ``model.engine``; this file only connects it to the service.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from app.metrics import Metrics
from model.diffusion import SamplerSpec, SamplingPlan
from model.engine import Cancelled, Engine, EngineRequest
from model.errors import InvalidParameter

log = logging.getLogger("swirl.worker")


class Overloaded(RuntimeError):
    """Admission refused (503): the backlog of work is over its bound or would outlast the timeout."""

    def __init__(self, message: str, retry_after_s: int, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


QueueFull = Overloaded  # the name routes used before admission counted work


class WorkerStopped(RuntimeError):
    """The worker is shutting down and takes no new work."""


@dataclass
class SampleResult:
    points: np.ndarray  # (n, 2) float32
    trajectory: list[tuple[int, np.ndarray]]  # [(t, (n, 2))] from x_T to x_0, empty unless asked (or streamed)
    queue_seconds: float  # admitted → first tick
    compute_seconds: float  # first tick → done


@dataclass(eq=False)
class SampleJob:
    n: int
    seed: int
    spec: SamplerSpec
    trajectory_every: int | None = None
    model: str | None = None  # a model's name; None is the default model
    on_frame: Callable[[int, np.ndarray], None] | None = None  # streaming: each frame, on the engine thread
    future: Future[SampleResult] = field(default_factory=Future)
    request: EngineRequest | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Client gone or timed out: the request's rows leave the engine at its next tick."""
        self.future.cancel()
        if self.request is not None:
            self.request.cancel()


@dataclass(frozen=True)
class ServedModel:
    """What the worker needs to run a model: its engine key, its plans, its denoiser."""

    key: Hashable
    make_plan: Callable[[SamplerSpec], SamplingPlan]


class Worker:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        resolve_model: Callable[[str | None], ServedModel],
        max_queue: int,
        max_queue_work: int,
        request_timeout_s: float,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.resolve_model = resolve_model
        self.max_queue = max_queue
        self.max_queue_work = max_queue_work
        self.request_timeout_s = request_timeout_s
        self._inbox: queue.SimpleQueue[SampleJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending_work = 0  # submitted, not yet finished (inbox + engine)
        self._pending_jobs = 0
        self._jobs: dict[int, SampleJob] = {}  # id(engine request) → job
        self._plans: dict[tuple[Hashable, SamplerSpec], SamplingPlan] = {}
        self._thread = threading.Thread(target=self._loop, name="swirl-engine", daemon=True)
        self._accepting = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._accepting = True
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what was admitted, then end the thread."""
        self._accepting = False
        if self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("engine still busy after %.0f s; abandoning %d request(s)", timeout, self._pending_jobs)

    def warm_up(self, model: str | None = None) -> None:
        """Run the common samplers through the engine once (first-call costs, a throughput estimate)."""
        served = self.resolve_model(model)
        rows = max(self.engine.tick_rows, 256)
        for spec in (SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10), SamplerSpec("dpmpp2m", steps=10)):
            request = EngineRequest(n=min(rows, 8192), seed=0, plan=self._plan(served, spec), model=served.key)
            with torch.inference_mode():
                self.engine.submit(request)
                self.engine.run()
        log.info("warm: the engine does %.3g rows × steps per second", self.engine.throughput)

    # -- admission ------------------------------------------------------------------------

    def plan(self, spec: SamplerSpec, model: str | None = None) -> SamplingPlan:
        """Compile (and cache) a spec for a model; raises InvalidParameter naming the field."""
        return self._plan(self.resolve_model(model), spec)

    def _plan(self, served: ServedModel, spec: SamplerSpec) -> SamplingPlan:
        key = (served.key, spec)
        plan = self._plans.get(key)
        if plan is None:
            plan = served.make_plan(spec)
            if len(self._plans) >= 512:  # η is a float: bound the cache
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def estimated_wait_s(self, extra_work: int = 0) -> float:
        return (self._pending_work + extra_work) / max(self.engine.throughput, 1.0)

    def submit(self, job: SampleJob) -> Future[SampleResult]:
        if not self._accepting:
            raise WorkerStopped("the server is shutting down")
        served = self.resolve_model(job.model)
        plan = self._plan(served, job.spec)
        request = EngineRequest(n=job.n, seed=job.seed, plan=plan, model=served.key, trajectory_every=job.trajectory_every, on_frame=job.on_frame)
        work = request.work
        if self.max_queue_work and work > self.max_queue_work:
            raise InvalidParameter("n", f"n × network evaluations = {work} exceeds SWIRL_MAX_QUEUE_WORK = {self.max_queue_work}; lower n or use fewer steps")
        with self._lock:
            backlog = self._pending_work
            wait = (backlog + work) / max(self.engine.throughput, 1.0)
            retry = max(1, math.ceil(backlog / max(self.engine.throughput, 1.0)))
            if self._pending_jobs >= self.max_queue:
                raise Overloaded(f"{self._pending_jobs} requests are already in flight (SWIRL_MAX_QUEUE); retry shortly", retry, "queue_full")
            if self.max_queue_work and backlog + work > self.max_queue_work:
                raise Overloaded(
                    f"{backlog} points × evaluations in flight plus this request's {work} exceed SWIRL_MAX_QUEUE_WORK = {self.max_queue_work}",
                    retry,
                    "queue_work",
                )
            if backlog and wait > self.request_timeout_s:
                raise Overloaded(
                    f"estimated wait {wait:.1f} s exceeds SWIRL_REQUEST_TIMEOUT_S = {self.request_timeout_s:g} s; retry in {retry} s",
                    retry,
                    "estimated_wait",
                )
            self._pending_work += work
            self._pending_jobs += 1
        job.request = request
        request.submitted_at = time.perf_counter()
        self._inbox.put(job)
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)
        return job.future

    @property
    def queue_depth(self) -> int:
        return self._pending_jobs

    @property
    def pending_work(self) -> int:
        return self._pending_work

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        with torch.inference_mode():
            while True:
                if self.engine.idle:
                    if stopping:
                        return
                    job = self._inbox.get()  # nothing in flight: sleep until work arrives
                    if job is None:
                        stopping = True
                        continue
                    self._admit(job)
                while True:  # everything that arrived since the last tick joins this one
                    try:
                        job = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                    else:
                        self._admit(job)
                if self.engine.idle:
                    continue
                ended = self.engine.tick()
                self.metrics.ticks.inc()
                self.metrics.tick_rows.observe(self.engine.last_tick_rows)
                if ended:
                    self._resolve(ended)

    def _admit(self, job: SampleJob) -> None:
        request = job.request
        assert request is not None
        if job.future.cancelled() or request.cancelled:
            self._done(request)
            return
        if not job.future.set_running_or_notify_cancel():
            self._done(request)
            return
        try:
            self.engine.submit(request)
        except Exception as exc:
            self._done(request)
            job.future.set_exception(exc)
            return
        self._jobs[id(request)] = job

    def _done(self, request: EngineRequest) -> None:
        with self._lock:
            self._pending_work -= request.work
            self._pending_jobs -= 1
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)

    def _resolve(self, ended: list[EngineRequest]) -> None:
        for request in ended:
            job = self._jobs.pop(id(request), None)
            self._done(request)
            if job is None:
                continue
            sampler = job.spec.sampler
            if isinstance(request.error, Cancelled):
                self.metrics.cancelled.inc()
                continue
            if request.error is not None:
                if not job.future.done():
                    job.future.set_exception(request.error)
                continue
            assert request.points is not None and request.finished_at is not None
            started = request.started_at or request.finished_at
            result = SampleResult(
                points=request.points,
                trajectory=request.trajectory,
                queue_seconds=started - request.submitted_at,
                compute_seconds=request.finished_at - started,
            )
            self.metrics.engine_latency.labels(sampler=sampler).observe(request.finished_at - request.submitted_at)
            self.metrics.batch_points.observe(request.n)
            if not job.future.done():
                job.future.set_result(result)
