"""The thread that owns the device: admission by work, futures and metrics around the engine.

Routes call ``submit`` from the event loop; the worker thread moves new requests into the
engine between ticks, ticks while anything is in flight, and resolves the futures of the
requests that ended in a tick together. With ``start(loop)`` (SWIRL_ENGINE_ON=loop) the same
steps run on the event loop's own thread instead, a tick per pass of the loop, and no
hand-off crosses threads (docs/request-path.md compares the two). Everything about batching, scheduling and noise
lives in ``model.engine``; this file only connects it to the service.

Model versions come and go while requests are in flight (``app.serving.models`` reloads them):
the engine is not thread-safe, so adding a version runs on this thread between ticks
(``call_soon``), and an old version leaves the engine only once the last request admitted
on it has finished (``retire``). A request is bound to the version current when it was
admitted (``SampleJob.served``), under the same lock as the admission counts, so a
switch can never strand one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from app.metrics import Metrics
from app.serving.density import FlowJob, FlowQueue, FlowResult
from model.denoiser import Denoiser
from model.diffusion import SamplerSpec, SamplingPlan
from model.engine import FLOOR_SHARE, PRIORITIES, Cancelled, DeadlineExceeded, Engine, EngineRequest
from model.errors import InvalidParameter

FLOW_PRIORITY = PRIORITIES.index("normal")
"""The class /log_prob work is admitted in: its own admission line, beside sampling's normal class."""

log = logging.getLogger("swirl.worker")

R = TypeVar("R")

GATHER_PASSES = 8
"""With the engine on the event loop: passes of the loop a tick of only new requests waits while more keep arriving ..."""
GATHER_S = 0.002
"""... and for at most this long after the pass that first saw them."""


class Overloaded(RuntimeError):
    """Admission refused (503): the backlog of work is over its bound or would outlast the timeout."""

    def __init__(self, message: str, retry_after_s: int, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


QueueFull = Overloaded  # the name routes used before admission counted work


class DeadlineUnmeetable(RuntimeError):
    """Admission refused (504 at once): by the engine's estimate, the request alone outlasts its deadline."""

    def __init__(self, message: str, estimate_s: float) -> None:
        super().__init__(message)
        self.estimate_s = estimate_s


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
    u: float | np.ndarray | None = None  # a guided model's arc position(s), checked (model.engine.check_condition)
    guidance: float = 0.0  # its guidance weight w; a guided request costs two evaluations per step
    on_frame: Callable[[int, np.ndarray], None] | None = None  # streaming: each frame, on the engine thread
    priority: str = "normal"  # one of model.engine.PRIORITIES
    timeout_s: float | None = None  # its deadline, from admission; None: the worker's request_timeout_s
    future: Future[SampleResult] = field(default_factory=Future)
    request: EngineRequest | None = field(default=None, repr=False)
    served: ServedModel | None = field(default=None, repr=False)  # the version it runs on, set when admitted

    def cancel(self) -> None:
        """Client gone or timed out: the request's rows leave the engine at its next tick."""
        self.future.cancel()
        if self.request is not None:
            self.request.cancel()


@dataclass(frozen=True)
class ServedModel:
    """What the worker needs to run one version of a model: its engine key and its plans,
    with the name and id (sha256 of the weights) that answers report."""

    key: Hashable
    make_plan: Callable[[SamplerSpec], SamplingPlan]
    name: str = ""
    id: str = ""


class _Call:
    """A function for the worker thread to run between ticks (``Worker.call_soon``)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.fn())
        except BaseException as exc:
            self.future.set_exception(exc)


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
        self._inbox: queue.SimpleQueue[SampleJob | FlowJob | _Call | None] = queue.SimpleQueue()
        self._flows = FlowQueue()  # /log_prob jobs, in slices between ticks (app.serving.density)
        self._sampling_s = 0.0  # engine-thread seconds in ticks and in density slices since sampling
        self._flow_s = 0.0  # was last idle: the slices may take at most as long as the ticks
        self._lock = threading.Lock()
        self._pending_work = 0  # submitted, not yet finished (inbox + engine)
        self._pending_jobs = 0
        self._jobs: dict[int, SampleJob] = {}  # id(engine request) → job
        self._plans: dict[tuple[Hashable, SamplerSpec], SamplingPlan] = {}
        self._users: Counter[Hashable] = Counter()  # model version → requests admitted and not finished
        self._work_by_model: Counter[Hashable] = Counter()  # model name → points × evaluations admitted, not finished
        self._work_by_class: Counter[tuple[Hashable, int]] = Counter()  # (model name, priority class) → the same, by class
        self._model_of: dict[int, Hashable] = {}  # id(engine request) → its model's name
        self._retiring: set[Hashable] = set()  # versions replaced: removed from the engine when unused
        self.on_version_removed: Callable[[Hashable], None] | None = None  # called on this thread when a version leaves
        self._thread = threading.Thread(target=self._loop, name="swirl-engine", daemon=True)
        self._accepting = False
        # the engine on an event loop (start(loop)): its thread, whether a pass is scheduled, the end
        self._loop_driver: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._pass_scheduled = False
        self._stopped = threading.Event()
        self._admitted = 0  # jobs taken into the engine so far
        # the process's torch threads (Service.load sets them before building the worker), for the thread that drives
        # the engine: OpenMP keeps the count per thread, and a thread that ran torch before keeps the default (all cores)
        self._torch_threads = torch.get_num_threads()
        self._gathered = 0  # passes the next tick has waited for company (GATHER_PASSES)
        self._gather_started = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start driving the engine: on its own thread, or with ``loop`` on that event loop's thread
        (call it from the loop), one tick per pass of the loop, between its I/O callbacks."""
        self._accepting = True
        if loop is None:
            self._thread.start()
            return
        self._loop_driver = loop
        self._loop_thread = threading.get_ident()
        torch.set_num_threads(self._torch_threads)  # a per-thread setting in OpenMP: the loop's thread had its own
        self._kick()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what was admitted, then stop driving the engine. From any
        thread but the event loop's when the engine runs on the loop (it keeps ticking meanwhile)."""
        self._accepting = False
        if self._loop_driver is not None:
            if threading.get_ident() == self._loop_thread:  # no pass can run while this waits: drive it here
                while not self._stopped.is_set():
                    self._pass()
                return
            self._wake()
            if not self._stopped.wait(timeout):
                log.warning("engine still busy after %.0f s; abandoning %d request(s)", timeout, self._pending_jobs)
            return
        if self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("engine still busy after %.0f s; abandoning %d request(s)", timeout, self._pending_jobs)

    @property
    def running(self) -> bool:
        if self._loop_driver is not None:
            return not self._stopped.is_set()
        return self._thread.is_alive()

    @property
    def on_loop(self) -> bool:
        """Whether the engine runs on the event loop's thread (``start(loop)``)."""
        return self._loop_driver is not None

    def call_soon(self, fn: Callable[[], R]) -> Future[R]:
        """Run ``fn`` on the engine's thread between ticks (inline before the engine starts)."""
        call = _Call(fn)
        if not self.running:
            if self._accepting:  # stopped: the engine is gone with its thread
                raise WorkerStopped("the server is shutting down")
            call.run()
        else:
            self._inbox.put(call)
            self._wake()
        return call.future

    def wait_for(self, future: Future[R]) -> asyncio.Future[R]:
        """A job's result (its ``future``) as a future of the running event loop. With the engine on this loop the
        result is set as its tick ends, with nothing crossing threads; from the engine's own thread
        it crosses by ``call_soon_threadsafe`` (``asyncio.wrap_future``)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop_driver:
            return asyncio.wrap_future(future, loop=loop)
        waiter: asyncio.Future[R] = loop.create_future()

        def copy(done: Future[R]) -> None:
            if waiter.done():
                return
            if done.cancelled():
                waiter.cancel()
            elif (error := done.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(done.result())

        future.add_done_callback(copy)
        return waiter

    def warm_up(self, model: str | ServedModel | None = None, rows: int | None = None) -> None:
        """Run the common samplers on a model version once (first-call costs; at start-up
        with ``rows`` unset, also the engine's throughput estimate). Before the thread starts
        it drives the engine directly; afterwards it submits ordinary requests, so a version
        loaded beside a serving one warms up between its ticks."""
        served = model if isinstance(model, ServedModel) else self.resolve_model(model)
        n = rows or min(max(self.engine.tick_rows, 256), 8192)
        specs = (SamplerSpec("ddpm"), SamplerSpec("ddim", steps=10), SamplerSpec("dpmpp2m", steps=10))
        if self.running:
            jobs = [SampleJob(n=n, seed=0, spec=spec) for spec in specs]
            for job in jobs:
                self.submit(job, served=served, admission=False)
            for job in jobs:
                job.future.result()
            return
        for spec in specs:
            request = EngineRequest(n=n, seed=0, plan=self._plan(served, spec), model=served.key)
            with torch.inference_mode():
                self.engine.submit(request)
                self.engine.run()
            if request.error is not None:
                raise request.error
        if rows is None:
            log.info("warm: the engine does %.3g rows × steps per second", self.engine.throughput)

    # -- model versions ---------------------------------------------------------------------

    def add_version(self, served: ServedModel, denoiser: Denoiser) -> None:
        """Put a version into the engine (on the engine's thread); returns once it is there."""
        self.call_soon(lambda: self.engine.add_model(served.key, denoiser)).result()

    def switch(self, apply: Callable[[], None], retired: Hashable | None) -> None:
        """Run ``apply`` (which makes a new version current) atomically with admission, then
        retire the ``retired`` version: it leaves the engine when its last request finishes."""
        with self._lock:
            apply()
            if retired is None:
                return
            self._retiring.add(retired)
            unused = self._users[retired] == 0
        if unused:
            with contextlib.suppress(WorkerStopped):
                self.call_soon(lambda: self._remove_if_unused(retired))

    def _remove_if_unused(self, key: Hashable) -> None:
        with self._lock:
            if key not in self._retiring or self._users[key]:
                return
            self._retiring.discard(key)
            self._users.pop(key, None)
            for plan_key in [k for k in self._plans if k[0] == key]:
                del self._plans[plan_key]
        self.engine.remove_model(key)
        log.info("model version %s left the engine (%d loaded)", key, len(self.loaded_versions))
        if self.on_version_removed is not None:
            self.on_version_removed(key)

    @property
    def loaded_versions(self) -> list[Hashable]:
        return self.engine.model_keys

    # -- admission ------------------------------------------------------------------------

    def plan(self, spec: SamplerSpec, model: str | None = None) -> SamplingPlan:
        """Compile (and cache) a spec for a model; raises InvalidParameter naming the field."""
        with self._lock:
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

    def submit(self, job: SampleJob, served: ServedModel | None = None, *, admission: bool = True) -> Future[SampleResult]:
        """Admit a job on ``served`` or, by default, on the current version of ``job.model``
        (resolved under the admission lock, so that a version switch cannot strand it).
        ``admission=False`` (internal warm-ups) skips the load-shedding rules."""
        if not self._accepting:
            raise WorkerStopped("the server is shutting down")
        with self._lock:
            if served is None:
                served = self.resolve_model(job.model)
            plan = self._plan(served, job.spec)
            priority = PRIORITIES.index(job.priority)
            request = EngineRequest(
                n=job.n,
                seed=job.seed,
                plan=plan,
                model=served.key,
                trajectory_every=job.trajectory_every,
                on_frame=job.on_frame,
                u=job.u,
                guidance=job.guidance,
                priority=priority,
            )
            work = request.work
            name = served.name or served.key
            if admission:
                self._check_admission(work, name, priority, self.timeout_s(job), own_deadline=job.timeout_s is not None)
            self._account(name, priority, work)
            self._model_of[id(request)] = served.name or served.key
            self._pending_jobs += 1
            self._users[served.key] += 1
        job.served = served
        job.request = request
        request.submitted_at = time.perf_counter()
        if admission:
            request.deadline = request.submitted_at + self.timeout_s(job)
        self._inbox.put(job)
        self._wake()
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)
        return job.future

    def submit_flow(self, job: FlowJob) -> Future[FlowResult]:
        """Admit a /log_prob job by its work (points × evaluations × the divergence's cost) on its own
        line of the per-model accounting, so that sampling and density work share the engine's thread
        as two models share a tick: neither's backlog makes the other's estimated wait."""
        if not self._accepting:
            raise WorkerStopped("the server is shutting down")
        with self._lock:
            self._check_admission(job.work, job.admission_key, FLOW_PRIORITY, self.request_timeout_s, field="points")
            self._account(job.admission_key, FLOW_PRIORITY, job.work)
            self._pending_jobs += 1
        job.submitted_at = time.perf_counter()
        self._inbox.put(job)
        self._wake()
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)
        return job.future

    def timeout_s(self, job: SampleJob) -> float:
        """The job's deadline from admission: its own ``timeout_s``, never past the worker's ``request_timeout_s``."""
        return min(job.timeout_s, self.request_timeout_s) if job.timeout_s is not None else self.request_timeout_s

    def _check_admission(self, work: int, model: Hashable, priority: int, timeout_s: float, *, own_deadline: bool = False, field: str = "n") -> None:
        """Raise InvalidParameter (a request that could never run), Overloaded (503) or
        DeadlineUnmeetable (504); holds ``_lock``.

        The estimated wait counts the work the engine does before this request is done: its
        model's backlog of its own and higher priority classes (the engine runs them first;
        lower classes take at most their floor share, FLOOR_SHARE of the rows per class), plus,
        for every other model, at most as much again (the engine gives each model in flight an
        equal share of a tick), so a flood on one model, or of a lower class, does not get a
        small request refused. With one model and one class it is the whole backlog. A request
        with a deadline of its own (``own_deadline``) that it would miss even alone gets 504.
        """
        if self.max_queue_work and work > self.max_queue_work:
            hint = "lower n or use fewer steps" if field == "n" else "send fewer points"
            raise InvalidParameter(field, f"{field} × network evaluations = {work} exceeds SWIRL_MAX_QUEUE_WORK = {self.max_queue_work}; {hint}")
        backlog = self._pending_work
        rate = max(self.engine.throughput, 1.0)
        own = sum(w for (name, p), w in self._work_by_class.items() if name == model and p <= priority)
        lower = sum(1 for (name, p), w in self._work_by_class.items() if name == model and p > priority and w > 0)
        ahead = own + sum(min(other, own + work) for name, other in self._work_by_model.items() if name != model)
        wait = (ahead + work) / (rate * (1 - FLOOR_SHARE * lower))
        retry = max(1, math.ceil(ahead / rate))
        alone = work / rate
        if own_deadline and alone > timeout_s:
            raise DeadlineUnmeetable(f"the estimated time alone, {alone:.3f} s, exceeds the deadline of {timeout_s:g} s", alone)
        if self._pending_jobs >= self.max_queue:
            raise Overloaded(f"{self._pending_jobs} requests are already in flight (SWIRL_MAX_QUEUE); retry shortly", retry, "queue_full")
        if self.max_queue_work and backlog + work > self.max_queue_work:
            raise Overloaded(
                f"{backlog} points × evaluations in flight plus this request's {work} exceed SWIRL_MAX_QUEUE_WORK = {self.max_queue_work}",
                retry,
                "queue_work",
            )
        if ahead and wait > timeout_s:
            limit = "SWIRL_REQUEST_TIMEOUT_S" if timeout_s >= self.request_timeout_s else "its timeout_ms"
            raise Overloaded(f"estimated wait {wait:.3g} s exceeds {limit} = {timeout_s:g} s; retry in {retry} s", retry, "estimated_wait")

    @property
    def queue_depth(self) -> int:
        return self._pending_jobs

    @property
    def pending_work(self) -> int:
        return self._pending_work

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        torch.set_num_threads(self._torch_threads)
        with torch.inference_mode():
            while True:
                if self.engine.idle and self._flows.idle:
                    if stopping:
                        return
                    job = self._inbox.get()  # nothing in flight: sleep until work arrives
                    if job is None:
                        stopping = True
                        continue
                    self._take(job)
                stopping = self._drain() or stopping
                self._tick()

    def _drain(self) -> bool:
        """Everything that arrived since the last tick joins the next one; True if the stop sentinel came."""
        stopping = False
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return stopping
            if job is None:
                stopping = True
            else:
                self._take(job)

    def _tick(self) -> None:
        """One engine tick (when sampling is in flight), then one bounded slice of density work:
        at most half the thread's time while sampling is in flight, so a /sample waits at most
        about as long again as alone; back to back when no sampling is in flight."""
        if not self.engine.idle:
            started = time.perf_counter()
            ended = self.engine.tick()
            self._sampling_s += time.perf_counter() - started
            self.metrics.ticks.inc()
            self.metrics.tick_rows.observe(self.engine.last_tick_rows)
            if ended:
                self._resolve(ended)
        else:
            self._sampling_s = self._flow_s = 0.0
        if not self._flows.idle and self._flow_s <= self._sampling_s:
            started = time.perf_counter()
            flow = self._flows.run_slice()
            self._flow_s += time.perf_counter() - started
            if flow is not None:
                self._flow_done(flow)

    # -- the engine on the event loop (start(loop)) ----------------------------------------

    def _wake(self) -> None:
        """New work for an engine on the event loop: make sure a pass is scheduled (from any thread)."""
        loop = self._loop_driver
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._kick()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to drive
                loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if not self._pass_scheduled:
            self._pass_scheduled = True
            assert self._loop_driver is not None
            self._loop_driver.call_soon(self._pass)

    def _pass(self) -> None:
        """One pass on the event loop: admit what arrived, one tick, and again next pass while
        work is in flight; between passes the loop reads, parses and answers other requests.

        A tick that would start only new requests waits a pass while requests keep arriving
        (at most ``GATHER_PASSES`` passes and ``GATHER_S``): under load the requests parsed in
        the next few passes share its evaluation instead of each paying a tick of its own; a lone
        request waits one pass of the loop. Chains already running never wait."""
        self._pass_scheduled = False
        fresh = (self.engine.idle and self._flows.idle) or self._gathered > 0
        admitted = self._admitted
        with torch.inference_mode():
            self._drain()
            if self._gathered == 0:
                self._gather_started = time.perf_counter()
            waited = time.perf_counter() - self._gather_started
            if fresh and self._admitted > admitted and self._gathered < GATHER_PASSES and waited < GATHER_S and self._accepting:
                self._gathered += 1
                self._kick()
                return
            self._gathered = 0
            self._tick()
        if not (self.engine.idle and self._flows.idle):
            self._kick()
        elif not self._accepting and self._inbox.empty():
            self._stopped.set()

    def _take(self, item: SampleJob | FlowJob | _Call) -> None:
        if isinstance(item, _Call):
            item.run()
        elif isinstance(item, FlowJob):
            if item.cancelled or not item.future.set_running_or_notify_cancel():
                self._flow_done(item)
            else:
                self._flows.add(item)
        else:
            self._admit(item)

    def _account(self, model: Hashable, priority: int, work: int) -> None:
        """Count admitted work (negative: finished) on its model's and class's lines; holds ``_lock``."""
        self._pending_work += work
        self._work_by_model[model] += work
        self._work_by_class[model, priority] += work
        if self._work_by_model[model] <= 0:
            del self._work_by_model[model]
        if self._work_by_class[model, priority] <= 0:
            del self._work_by_class[model, priority]

    def _flow_done(self, job: FlowJob) -> None:
        with self._lock:
            self._account(job.admission_key, FLOW_PRIORITY, -job.work)
            self._pending_jobs -= 1
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)

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
        self._admitted += 1

    def _done(self, request: EngineRequest) -> None:
        with self._lock:
            self._pending_jobs -= 1
            self._users[request.model] -= 1
            model = self._model_of.pop(id(request), None)
            if model is not None:
                self._account(model, request.priority, -request.work)
            else:
                self._pending_work -= request.work
            retire = request.model in self._retiring and self._users[request.model] == 0
        if retire:
            self._remove_if_unused(request.model)
        self.metrics.queue_work.set(self._pending_work)
        self.metrics.in_flight.set(self._pending_jobs)

    def _resolve(self, ended: list[EngineRequest]) -> None:
        for request in ended:
            job = self._jobs.pop(id(request), None)
            self._done(request)
            if job is None:
                continue
            sampler = job.spec.sampler
            if isinstance(request.error, Cancelled | DeadlineExceeded):
                self.metrics.cancelled.inc()  # it left the engine mid-chain: client gone, timed out or past its deadline
            if isinstance(request.error, Cancelled) or request.cancelled:
                continue  # its handler gave up (and counted why) before the engine's deadline caught it
            if isinstance(request.error, DeadlineExceeded):
                self.metrics.rejected.labels(reason="deadline").inc()
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
