"""``python -m model.distill TEACHER --steps 1,2,4 --out PREFIX``: few-step students by trajectory distillation.

1. The teacher's probability-flow ODE, solved accurately once: DPM-Solver++(2M) over
   every integer step t = T…1, from ``trajectories`` draws x_T ~ N(0, I); every x_t is kept.
2. Each student (a copy of the teacher, fine-tuned) gets its own grid T = τ_1 > … > τ_S ≥ 1
   (ρ = 2 spacing, ``subsequence(…, "quadratic")``) and learns to take one DDIM (η = 0) step
   per interval, τ_k → τ_{k+1} (τ_{S+1} = 0), landing where the teacher's trajectory is:

       loss = ‖a_k x_{τ_k} + b_k f_θ(x_{τ_k}, τ_k) − x_{τ_{k+1}}‖²,  x_· from the teacher,

   with a_k, b_k the DDIM step's coefficients for the model's prediction type. Sampling
   a student is then the ``student`` sampler: S network evaluations.

Why this and not progressive distillation (Salimans & Ho 2022): halving the step count
round by round compounds each round's error, and its teacher at each round is itself a
coarse sampler; here every student learns from the accurate ODE solution directly, and
students of any step count train independently from one set of trajectories.

Seeded and reproducible; each student is written atomically as a self-describing checkpoint
(``student`` section: teacher id, grid, method; ``training``: the distillation summary).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.denoiser import NetDenoiser
from model.device import resolve_device
from model.diffusion import SamplerSpec, ddim_step, subsequence
from model.engine import sample
from model.net import EpsilonMLP
from model.train import downsample_curve

log = logging.getLogger("swirl.distill")

METHOD = "trajectory"
GRID_SPACING = "quadratic"  # τ_k = T·(k/S)², more steps near the data


def default_train_steps(student_steps: int) -> int:
    """Optimiser steps per student: one jump from noise to data needs far more than a few short ones.

    The 1-step student is the one that needs optimiser steps (at batch 1,024: 60,000 scored 0.522,
    90,000 0.514, 120,000 0.513 from the previous teacher); the 2- and 4-step ones gain more
    from a larger batch (``default_batch_size``). Trained side by side, one process per core,
    100,000 / 30,000 / 20,000 (1 / 2 / 4 steps) take about 6 minutes here (371 s): the 1-step student
    alone on one core, the 2- and 4-step ones one after the other on the other (benchmarks/RESULTS.md, few-step sampling).
    """
    return {1: 100_000, 2: 30_000}.get(student_steps, 20_000)


def default_batch_size(student_steps: int) -> int:
    """Rows per optimiser step: 1,024 for the 1-step student (more steps beat bigger ones there),
    2,048 for the others (the 2-step student at 30,000 steps: 0.511 at 1,024, 0.508 at 2,048)."""
    return 1024 if student_steps == 1 else 2048


@dataclass(frozen=True)
class DistillConfig:
    steps: tuple[int, ...] = (1, 2, 4)  # the students' network evaluations
    trajectories: int = 200_000  # teacher ODE solutions x_T → x_0
    train_steps: tuple[tuple[int, int], ...] = ()  # (student steps, optimiser steps); default_train_steps otherwise
    batch_size: int | None = None  # rows per optimiser step for every student; None: default_batch_size
    lr: float = 1e-3  # peak learning rate (Adam), cosine decay to 0 after warm-up (5e-4 lost 0.004–0.014: RESULTS.md)
    warmup_steps: int = 200
    ema_decay: float = 0.999  # the checkpoint stores the EMA of the student's weights
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.steps or any(s < 1 for s in self.steps) or len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps must be distinct positive integers, got {self.steps}")
        if self.trajectories < 1 or (self.batch_size is not None and self.batch_size < 1) or self.lr <= 0:
            raise ValueError("trajectories, batch_size and lr must be positive")
        if any(self.batch(s) > self.trajectories for s in self.steps):
            raise ValueError(f"batch_size ({max(self.batch(s) for s in self.steps)}) must not exceed trajectories ({self.trajectories})")
        if any(k < 1 for _, k in self.train_steps):
            raise ValueError("train steps must be positive")

    def optimiser_steps(self, student_steps: int) -> int:
        return dict(self.train_steps).get(student_steps, default_train_steps(student_steps))

    def batch(self, student_steps: int) -> int:
        return self.batch_size if self.batch_size is not None else default_batch_size(student_steps)

    def cost(self, student_steps: int) -> int:
        """Rows through the network over a student's training: what orders the students for the workers."""
        return self.optimiser_steps(student_steps) * self.batch(student_steps)


@dataclass
class Trajectories:
    """The teacher's ODE solutions: ``frames[t]`` is x_t for every row, t = T…0."""

    frames: dict[int, torch.Tensor]
    seconds: float

    @property
    def count(self) -> int:
        return int(self.frames[0].shape[0])


@dataclass
class Student:
    net: EpsilonMLP  # EMA weights, eval mode
    grid: list[int]
    summary: dict[str, Any] = field(repr=False)


def teacher_spec(timesteps: int) -> SamplerSpec:
    """DPM-Solver++(2M) over every integer step: the teacher's accurate ODE solution."""
    return SamplerSpec("dpmpp2m", steps=timesteps, spacing="time")


def teacher_trajectories(teacher: Checkpoint, count: int, seed: int) -> Trajectories:
    T = teacher.schedule.timesteps
    plan = teacher.plan(teacher_spec(T))
    started = time.perf_counter()
    result = sample(NetDenoiser(teacher.net, teacher.device), plan, count, seed, trajectory_every=1)
    seconds = time.perf_counter() - started
    frames = {t: x for t, x in result.trajectory}
    log.info("teacher: %d trajectories over %d steps in %.1f s", count, T, seconds)
    return Trajectories(frames=frames, seconds=seconds)


def student_grid(teacher: Checkpoint, steps: int) -> list[int]:
    return subsequence(teacher.schedule, steps, GRID_SPACING)


class _Epochs:
    """One grid interval's (start, target) pairs in shuffled epochs: each batch is the next
    contiguous slice of this epoch's shuffled copy, so a step reads two slices instead of
    gathering rows at random from the whole trajectory set (about 9% of a step's time)."""

    def __init__(self, starts: torch.Tensor, ends: torch.Tensor, generator: torch.Generator) -> None:
        self.starts, self.ends, self.generator = starts, ends, generator
        self.cursor = len(starts)
        self.shuffled: tuple[torch.Tensor, torch.Tensor] = (starts, ends)

    def next(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cursor + count > len(self.starts):
            order = torch.randperm(len(self.starts), device=self.starts.device, generator=self.generator)
            self.shuffled = (self.starts[order], self.ends[order])
            self.cursor = 0
        start, self.cursor = self.cursor, self.cursor + count
        return self.shuffled[0][start : self.cursor], self.shuffled[1][start : self.cursor]


def _learning_rate(config: DistillConfig, step: int, total: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def landing_loss(
    net: EpsilonMLP, starts: Sequence[torch.Tensor], t_table: torch.Tensor, targets: Sequence[torch.Tensor], a: Sequence[float], b: Sequence[float]
) -> torch.Tensor:
    """Mean squared distance between the student's DDIM landing points and the teacher's x_s.

    ``starts[k]`` are rows at grid point k (``t_table[k]``), ``targets[k]`` where the teacher's
    trajectories are one interval later. Rows are grouped by grid point, so each group's
    layers take τ(t_k) as one broadcast bias (``addmm``): no per-row gather of τ and no
    scatter in the backward pass, which made an optimiser step about 1.5× as slow.
    """
    bias = net.time_bias(t_table)  # (S, depth, width), one row per grid point
    squared = []
    for k, (x, target) in enumerate(zip(starts, targets)):
        if len(x):
            landed = a[k] * x + b[k] * net.forward_with_shared_bias(x, bias[k])
            squared.append(((landed - target) ** 2).sum())
    return torch.stack(squared).sum() / sum(len(x) for x in starts)


def distill_student(teacher: Checkpoint, trajectories: Trajectories, steps: int, config: DistillConfig, progress: bool = True, position: int = 0) -> Student:
    """Fine-tune a copy of the teacher so that its ``steps``-step DDIM lands on the teacher's trajectories."""
    device = teacher.device
    grid = student_grid(teacher, steps)
    targets = [*grid[1:], 0]
    coefficients = [ddim_step(teacher.schedule, t, s, 0.0, teacher.prediction) for t, s in zip(grid, targets)]
    a = [float(torch.tensor(c.x_coef, dtype=torch.float32)) for c in coefficients]
    b = [float(torch.tensor(c.eps_coef, dtype=torch.float32)) for c in coefficients]
    t_table = torch.tensor(grid, device=device)
    starts = torch.stack([trajectories.frames[t] for t in grid]).to(device)  # (S, M, 2)
    ends = torch.stack([trajectories.frames[s] for s in targets]).to(device)

    torch.manual_seed(config.seed + steps)
    generator = torch.Generator(device=device).manual_seed(config.seed * 1000 + steps)
    net = copy.deepcopy(teacher.net).train().requires_grad_(True)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, fused=True)
    params: list[torch.Tensor] = list(net.parameters())
    ema_params: list[torch.Tensor] = list(ema.parameters())
    total = config.optimiser_steps(steps)
    rows = trajectories.count
    # every batch holds the same number of rows per grid interval (stratified), grouped by interval
    batch_size = config.batch(steps)
    per_interval = [batch_size // steps + (1 if k < batch_size % steps else 0) for k in range(steps)]
    intervals = [_Epochs(starts[k], ends[k], generator) for k in range(steps)]

    with torch.no_grad():
        probe = torch.arange(min(rows, 8192), device=device)
        initial = _grid_error(teacher.net, starts, ends, probe, t_table, a, b)
    losses = torch.empty(total)
    started = time.perf_counter()
    bar = tqdm(range(total), desc=f"student-{steps}", disable=not progress, mininterval=0.5, dynamic_ncols=True, position=position)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step, total)
        batch = [pairs.next(count) for pairs, count in zip(intervals, per_interval)]
        loss = landing_loss(net, [x for x, _ in batch], t_table, [y for _, y in batch], a, b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - config.ema_decay)
        losses[step] = loss.detach()
        if progress and step % 200 == 0:
            bar.set_postfix(loss=f"{losses[max(0, step - 199) : step + 1].mean().item():.5f}")
    bar.close()
    wall = time.perf_counter() - started
    ema.eval()
    with torch.no_grad():
        final = _grid_error(ema, starts, ends, probe, t_table, a, b)
    summary = {
        "method": METHOD,
        "steps": total,
        "student_steps": steps,
        "grid": grid,
        "initial_grid_error": round(initial, 6),
        "final_grid_error": round(final, 6),
        "final_loss": float(losses[-min(1000, total) :].mean()),
        "loss_curve": downsample_curve(losses.numpy()),
        "wall_time_s": round(wall, 2),
        "teacher_seconds": round(trajectories.seconds, 2),
        "trajectories": rows,
        "seed": config.seed,
        "torch_version": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": {k: v for k, v in asdict(config).items() if k not in ("steps", "train_steps")} | {"train_steps": total, "batch_size": batch_size},
    }
    log.info("student-%d %s: %d steps in %.1f s, grid error %.5f → %.5f", steps, grid, total, wall, initial, final)
    return Student(net=ema, grid=grid, summary=summary)


def _grid_error(
    net: EpsilonMLP,
    starts: torch.Tensor,
    ends: torch.Tensor,
    rows: torch.Tensor,
    t_table: torch.Tensor,
    a: Sequence[float],
    b: Sequence[float],
) -> float:
    """Mean over the grid's intervals of the one-step landing error on ``rows`` (teacher states in)."""
    errors = []
    for k in range(len(t_table)):
        only = [starts[j, rows] if j == k else starts[j, :0] for j in range(len(t_table))]
        targets = [ends[j, rows] if j == k else ends[j, :0] for j in range(len(t_table))]
        errors.append(float(landing_loss(net, only, t_table, targets, a, b)))
    return sum(errors) / len(errors)


def student_section(teacher: Checkpoint, student: Student, config: DistillConfig) -> dict[str, Any]:
    return {
        "method": METHOD,
        "teacher": {
            "id": teacher.sha256,
            "name": teacher.path.name,
            "sampler": f"dpmpp2m-{teacher.schedule.timesteps}",
            "prediction": teacher.prediction,
        },
        "grids": {str(len(student.grid)): student.grid},
        "grid_spacing": GRID_SPACING,
        "trajectories": config.trajectories,
    }


def student_path(prefix: Path, steps: int) -> Path:
    return prefix.with_name(f"{prefix.name}-{steps}")


def default_workers(config: DistillConfig, device: torch.device) -> int:
    """One process per CPU core, at most one per student; a GPU trains the students in turn."""
    if device.type != "cpu":
        return 1
    return max(1, min(len(config.steps), os.cpu_count() or 1))


def distill(
    teacher_path: str | Path,
    config: DistillConfig,
    out: Path,
    device: torch.device,
    progress: bool = True,
    workers: int | None = None,
    threads: int | None = None,
) -> list[Path]:
    """Train and write one checkpoint per student step count: ``{out}-{S}``. Returns their paths.

    The students are independent (each its own seed and its own slice of work), so with
    ``workers`` > 1 they train side by side in that many processes, ``threads`` torch threads
    each (default: the cores shared out), the most costly first: a student's weights do not
    depend on which process trained it or on what ran next to it, only on the thread count.
    """
    teacher = load_checkpoint(teacher_path, device)
    if teacher.student:
        raise ValueError(f"{teacher_path} is itself a student; distil from the model it was distilled from")
    for steps in config.steps:
        if steps > teacher.schedule.timesteps:
            raise ValueError(f"a student cannot take more steps than T = {teacher.schedule.timesteps}, got {steps}")
    workers = workers or default_workers(config, device)
    if workers > 1 and device.type != "cpu":
        log.warning("--workers applies to CPU training; on %s the students train in turn", device)
        workers = 1
    started = time.perf_counter()
    trajectories = teacher_trajectories(teacher, config.trajectories, config.seed)
    order = sorted(config.steps, key=lambda s: (-config.cost(s), -s))
    if workers > 1 and len(order) > 1:
        students = _train_side_by_side(teacher, trajectories, order, config, progress, min(workers, len(order)), threads)
    else:
        if threads is not None:
            torch.set_num_threads(threads)
        students = {steps: distill_student(teacher, trajectories, steps, config, progress) for steps in order}
    written: list[Path] = []
    for steps in order:
        student = students[steps]
        path = student_path(out, steps)
        save_checkpoint(
            path,
            student.net,
            teacher.schedule.config,
            teacher.normalisation,
            student.summary,
            extra={"student": student_section(teacher, student, config)},
        )
        written.append(path)
    log.info("distilled %d students in %.1f s (teacher trajectories %.1f s)", len(written), time.perf_counter() - started, trajectories.seconds)
    return written


def _train_side_by_side(
    teacher: Checkpoint, trajectories: Trajectories, order: list[int], config: DistillConfig, progress: bool, workers: int, threads: int | None
) -> dict[int, Student]:
    """Each student in its own task of a pool of ``workers`` spawned processes; the pool hands the
    next (most costly remaining) student to whichever process is free."""
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    log.info("training %d students in %d processes, %d torch thread(s) each", len(order), workers, threads)
    context = torch.multiprocessing.get_context("spawn")
    frames = torch.stack([trajectories.frames[t] for t in sorted(trajectories.frames)])  # (T+1, M, 2), t = 0…T
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(str(teacher.path), teacher.sha256, frames, trajectories.seconds, threads),
    ) as pool:
        futures = {steps: pool.submit(_worker_train, steps, config, progress, position) for position, steps in enumerate(order)}
        try:
            results = {steps: future.result() for steps, future in futures.items()}
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    students = {}
    for steps, (state, grid, summary) in results.items():
        net = copy.deepcopy(teacher.net)
        net.load_state_dict(state)
        students[steps] = Student(net=net.eval().requires_grad_(False), grid=grid, summary=summary)
    return students


_WORKER: dict[str, Any] = {}  # the teacher and its trajectories, once per worker process


def _worker_init(teacher_path: str, sha256: str, frames: torch.Tensor, seconds: float, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)
    teacher = load_checkpoint(teacher_path, "cpu")
    if teacher.sha256 != sha256:
        raise RuntimeError(f"{teacher_path} changed while the students were being distilled")
    _WORKER["teacher"] = teacher
    _WORKER["trajectories"] = Trajectories(frames={t: frames[t] for t in range(len(frames))}, seconds=seconds)


def _worker_train(steps: int, config: DistillConfig, progress: bool, position: int) -> tuple[dict[str, torch.Tensor], list[int], dict[str, Any]]:
    student = distill_student(_WORKER["teacher"], _WORKER["trajectories"], steps, config, progress, position)
    return student.net.state_dict(), student.grid, student.summary


def _parse_int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _parse_train_steps(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = [part.split("=") for part in text.split(",") if part.strip()]
        return tuple((int(a), int(b)) for a, b in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S=K pairs such as 1=60000,4=8000, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    defaults = DistillConfig()
    p = argparse.ArgumentParser(prog="python -m model.distill", description="Distil few-step students from a teacher checkpoint's ODE trajectories.")
    p.add_argument("teacher", type=Path, help="teacher checkpoint directory (e.g. checkpoints/swiss-roll-v)")
    p.add_argument("--steps", type=_parse_int_list, default=defaults.steps, help="students' network evaluations, e.g. 1,2,4")
    p.add_argument("--out", type=Path, required=True, help="prefix: student S is written to PREFIX-S")
    p.add_argument("--trajectories", type=int, default=defaults.trajectories, help="teacher ODE solutions to learn from")
    p.add_argument("--train-steps", type=_parse_train_steps, default=(), help="optimiser steps per student, e.g. 1=60000,2=8000 (default_train_steps)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per optimiser step for every student (default: 1024 for 1 step, 2048 otherwise)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=int, default=None, help="students trained side by side, one process each (default: one per CPU core, 1 on a GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: the cores shared out among the workers)")
    p.add_argument("--evaluate", action="store_true", help="run model.evaluate on each student and store its results")
    p.add_argument("--eval-samples", type=int, default=10_000)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if any(value is not None and value < 1 for value in (args.workers, args.threads)):
        log.error("--workers and --threads must be at least 1")
        return 2
    try:
        config = DistillConfig(
            steps=args.steps,
            trajectories=args.trajectories,
            train_steps=args.train_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            ema_decay=args.ema_decay,
            seed=args.seed,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    device = resolve_device(args.device)
    try:
        paths = distill(args.teacher, config, args.out, device, progress=not args.no_progress, workers=args.workers, threads=args.threads)
    except KeyboardInterrupt:
        log.warning("interrupted: students already written are complete; no partial checkpoint was written")
        return 130
    if args.evaluate:
        from model.evaluate import EvalConfig, evaluate_checkpoint

        for path in paths:
            evaluate_checkpoint(path, EvalConfig(n=args.eval_samples, n_w2=min(args.eval_samples, 2_000)), device=device)
    for path in paths:
        print(path)  # noqa: T201 - the CLI's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
