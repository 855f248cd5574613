"""The sampling engine: step-level continuous batching of reverse chains.

LLM servers (Orca, vLLM) schedule per iteration, not per request; this engine does the
same for diffusion. It holds every request in flight and advances them one reverse step
per *tick*: one network evaluation per model over all scheduled rows, each row carrying
its own t and its own step coefficients, so rows of any sampler, step count, η and
trajectory setting share an evaluation. New requests join at the next tick and leave as
soon as their chain is done; nobody waits for somebody else's chain.

Vocabulary
- request: ``n`` points of one compiled sampler plan, one seed, one model.
- block: up to ``block_rows`` consecutive rows of a request with their own noise generator.
  Blocks are what the scheduler admits, pauses and retires: a 100,000-point request enters
  a few blocks at a time as the tick's row budget allows.
- tick: one step for every scheduled block.

Per tick, for every row (coefficients from ``model.diffusion.Step``; ``out`` is the raw
network output, ε or v, with the conversion folded into the coefficients)::

    D  = d_x·x + d_eps·out                             (kept for multistep samplers)
    x' = x_coef·x + eps_coef·out + prev_coef·D_prev + noise_std·z

Conditions (a conditioned model): a request may carry an arc position u (one for every
point, or one per point) and a guidance weight w. Each block encodes its u once when it
starts (``Denoiser.encode_condition``); a tick with any conditioned rows hands the network
each row's features and w (``model.denoiser.Conditions``), and the denoiser evaluates each
guided row twice, with u and with ∅, in the tick's one batched evaluation. A guided block
therefore costs twice its rows, which the row budget, the work and admission count.
Unconditioned rows in such a tick get the null condition's features.

Reproducibility: block j of a request draws x_T first and then one (rows, 2) standard
normal per noisy step, from a generator seeded with the request's seed (j = 0) or a seed
derived from (seed, j). A request's points therefore depend only on its (seed, n, plan)
and the device: never on its company, the tick budget or when its blocks ran. The update
is elementwise per row with separate multiplies and adds (no fused ops whose rounding
could depend on the batch), so on CPU a request's points are bitwise the same alone or in
a crowd whenever the matrix kernels are (tests/model/test_engine.py checks both).

Scheduling: requests are ranked by priority class (``PRIORITIES``: high, normal, low), then
small before large (a request of at most ``small_rows`` rows, an eighth of the budget by
default, is *small*), then by ``arrival + remaining work / throughput``; blocks are taken in
that order until the row budget is reached. Small requests never rank behind a large one of
their class, however aged: so while the small rows ranked ahead of a small request fit in the
budget, it runs in every tick from the one after its arrival and ends after exactly its own
number of steps (its hard bound, tests/model/test_engine_qos.py). A block may overshoot the
budget by the small requests' rows in the tick (at most ``small_rows``), so a large request
keeps its block in every tick beside small ones and loses no ticks to them. Rows here are
network rows: a guided point counts twice. A block that does not fit in what is left of the
tick waits (and lets smaller requests behind it in) and earns the rows left unused, at least
half a budget, as credit, running once credit covers it. Small requests therefore go first,
while a long request gains priority as it ages and is never starved. A lower class
is never starved either: while a higher class keeps the tick full, each lower class with work
waiting earns ``FLOOR_SHARE`` of the budget per tick as credit and runs a block once its credit
covers it (with blocks as large as the budget, a block every eighth tick: a ninth of the rows).
A request with a ``deadline`` that passes leaves at the next tick with ``DeadlineExceeded``.
With several models in flight, the models share the budget by
deficit round robin (each earns an equal share per tick and spends it on its own blocks
in that order): a flood on one model, however aged, can neither keep another model out of
the ticks nor make them long.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from model.denoiser import Conditions, Denoiser
from model.diffusion import SamplingPlan, Step
from model.errors import InvalidParameter

log = logging.getLogger(__name__)

CPU_BLOCK_ROWS = 8192
"""Rows per noise block on CPU (one generator each). A constant, so answers never depend on settings."""
CPU_TICK_ROWS = 8192
"""Default row budget per tick on CPU: a tick then costs ~2–3 ms, so a 50-step request that
joins while a 100,000-point one runs is done in well under a quarter of a second."""
GPU_TICK_ROWS = 1 << 20
"""Default row budget per tick on a GPU, where a request is one block (one generator)."""

PRIORITIES = ("high", "normal", "low")
"""Priority classes, highest first; ``EngineRequest.priority`` is an index into this tuple."""
NORMAL = PRIORITIES.index("normal")
FLOOR_SHARE = 1 / 8
"""Per tick, the budget share a waiting lower class earns as credit while higher classes fill the ticks."""
SMALL_SHARE = 8
"""A request of at most tick_rows // SMALL_SHARE rows is small: it ranks before the large ones of its class."""

# Columns of a plan's coefficient table, one row per step.
T, X_COEF, EPS_COEF, PREV_COEF, NOISE_STD, D_X, D_EPS, T_NEXT = range(8)


class NonFiniteError(RuntimeError):
    """The chain produced NaN or inf; its points must never be returned."""


class Cancelled(Exception):
    """The request was cancelled (client gone or timed out) and left the engine."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its chain ended: it left the engine, nothing is returned."""


def coefficient_table(plan: SamplingPlan) -> np.ndarray:
    """(S, 8) float32: each step's t, x_coef, eps_coef, prev_coef, noise_std, d_x, d_eps, t_next."""
    rows = [(s.t, s.x_coef, s.eps_coef, s.prev_coef, s.noise_std, s.d_x, s.d_eps, s.t_next) for s in plan.steps]
    return np.asarray(rows, dtype=np.float32).reshape(len(plan.steps), 8)


class PlanCoefficients:
    """A plan's coefficients in every form a tick reads, built once per plan in flight, so that
    a tick does no per-step arithmetic or array reductions in Python: the float32 table (for
    per-row coefficients), the same rows as Python floats (a tick whose rows all share one
    step multiplies by scalars, which round exactly like the float32 table's columns), each
    step's t, and whether it draws noise, reads D_prev and keeps D."""

    __slots__ = ("keeps_d", "length", "noisy", "rows", "t", "table", "uses_prev")

    def __init__(self, plan: SamplingPlan) -> None:
        self.table = coefficient_table(plan)
        self.rows: list[tuple[float, ...]] = [tuple(row) for row in self.table.tolist()]
        self.length = len(self.rows)
        self.t = [int(row[T]) for row in self.rows]
        self.noisy = [row[NOISE_STD] > 0 for row in self.rows]
        self.uses_prev = [row[PREV_COEF] != 0 for row in self.rows]
        self.keeps_d = [row[D_X] != 0 or row[D_EPS] != 0 for row in self.rows]


def block_seed(seed: int, index: int) -> int:
    """Block 0 uses the request's seed itself; later blocks a 63-bit seed derived from (seed, index)."""
    if index == 0:
        return seed
    state = np.random.SeedSequence([seed & (2**64 - 1), seed >> 64, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_rows(
    x: torch.Tensor,
    out: torch.Tensor,
    coef: torch.Tensor | Sequence[torch.Tensor] | Sequence[float],
    d_prev: torch.Tensor | None,
    z: torch.Tensor | None,
    keep_d: bool,
    *,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One reverse step for rows (R, 2). ``coef`` holds each row's 8 coefficients: a tensor
    (R or 1, 8), or the 8 columns as (R, 1) tensors, or one step's 8 coefficients as floats
    shared by every row. All three carry the same float32 values and so round alike: a row's
    result does not depend on which form its tick used.

    ``inplace=True`` overwrites ``x`` (it becomes x'), ``out`` and ``z`` instead of allocating:
    the same multiplies and adds in the same order, so the same bits (tested).

    The one definition of the update, used by the eager tick and the CUDA graphs alike.
    """

    def c(i: int) -> torch.Tensor | float:
        return coef[:, i : i + 1] if isinstance(coef, torch.Tensor) else coef[i]

    d = None
    if keep_d:
        d = x * c(D_X)
        d += out * c(D_EPS)
    if inplace:
        x_next = x.mul_(c(X_COEF))
        x_next += out.mul_(c(EPS_COEF))
    else:
        x_next = x * c(X_COEF)
        x_next += out * c(EPS_COEF)
    if d_prev is not None:
        x_next += d_prev * c(PREV_COEF)
    if z is not None:
        x_next += z.mul_(c(NOISE_STD)) if inplace else z * c(NOISE_STD)
    return x_next, d


@dataclass(eq=False)
class EngineRequest:
    """One request: what to sample, and (filled in by the engine) how it ended."""

    n: int
    seed: int
    plan: SamplingPlan
    model: Hashable = None
    trajectory_every: int | None = None
    x_T: torch.Tensor | None = None  # start here instead of drawing x_T (tests, distillation)
    u: float | np.ndarray | None = None  # arc position of every point (a float) or of each (an (n,) array); None: ∅
    guidance: float = 0.0  # classifier-free guidance weight w ≥ 0 (needs u): out = (1 + w)·out(u) − w·out(∅)
    on_frame: Callable[[int, np.ndarray], None] | None = None  # each trajectory frame as it completes
    priority: int = NORMAL  # index into PRIORITIES: 0 (high) ranks first
    deadline: float | None = None  # time.perf_counter() past which the request leaves with DeadlineExceeded
    # outcome
    points: np.ndarray | None = None  # (n, 2) float32 x_0
    trajectory: list[tuple[int, np.ndarray]] = field(default_factory=list)  # kept unless on_frame is set
    error: BaseException | None = None
    cancelled: bool = False  # set from any thread; the engine drops the request at its next tick
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    # engine state
    blocks: list[_Block] = field(default_factory=list, repr=False)
    remaining: int = 0  # rows × steps still to go
    network_rows: int = 0  # n × rows_per_point, fixed at submit: what the scheduler's small-request rules count
    done_rows: int = 0
    features: torch.Tensor | None = field(default=None, repr=False)  # (1, F): the encoded u when one u serves every point
    frames: list[np.ndarray | None] = field(default_factory=list, repr=False)
    frame_rows: list[int] = field(default_factory=list, repr=False)
    frame_t: list[int] = field(default_factory=list, repr=False)
    next_frame: int = 0

    @property
    def guided(self) -> bool:
        return self.guidance != 0.0

    @property
    def rows_per_point(self) -> int:
        """Network rows per point and step: 2 for a guided request (u and ∅), else 1."""
        return 2 if self.guided else 1

    @property
    def evaluations(self) -> int:
        """Network evaluations per point: steps, twice over for a guided request."""
        return len(self.plan.steps) * self.rows_per_point

    @property
    def work(self) -> int:
        """Points × network evaluations: what admission and scheduling count."""
        return self.n * self.evaluations

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(eq=False)
class _Block:
    request: EngineRequest
    index: int
    start: int  # first row within the request
    rows: int
    coefs: PlanCoefficients  # the plan's, shared
    k: int = 0  # steps taken
    cost: int = 0  # network rows per step: rows, or 2·rows when guided
    x: torch.Tensor | None = None  # (rows, 2) once started
    features: torch.Tensor | None = None  # (rows or 1, F): the encoded u, once started (conditioned requests)
    d: torch.Tensor | None = None  # (rows, 2) data prediction kept by multistep samplers
    generator: torch.Generator | None = None

    def draw(self, out: torch.Tensor) -> None:
        """The block's next standard normals: x_T first, then one draw per noisy step."""
        assert self.generator is not None
        out.normal_(generator=self.generator)


MAX_GUIDANCE = 10.0
"""The largest guidance weight w accepted (spread shrinks like 1/√(1 + w): docs/guidance.md)."""


def check_request(n: int, plan: SamplingPlan, trajectory_every: int | None) -> None:
    if n < 1:
        raise InvalidParameter("n", f"n must be at least 1, got {n}")
    if trajectory_every is not None and not 1 <= trajectory_every <= len(plan.steps):
        raise InvalidParameter("trajectory_every", f"trajectory_every must be in 1..{len(plan.steps)} (steps), got {trajectory_every}")


def check_condition(n: int, u: float | Sequence[float] | np.ndarray | None, guidance: float, conditioned: bool) -> np.ndarray | None:
    """The one owner of the condition rules: u and guidance of a request for a model that is
    ``conditioned`` (or not). Returns u as an (n,) or (1,) float32 array, None for ∅;
    InvalidParameter naming the field otherwise."""
    if not math.isfinite(guidance) or not 0.0 <= guidance <= MAX_GUIDANCE:
        raise InvalidParameter("guidance", f"guidance must be a number in [0, {MAX_GUIDANCE:g}], got {guidance}")
    if u is None:
        if guidance != 0.0:
            raise InvalidParameter("guidance", "guidance needs u: without an arc position there is nothing to guide towards")
        return None
    if not conditioned:
        raise InvalidParameter("u", "this model has no condition input; u and guidance need a guided model (GET /models shows each model's condition)")
    values = np.asarray(u, dtype=np.float64)
    if values.ndim == 0:
        values = values.reshape(1)
    elif values.ndim != 1 or values.shape[0] != n:
        raise InvalidParameter("u", f"u must be one number or a list of n = {n} numbers, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise InvalidParameter("u", "u must be finite")
    if values.min() < 0.0 or values.max() > 1.0:
        raise InvalidParameter("u", f"u must lie in [0, 1], got values in [{values.min():g}, {values.max():g}]")
    return values.astype(np.float32)


def frame_count(steps: int, every: int) -> int:
    """Frames returned with ``trajectory_every=every``: x_T, every k-th step, and x_0."""
    return 1 + math.ceil(steps / every)


class Engine:
    """Requests in flight on one device, advanced one tick at a time. Not thread-safe:
    one thread (the service's worker, or ``sample``) calls ``submit`` and ``tick``."""

    def __init__(
        self,
        device: torch.device | str,
        *,
        tick_rows: int | None = None,
        block_rows: int | None = None,
        one_at_a_time: bool = False,
        tick_graphs: Callable[[Denoiser], TickRunner | None] | None = None,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.tick_rows = tick_rows or (GPU_TICK_ROWS if cuda else CPU_TICK_ROWS)
        self.block_rows = block_rows or (None if cuda else CPU_BLOCK_ROWS)  # None: one block per request
        self.one_at_a_time = one_at_a_time  # batching off: one request at a time, first come first served
        self.small_rows = max(1, self.tick_rows // SMALL_SHARE)  # requests of at most this many rows rank as small
        self._tick_graphs = tick_graphs
        self._models: dict[Hashable, Denoiser] = {}
        self._runners: dict[Hashable, TickRunner | None] = {}
        self._requests: list[EngineRequest] = []
        self._credit: dict[Hashable, int] = {}  # rows each model may still take (several models in flight)
        self._overflow: dict[int, int] = {}  # priority class → rows its waiting block has earned (one model in flight)
        self._tables: dict[int, PlanCoefficients] = {}  # id(plan) → coefficients, for plans in flight
        self._zeros = torch.zeros((0, 2), device=self.device)
        self._noise = torch.empty((0, 2), device=self.device)
        self.remaining_work = 0  # rows × steps still to go, over every request in flight
        self.throughput = 2.0e6 if not cuda else 2.0e8  # rows × steps per second; measured as ticks run
        self.ticks = 0
        self.last_tick_rows = 0
        self.last_tick_seconds = 0.0

    # -- models -----------------------------------------------------------------------

    def add_model(self, key: Hashable, denoiser: Denoiser) -> None:
        self._models[key] = denoiser
        self._runners.pop(key, None)

    def remove_model(self, key: Hashable) -> None:
        """Forget a model; requests still in flight on it fail."""
        self._models.pop(key, None)
        self._runners.pop(key, None)

    def has_model(self, key: Hashable) -> bool:
        return key in self._models

    @property
    def model_keys(self) -> list[Hashable]:
        return list(self._models)

    # -- requests ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    @property
    def idle(self) -> bool:
        return not self._requests

    def submit(self, request: EngineRequest) -> None:
        check_request(request.n, request.plan, request.trajectory_every)
        if request.model not in self._models:
            raise InvalidParameter("model", f"model {request.model!r} is not loaded")
        if request.x_T is not None and tuple(request.x_T.shape) != (request.n, 2):
            raise InvalidParameter("x_T", f"x_T must have shape ({request.n}, 2), got {tuple(request.x_T.shape)}")
        conditioned = getattr(self._models[request.model], "conditioned", False)
        u = check_condition(request.n, request.u, float(request.guidance), conditioned)
        request.u = u
        coefs = self._tables.get(id(request.plan))
        if coefs is None:
            coefs = self._tables[id(request.plan)] = PlanCoefficients(request.plan)
        size = self.block_rows or request.n
        request.blocks = [_Block(request, j, start, rows, coefs, cost=rows * request.rows_per_point) for j, start, rows in _block_spans(request.n, size)]
        request.remaining = request.work
        request.network_rows = request.n * request.rows_per_point
        request.submitted_at = request.submitted_at or time.perf_counter()
        if request.trajectory_every is not None:
            count = frame_count(request.evaluations, request.trajectory_every)
            request.frames = [None] * count
            request.frame_rows = [0] * count
            request.frame_t = [request.plan.steps[0].t] + [0] * (count - 1)
        self.remaining_work += request.remaining
        self._requests.append(request)

    def run(self) -> None:
        """Tick until every request in flight has finished."""
        while self._requests:
            self.tick()

    def tick(self) -> list[EngineRequest]:
        """Advance every scheduled block one step; returns the requests that ended in this tick."""
        ended = self._reap_cancelled()
        if not self._requests:
            return ended
        started = time.perf_counter()
        scheduled = self._schedule(started)
        by_model: dict[Hashable, list[_Block]] = {}
        for block in scheduled:
            by_model.setdefault(block.request.model, []).append(block)
        rows = 0
        for key, blocks in by_model.items():
            try:
                rows += self._advance(key, blocks)
            except Exception as exc:  # a failing evaluation fails its own requests, never the engine
                log.exception("tick failed for %d block(s) of model %r", len(blocks), key)
                for request in {block.request for block in blocks}:
                    self._end(request, exc)
        elapsed = time.perf_counter() - started
        self.ticks += 1
        self.last_tick_rows, self.last_tick_seconds = rows, elapsed
        if rows >= self.tick_rows // 2 and elapsed > 0:  # only busy ticks say what the device can do
            self.throughput = 0.8 * self.throughput + 0.2 * rows / elapsed
        finished = [r for r in self._requests if r.finished]
        if finished:
            self._requests = [r for r in self._requests if not r.finished]
            self._forget_tables()
        return ended + finished

    # -- internals --------------------------------------------------------------------

    def _reap_cancelled(self) -> list[EngineRequest]:
        now = time.perf_counter()
        gone = [r for r in self._requests if r.cancelled or r.model not in self._models or (r.deadline is not None and now > r.deadline)]
        for request in gone:
            self._end(request, _why_gone(request, self.has_model(request.model)))
        if gone:
            self._requests = [r for r in self._requests if not r.finished]
            self._forget_tables()
        return gone

    def _forget_tables(self) -> None:
        live = {id(r.plan) for r in self._requests}
        for key in [k for k in self._tables if k not in live]:
            del self._tables[key]

    def rank(self, request: EngineRequest) -> tuple[int, bool, float]:
        """The scheduling order: priority class, small before large, then arrival + remaining work ÷ throughput."""
        return (request.priority, request.network_rows > self.small_rows, request.submitted_at + request.remaining / max(self.throughput, 1.0))

    def _schedule(self, now: float) -> list[_Block]:
        if self.one_at_a_time:
            head = self._requests[0]
            return [b for b in _block_order(head) if b.k < b.coefs.length]
        order = self._requests if len(self._requests) == 1 else sorted(self._requests, key=self.rank)
        models = {r.model for r in order} if len(order) > 1 else ()
        if len(models) > 1:
            self._overflow.clear()
            return self._schedule_shared(order, len(models))
        self._credit.clear()
        budget, used, picked, slack = self.tick_rows, 0, list[_Block](), 0
        waiting: dict[int, int] = {}  # class → rows of its first block that waited, in rank order
        for request in order:
            credit = self._overflow.get(request.priority, 0)
            if request.network_rows <= self.small_rows:  # a block may overshoot the budget by the small rows in the tick (at most small_rows)
                slack = min(slack + request.network_rows, self.small_rows)
            if used >= budget + slack and not credit:  # the tick is full: only a class with credit may still take a block
                if request.priority not in waiting:
                    waiting[request.priority] = next(b.cost for b in _block_order(request) if b.k < b.coefs.length)
                continue
            for block in _block_order(request):
                if block.k >= block.coefs.length:
                    continue
                room = budget - used + slack
                if block.cost > room + credit and picked:
                    waiting.setdefault(request.priority, block.cost)  # too big for what is left: it waits; smaller ones may still fit
                    break
                if block.cost > room:
                    credit = self._overflow[request.priority] = 0  # taken on its credit (or alone in the tick)
                picked.append(block)
                used += block.cost
        self._earn(waiting, order[0].priority, budget - used)
        return picked

    def _earn(self, waiting: dict[int, int], top: int, unused: int) -> None:
        """Credit for the classes whose blocks waited this tick. The first to wait earns the rows
        left unused, at least half a budget, so it runs within two ticks (none when the tick was
        full: it runs as soon as the tick has room); every class below the top one in flight earns
        at least FLOOR_SHARE of the budget, so it runs even while higher classes fill every tick.
        No banking beyond a budget (or the waiting block), none for a class with nothing waiting."""
        budget = self.tick_rows
        for index, (priority, rows) in enumerate(waiting.items()):
            earned = int(budget * FLOOR_SHARE) if priority != top else 0
            if index == 0 and unused > 0:
                earned = max(earned, unused, budget // 2)
            self._overflow[priority] = min(self._overflow.get(priority, 0) + earned, max(budget, rows))
        for priority in [p for p in self._overflow if p not in waiting]:
            del self._overflow[priority]

    def _schedule_shared(self, order: list[EngineRequest], models: int) -> list[_Block]:
        """Several models in flight: deficit round robin over the models. Each tick every model
        earns an equal share of the row budget and spends its credit on its blocks in priority
        order; a block larger than the credit waits for a later tick. A model with a few small
        requests is then in every tick, while a flooded model with blocks of a whole budget
        takes part in every other tick (with two models): its rows per second stay about the
        same (its ticks cost what they carry), and the small requests' ticks stay short."""
        share = max(1, self.tick_rows // models)
        by_model: dict[Hashable, list[_Block]] = {}
        for request in order:
            blocks = by_model.setdefault(request.model, [])
            blocks.extend(b for b in request.blocks if b.k < b.coefs.length)
        picked: list[_Block] = []
        for model, blocks in by_model.items():
            credit = self._credit.get(model, 0) + share
            for block in blocks:
                if block.cost > credit:
                    break
                picked.append(block)
                credit -= block.cost
            # no banking beyond one budget (or its next block), none for a model with nothing waiting
            self._credit[model] = min(credit, max(self.tick_rows, blocks[0].cost)) if blocks else 0
        for model in [m for m in self._credit if m not in by_model]:
            del self._credit[model]
        return picked

    def _start(self, block: _Block) -> None:
        request = block.request
        if request.started_at is None:
            request.started_at = time.perf_counter()
        x = torch.empty((block.rows, 2), device=self.device)
        if request.x_T is not None:
            x.copy_(request.x_T[block.start : block.start + block.rows])
        else:
            block.generator = torch.Generator(device=self.device).manual_seed(block_seed(request.seed, block.index))
            block.draw(x)
        block.x = x
        if isinstance(request.u, np.ndarray):  # one u for all (1,): encoded once per request; one per point (n,): per block
            denoiser = self._models[request.model]
            if request.u.shape[0] == 1:
                if request.features is None:
                    request.features = denoiser.encode_condition(torch.from_numpy(request.u).to(self.device))
                block.features = request.features
            else:
                block.features = denoiser.encode_condition(torch.from_numpy(request.u[block.start : block.start + block.rows]).to(self.device))
        if request.trajectory_every is not None:
            self._record_frame(block, 0, x)
        if request.x_T is not None and any(block.coefs.noisy):
            block.generator = torch.Generator(device=self.device).manual_seed(block_seed(request.seed, block.index))

    def _runner(self, key: Hashable) -> TickRunner | None:
        if key not in self._runners:
            self._runners[key] = self._tick_graphs(self._models[key]) if self._tick_graphs is not None else None
        return self._runners[key]

    def _advance(self, key: Hashable, blocks: list[_Block]) -> int:
        denoiser = self._models[key]
        for block in blocks:
            if block.x is None:
                self._start(block)
        first = blocks[0]
        coefs, k = first.coefs, first.k
        sizes = [b.rows for b in blocks]
        rows = sum(sizes)
        x = first.x if len(blocks) == 1 else torch.cat([b.x for b in blocks])  # type: ignore[misc]
        assert x is not None
        runner = self._runner(key)
        coef: torch.Tensor | list[torch.Tensor] | tuple[float, ...]
        t: int | torch.Tensor
        if all(b.k == k and b.coefs is coefs for b in blocks):
            # every row at the same step of the same plan (one request, or a cohort): scalar coefficients
            coef, t = coefs.rows[k], coefs.t[k]
            noisy = [coefs.noisy[k]] * len(blocks)
            uses_prev, keep_d = coefs.uses_prev[k], coefs.keeps_d[k]
        else:
            # per-row coefficients, built with numpy: torch calls give up the GIL (to the event
            # loop, in the service) and each costs a wait to get it back, numpy's do not
            coef_np = np.stack([b.coefs.table[b.k] for b in blocks])
            if runner is None and self.device.type == "cpu":
                columns = np.repeat(coef_np.T, sizes, axis=1)  # (8, rows)
                coef = [torch.from_numpy(column[:, None]) for column in columns]
            else:
                coef = torch.from_numpy(np.repeat(coef_np, sizes, axis=0)).to(self.device)  # (rows, 8), what runners take
            steps_t = [b.coefs.t[b.k] for b in blocks]
            if steps_t.count(steps_t[0]) == len(steps_t):
                t = steps_t[0]
            else:
                t = torch.from_numpy(np.repeat(np.asarray(steps_t, dtype=np.int64), sizes)).to(self.device)
            noisy = [b.coefs.noisy[b.k] for b in blocks]
            uses_prev = any(b.coefs.uses_prev[b.k] for b in blocks)
            keep_d = any(b.coefs.keeps_d[b.k] for b in blocks)
        z = None
        if any(noisy):
            if self._noise.shape[0] < rows:
                self._noise = torch.empty((rows, 2), device=self.device)
            z = self._noise[:rows]  # the tick's noise buffer, reused (each tick refills and scales it)
            if not all(noisy):
                z.zero_()
            for block, is_noisy, z_block in zip(blocks, noisy, [z] if len(blocks) == 1 else z.split(sizes)):
                if is_noisy:
                    block.draw(z_block)
        d_prev = self._gather_d(blocks, rows) if uses_prev else None
        conditions = self._conditions(denoiser, blocks, sizes)
        result = None
        if runner is not None and conditions is None:  # graphs hold the unconditional tick only: conditioned ticks run eagerly
            table = coef if isinstance(coef, torch.Tensor) else torch.from_numpy(coefs.table[k : k + 1]).to(self.device)  # shared by every row
            result = runner(x, table, d_prev, z, keep_d, rows)
        if result is None:
            # a fresh tensor (the Denoiser contract): overwritten in place
            out = denoiser(x, t) if conditions is None else denoiser(x, t, conditions)
            result = step_rows(x, out, coef, d_prev, z, keep_d, inplace=True)
        x_next, d = result
        self._scatter(blocks, sizes, x_next, d)
        return sum(b.cost for b in blocks)

    def _conditions(self, denoiser: Denoiser, blocks: list[_Block], sizes: list[int]) -> Conditions | None:
        """The tick's per-row conditions: None when no block is conditioned (the unconditional tick)."""
        if all(b.features is None for b in blocks):
            return None
        null = denoiser.null_features
        shared = blocks[0].features
        if shared is not None and shared.shape[0] == 1 and all(b.features is shared for b in blocks):
            features = shared.expand(sum(sizes), -1)  # one u for every row: a stride-0 view, one bias row per layer
        else:
            parts = [(b.features if b.features is not None else null).expand(b.rows, -1) for b in blocks]
            features = parts[0] if len(parts) == 1 else torch.cat(parts)
        guided = [b.request.guided for b in blocks]
        if not any(guided):
            return Conditions(features=features)
        weights = np.repeat(np.asarray([b.request.guidance for b in blocks], dtype=np.float32), sizes)
        return Conditions(features=features, guidance=torch.from_numpy(weights).to(self.device), all_guided=all(guided))

    def _gather_d(self, blocks: list[_Block], rows: int) -> torch.Tensor:
        if len(blocks) == 1 and blocks[0].d is not None:
            return blocks[0].d
        if self._zeros.shape[0] < max(b.rows for b in blocks):
            self._zeros = torch.zeros((max(b.rows for b in blocks), 2), device=self.device)
        return torch.cat([b.d if b.d is not None else self._zeros[: b.rows] for b in blocks])

    def _scatter(self, blocks: list[_Block], sizes: list[int], x_next: torch.Tensor, d: torch.Tensor | None) -> None:
        xs: Sequence[torch.Tensor] = [x_next] if len(blocks) == 1 else x_next.split(sizes)
        ds: Sequence[torch.Tensor | None] = [None] * len(blocks) if d is None else ([d] if len(blocks) == 1 else d.split(sizes))
        for block, x_block, d_block in zip(blocks, xs, ds):
            block.x = x_block
            if d_block is not None and block.coefs.keeps_d[block.k]:  # x0-models: d_x = 0
                block.d = d_block
            block.k += 1
            request = block.request
            request.remaining -= block.cost
            self.remaining_work -= block.cost
            steps = block.coefs.length
            if request.trajectory_every is not None and (block.k % request.trajectory_every == 0 or block.k == steps):
                index = block.k // request.trajectory_every if block.k % request.trajectory_every == 0 else len(request.frames) - 1
                request.frame_t[index] = int(block.coefs.rows[block.k - 1][T_NEXT])
                self._record_frame(block, index, x_block)
            if block.k == steps:
                self._finish_block(block, x_block)

    def _record_frame(self, block: _Block, index: int, x: torch.Tensor) -> None:
        request = block.request
        frame = request.frames[index]
        if frame is None:
            frame = request.frames[index] = np.empty((request.n, 2), dtype=np.float32)
        frame[block.start : block.start + block.rows] = x.detach().cpu().numpy()
        request.frame_rows[index] += block.rows
        while request.next_frame < len(request.frames) and request.frame_rows[request.next_frame] == request.n:
            i = request.next_frame
            done = request.frames[i]
            assert done is not None
            if request.on_frame is not None:
                if np.isfinite(done).all():
                    request.on_frame(request.frame_t[i], done)
                request.frames[i] = None  # streamed: not kept
            else:
                request.trajectory.append((request.frame_t[i], done))
            request.next_frame += 1

    def _finish_block(self, block: _Block, x: torch.Tensor) -> None:
        request = block.request
        if request.points is None:
            request.points = np.empty((request.n, 2), dtype=np.float32)
        request.points[block.start : block.start + block.rows] = x.detach().cpu().numpy()
        block.x = block.d = block.features = None
        block.generator = None
        request.done_rows += block.rows
        if request.done_rows == request.n:
            if np.isfinite(request.points).all():
                self._end(request, None)
            else:
                self._end(request, NonFiniteError("the reverse chain produced non-finite values (NaN or inf)"))

    def _end(self, request: EngineRequest, error: BaseException | None) -> None:
        if request.finished:
            return
        if error is not None:
            request.error = error
            request.points = None
            request.trajectory = []
        self.remaining_work -= request.remaining
        request.remaining = 0
        for block in request.blocks:
            block.x = block.d = block.features = None
            block.generator = None
        request.frames = []
        request.features = None
        request.finished_at = time.perf_counter()


def _block_spans(n: int, size: int) -> list[tuple[int, int, int]]:
    """(index, first row, rows) of each block of an n-row request cut into blocks of ``size``."""
    return [(j, start, min(size, n - start)) for j, start in enumerate(range(0, n, size))]


def _why_gone(request: EngineRequest, model_loaded: bool) -> BaseException:
    if request.cancelled:
        return Cancelled("cancelled")
    if not model_loaded:
        return RuntimeError(f"model {request.model!r} was unloaded")
    return DeadlineExceeded(f"the deadline passed with {request.remaining} of its {request.work} points × evaluations still to go")


def _block_order(request: EngineRequest) -> list[_Block]:
    """A request's blocks in the order the tick budget takes them. With a trajectory, the least
    advanced first (blocks move in lockstep): a frame is complete once every block has reached it,
    so frames complete one after another through the chain (a stream's x_T leaves after the first
    ceil(n / tick_rows) ticks, not when the last block starts) and at most a frame or two are held
    at once. The order changes no point: each block draws from its own generator."""
    if request.trajectory_every is None:
        return request.blocks
    return sorted(request.blocks, key=lambda block: block.k)


TickRunner = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None", "torch.Tensor | None", bool, int],
    "tuple[torch.Tensor, torch.Tensor | None] | None",
]
"""A replacement for the eager tick (the CUDA-graph one): (x, coef, d_prev, z, keep_d, rows) → (x', D),
or None to let the eager tick run."""


@dataclass
class ChainResult:
    x0: torch.Tensor  # (n, 2) float32 samples, on the CPU
    trajectory: list[tuple[int, torch.Tensor]]  # [(t, (n, 2))] from x_T to x_0, empty unless asked


def sample(
    denoiser: Denoiser,
    plan: SamplingPlan,
    n: int,
    seed: int = 0,
    *,
    trajectory_every: int | None = None,
    x_T: torch.Tensor | None = None,
    block_rows: int | None = None,
    graphs: bool = False,
    u: float | np.ndarray | None = None,
    guidance: float = 0.0,
) -> ChainResult:
    """Sample one request through the engine, alone: the entry point for evaluation, the
    benchmarks, distillation and tests (the service runs the same engine in its worker).

    ``graphs=True`` on a GPU replays the whole chain as one CUDA graph (``model.graphs``),
    drawing the same noise in the same order as the engine (unconditional chains only).
    ``u`` and ``guidance``: a conditioned model's arc position(s) and guidance weight.
    """
    if graphs and denoiser.device.type == "cuda" and trajectory_every is None and x_T is None and u is None:
        from model.graphs import chain_graphs

        return ChainResult(x0=chain_graphs(denoiser).run(plan, n, seed).cpu(), trajectory=[])
    engine = Engine(denoiser.device, tick_rows=max(n, 1) * (2 if guidance else 1), block_rows=block_rows)
    engine.add_model(None, denoiser)
    request = EngineRequest(n=n, seed=seed, plan=plan, trajectory_every=trajectory_every, x_T=x_T, u=u, guidance=guidance)
    with torch.inference_mode():
        engine.submit(request)
        engine.run()
    if request.error is not None:
        raise request.error
    assert request.points is not None
    return ChainResult(
        x0=torch.from_numpy(request.points),
        trajectory=[(t, torch.from_numpy(frame)) for t, frame in request.trajectory],
    )


def plan_work(plan: SamplingPlan, n: int, guided: bool = False) -> int:
    """Points × network evaluations of a request: a guided one evaluates every step twice."""
    return n * len(plan.steps) * (2 if guided else 1)


__all__ = [
    "MAX_GUIDANCE",
    "PRIORITIES",
    "Cancelled",
    "ChainResult",
    "DeadlineExceeded",
    "Engine",
    "EngineRequest",
    "NonFiniteError",
    "PlanCoefficients",
    "Step",
    "block_seed",
    "check_condition",
    "coefficient_table",
    "sample",
    "step_rows",
]
