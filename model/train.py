"""``python -m model.train``: Algorithm 1 (Ho et al. 2020) with L_simple, EMA weights, a checkpoint.

    repeat
        x_0 ~ q(x_0);  t ~ Uniform{1…T};  ε ~ N(0, I)
        gradient step on ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖²
    until converged

A conditioned network (``--condition arc_position``) also sees each point's arc position u,
replaced by the null condition ∅ with probability ``condition_dropout`` (classifier-free
guidance, Ho & Salimans 2022), so the one network learns ε(x, t, u) and ε(x, t, ∅).

Seeded and reproducible (one torch.Generator drives batches, steps and noise). The EMA
weights are what the checkpoint stores. Ctrl-C stops without writing anything.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from model.checkpoint import condition_record, save_checkpoint
from model.cli import add_dataclass_options, build_dataclass
from model.data import DEFAULT_NOISE, Normalisation, fit_normalisation, swiss_roll_with_position
from model.device import resolve_device
from model.diffusion import q_sample
from model.net import NULL_CONDITION, EpsilonMLP, NetConfig
from model.prediction import training_target
from model.schedule import Schedule, ScheduleConfig

log = logging.getLogger("swirl.train")

MAX_CURVE_POINTS = 200
DEFAULT_THREADS = 1  # fastest on this project's busy 2-core machine: benchmarks/train_threads.py


@dataclass(frozen=True)
class TrainConfig:
    """The training hyperparameters; ``python -m model.train`` derives its options from these fields."""

    steps: int = 70_000  # optimiser steps
    batch_size: int = 512  # samples per step (4× the seed article's 128: under 2× the cost per step here)
    lr: float = 2e-3  # peak learning rate (the v-model swiss-roll-v: 1e-3, benchmarks/RESULTS.md, few-step sampling)
    lr_schedule: Literal["constant", "cosine"] = "cosine"  # after warm-up: constant, or cosine decay to lr_min_ratio·lr
    lr_min_ratio: float = 0.05  # where the cosine decay ends, as a fraction of lr
    warmup_steps: int = 500  # linear learning-rate warm-up from 0
    optimizer: Literal["adam", "adamw"] = "adamw"  # Adam, or AdamW (decoupled weight decay)
    weight_decay: float = 0.0  # the optimiser's weight decay
    grad_clip: float = 0.0  # max global grad norm; 0 disables (it costs ~10% of a step here)
    ema_decay: float = 0.9995  # EMA of the weights; the checkpoint stores the EMA
    seed: int = 0  # seeds the data, the initialisation, the batches and the noise
    n_train: int = 100_000  # swiss-roll points in the training set
    noise: float = DEFAULT_NOISE  # make_swiss_roll noise
    condition_dropout: float = 0.1  # a conditioned net only: probability that a point's u is replaced by the null condition
    net: NetConfig = field(default_factory=NetConfig)  # the ε-network
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # the noise schedule

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; valid ones are adam, adamw")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"Unknown lr schedule {self.lr_schedule!r}; valid ones are constant, cosine")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.schedule.zero_terminal_snr and self.net.prediction == "eps":
            raise ValueError("zero terminal SNR needs v- or x0-prediction: an ε-network cannot give x̂_0 where ᾱ_T = 0")
        if not 0.0 < self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must lie strictly between 0 and 1, got {self.condition_dropout}")


@dataclass
class TrainResult:
    net: EpsilonMLP  # the EMA network, on the training device
    normalisation: Normalisation
    summary: dict[str, Any]


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant or cosine decay to ``lr_min_ratio·lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr_min_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def downsample_curve(losses: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """[[step, mean loss over the window], ...] with at most ``max_points`` rows."""
    windows = np.array_split(np.arange(len(losses)), min(max_points, len(losses)))
    return [[int(w[-1]) + 1, float(losses[w].mean())] for w in windows if len(w)]


def train(config: TrainConfig, device: torch.device, progress: bool = True) -> TrainResult:
    torch.manual_seed(config.seed)  # parameter initialisation
    generator = torch.Generator(device=device).manual_seed(config.seed)
    raw, positions = swiss_roll_with_position(config.n_train, config.noise, seed=config.seed)
    normalisation = fit_normalisation(raw, config.noise)
    data = torch.tensor(normalisation.normalise(raw), dtype=torch.float32, device=device)
    conditioned = config.net.conditioned
    arc_positions = torch.tensor(positions, dtype=torch.float32, device=device)  # (n_train,) u of each point
    schedule = Schedule.from_config(config.schedule)
    tables = schedule.to(device)
    T = schedule.timesteps

    net = EpsilonMLP(config.net, T).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    params: list[torch.Tensor] = list(net.parameters())
    ema_params: list[torch.Tensor] = list(ema.parameters())

    losses = torch.empty(config.steps)
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc="train", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        # Algorithm 1, lines 2-4: x_0 ~ q(x_0), t ~ U{1..T}, ε ~ N(0, I)
        index = torch.randint(0, data.shape[0], (config.batch_size,), device=device, generator=generator)
        x0 = data[index]
        t = torch.randint(1, T + 1, (config.batch_size,), device=device, generator=generator)
        eps = torch.randn(x0.shape, device=device, generator=generator)
        u = None
        if conditioned:  # u of each point, replaced by ∅ (NaN) with probability condition_dropout
            dropped = torch.rand(config.batch_size, device=device, generator=generator) < config.condition_dropout
            u = arc_positions[index].masked_fill(dropped, NULL_CONDITION)
        # line 5: gradient step on ‖ε − ε_θ(x_t, t)‖² (or on v / x_0: model.prediction)
        if config.net.prediction == "eps":
            target = eps
        else:
            alpha, sigma = tables.sqrt_alpha_bar[t][:, None], tables.sqrt_one_minus_alpha_bar[t][:, None]
            target = training_target(config.net.prediction, x0, eps, alpha, sigma)
        loss = F.mse_loss(net(q_sample(tables, x0, t, eps), t, u), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - config.ema_decay)
        losses[step] = loss.detach()
        if progress and step % 200 == 0:
            bar.set_postfix(loss=f"{losses[max(0, step - 199) : step + 1].mean().item():.4f}")
    bar.close()
    wall = time.perf_counter() - started
    curve = downsample_curve(losses.numpy())
    final_loss = float(losses[-min(1000, config.steps) :].mean())
    summary = {
        "steps": config.steps,
        "final_loss": final_loss,
        "loss_curve": curve,
        "wall_time_s": round(wall, 2),
        "seed": config.seed,
        "torch_version": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": {k: v for k, v in asdict(config).items() if k not in ("net", "schedule") and (conditioned or k != "condition_dropout")},
    }
    log.info("trained %d steps in %.1f s, final loss %.4f", config.steps, wall, final_loss)
    return TrainResult(net=ema.eval(), normalisation=normalisation, summary=summary)


@dataclass(frozen=True)
class RunOptions:
    """How to run training (not what is trained): the command line's other options."""

    out: Path | None = None  # checkpoint directory to write; default: a new folder checkpoints/run-<UTC date-time>
    overwrite: bool = False  # replace the checkpoint already at --out (make train uses it for checkpoints/swiss-roll)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else CPU
    threads: int = DEFAULT_THREADS  # CPU threads for torch; 0 keeps torch's default (one per core)
    evaluate: bool = False  # run model.evaluate on the new checkpoint and store its results in it
    progress: bool = True  # show the progress bar with the loss


# Flags whose bare field name would be unclear; fields that are not options (the data is 2D).
FLAG_RENAMES = {"schedule.kind": "schedule"}
NOT_OPTIONS = frozenset({"net.data_dim"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.train",
        description="Train Swirl's ε-network (Algorithm 1 of Ho et al. 2020) and write a checkpoint.",
        epilog=f"Threads: the default of {DEFAULT_THREADS} was the fastest here (benchmarks/train_threads.py, benchmarks/RESULTS.md); "
        "OpenMP threads that share busy cores spin and slow each other down.",
    )
    add_dataclass_options(parser, RunOptions, title="where and how to run")
    add_dataclass_options(parser, TrainConfig, title="training", rename=FLAG_RENAMES, skip=NOT_OPTIONS)
    return parser


def fresh_run_directory(root: Path = Path("checkpoints")) -> Path:
    """A checkpoint folder that does not exist yet: checkpoints/run-20260128-054400[-2…]."""
    stem = root / time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
    candidate, suffix = stem, 1
    while candidate.exists():
        suffix += 1
        candidate = stem.with_name(f"{stem.name}-{suffix}")
    return candidate


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse, before any training, to replace an existing checkpoint unless asked to."""
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists; pass --overwrite to replace it (atomically, once training has finished)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run = build_dataclass(RunOptions, args)
        config = build_dataclass(TrainConfig, args)
        out = run.out if run.out is not None else fresh_run_directory()
        check_output(out, run.overwrite)
        if run.threads < 0:
            raise ValueError(f"--threads must be 0 (torch's default) or positive, got {run.threads}")
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if run.threads:
        torch.set_num_threads(run.threads)
    device = resolve_device(run.device)
    log.info("training on %s with %d CPU thread(s) into %s: %s", device, torch.get_num_threads(), out, config)
    try:
        result = train(config, device, progress=run.progress)
        extra = {"condition": condition_record(config.net, config.condition_dropout)} if config.net.conditioned else None
        save_checkpoint(out, result.net, config.schedule, result.normalisation, result.summary, extra=extra)
    except KeyboardInterrupt:
        log.warning("interrupted: no checkpoint written (any previous one at %s is intact)", out)
        return 130
    if run.evaluate:
        from model.evaluate import evaluate_checkpoint

        evaluate_checkpoint(out, device=device)
    print(out)  # noqa: T201 - the CLI's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
