"""/log_prob's work on the engine's thread: the probability-flow ODE in bounded slices between ticks.

A ``FlowJob`` holds one request's ``model.likelihood.FlowIntegration``. The worker admits it by
work like a sampling request (points × evaluations × the divergence's cost, on its own line of
the admission's per-model accounting) and its thread runs it in slices between sampling ticks:
one block of at most ``FLOW_BLOCK_ROWS`` rows through one interval of the ODE per slice, the jobs
in flight taking the slices in turn. While sampling is in flight the slices get at most as much
of the thread's time as the ticks (the worker keeps both totals), so a flood of /log_prob at most
about doubles a /sample request's time, and /sample never waits for a whole /log_prob; with no
sampling in flight the slices run back to back (benchmarks/likelihood.py measures both).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from model.likelihood import FlowIntegration

log = logging.getLogger("swirl.density")


@dataclass
class FlowResult:
    log_prob: np.ndarray  # (n,) float64, in the model's space
    queue_seconds: float  # admitted → first slice
    compute_seconds: float  # first slice → done


@dataclass(eq=False)
class FlowJob:
    integration: FlowIntegration
    model: str  # the model's name: its line in the admission's accounting is ("log_prob", name)
    future: Future[FlowResult] = field(default_factory=Future)
    cancelled: bool = False  # set from any thread; the job leaves at its next slice
    submitted_at: float = 0.0
    started_at: float | None = None

    @property
    def work(self) -> int:
        return self.integration.work

    @property
    def admission_key(self) -> tuple[str, str]:
        return ("log_prob", self.model)

    def cancel(self) -> None:
        """Client gone or timed out: the job leaves at its next slice."""
        self.cancelled = True
        self.future.cancel()


class FlowQueue:
    """The density jobs in flight, advanced one slice at a time in turn. Engine thread only."""

    def __init__(self) -> None:
        self._jobs: deque[FlowJob] = deque()

    @property
    def idle(self) -> bool:
        return not self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: FlowJob) -> None:
        self._jobs.append(job)

    def run_slice(self) -> FlowJob | None:
        """Advance the next job by one slice; returns it when it has ended (done, failed or cancelled)."""
        if not self._jobs:
            return None
        job = self._jobs.popleft()
        if job.cancelled or job.future.cancelled():
            return job
        if job.started_at is None:
            job.started_at = time.perf_counter()
        try:
            job.integration.advance()
            if not job.integration.done:
                self._jobs.append(job)
                return None
            result = FlowResult(
                log_prob=job.integration.log_prob(),
                queue_seconds=job.started_at - job.submitted_at,
                compute_seconds=time.perf_counter() - job.started_at,
            )
        except Exception as exc:  # a failing job fails alone, never the engine's thread
            log.exception("log_prob job of %d points failed", job.integration.n)
            if not job.future.done():
                job.future.set_exception(exc)
            return job
        if not job.future.done():
            job.future.set_result(result)
        return job
