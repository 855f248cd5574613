"""``python -m model.train``: Algorithm 1 (Ho et al. 2020) with L_simple, EMA weights, a checkpoint.

    repeat
        x_0 ~ q(x_0);  t ~ Uniform{1…T};  ε ~ N(0, I)
        gradient step on ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖²
    until converged

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
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.data import DEFAULT_NOISE, Normalisation, fit_normalisation, swiss_roll
from model.device import resolve_device
from model.diffusion import q_sample
from model.net import EpsilonMLP, NetConfig
from model.prediction import PREDICTIONS, training_target
from model.schedule import Schedule, ScheduleConfig

log = logging.getLogger("swirl.train")

MAX_CURVE_POINTS = 200


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 70_000  # optimiser steps
    batch_size: int = 512  # 4× the seed article's 128: under 2× the cost per step here, 4× the samples
    lr: float = 2e-3  # peak learning rate
    lr_schedule: str = "cosine"  # "constant" or "cosine" (decay to lr_min_ratio·lr after warmup)
    lr_min_ratio: float = 0.05
    warmup_steps: int = 500
    optimizer: str = "adamw"  # "adam" or "adamw"
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 disables (it costs ~10% of a step here)
    ema_decay: float = 0.9995  # EMA of the weights; the checkpoint stores the EMA
    seed: int = 0
    n_train: int = 100_000  # swiss-roll points in the training set
    noise: float = DEFAULT_NOISE  # make_swiss_roll noise
    net: NetConfig = field(default_factory=NetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; valid ones are adam, adamw")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"Unknown lr schedule {self.lr_schedule!r}; valid ones are constant, cosine")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.schedule.zero_terminal_snr and self.net.prediction == "eps":
            raise ValueError("zero terminal SNR needs v- or x0-prediction: an ε-network cannot give x̂_0 where ᾱ_T = 0")


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
    raw = swiss_roll(config.n_train, config.noise, seed=config.seed)
    normalisation = fit_normalisation(raw, config.noise)
    data = torch.tensor(normalisation.normalise(raw), dtype=torch.float32, device=device)
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
        x0 = data[torch.randint(0, data.shape[0], (config.batch_size,), device=device, generator=generator)]
        t = torch.randint(1, T + 1, (config.batch_size,), device=device, generator=generator)
        eps = torch.randn(x0.shape, device=device, generator=generator)
        # line 5: gradient step on ‖ε − ε_θ(x_t, t)‖² (or on v / x_0: model.prediction)
        if config.net.prediction == "eps":
            target = eps
        else:
            alpha, sigma = tables.sqrt_alpha_bar[t][:, None], tables.sqrt_one_minus_alpha_bar[t][:, None]
            target = training_target(config.net.prediction, x0, eps, alpha, sigma)
        loss = F.mse_loss(net(q_sample(tables, x0, t, eps), t), target)
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
        "config": {k: v for k, v in asdict(config).items() if k not in ("net", "schedule")},
    }
    log.info("trained %d steps in %.1f s, final loss %.4f", config.steps, wall, final_loss)
    return TrainResult(net=ema.eval(), normalisation=normalisation, summary=summary)


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    net, sched = NetConfig(), ScheduleConfig()
    p = argparse.ArgumentParser(prog="python -m model.train", description="Train Swirl's ε-network and write a checkpoint.")
    p.add_argument("--out", type=Path, default=Path("checkpoints/swiss-roll"), help="checkpoint directory to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--lr-schedule", default=defaults.lr_schedule, choices=["constant", "cosine"])
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "adamw"])
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--n-train", type=int, default=defaults.n_train)
    p.add_argument("--noise", type=float, default=defaults.noise)
    p.add_argument("--hidden", type=int, default=net.hidden)
    p.add_argument("--depth", type=int, default=net.depth)
    p.add_argument("--time-embedding-dim", type=int, default=net.time_embedding_dim)
    p.add_argument("--activation", default=net.activation)
    p.add_argument("--prediction", default=net.prediction, choices=list(PREDICTIONS), help="what the network predicts")
    p.add_argument("--zero-terminal-snr", action="store_true", help="rescale the schedule so that ᾱ_T = 0 (needs v or x0)")
    p.add_argument("--schedule", default=sched.kind, help="linear or cosine")
    p.add_argument("--timesteps", type=int, default=sched.timesteps)
    p.add_argument("--beta-start", type=float, default=sched.beta_start)
    p.add_argument("--beta-end", type=float, default=sched.beta_end)
    p.add_argument("--evaluate", action="store_true", help="run model.evaluate afterwards and store its results")
    p.add_argument("--eval-samples", type=int, default=10_000)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        ema_decay=args.ema_decay,
        seed=args.seed,
        n_train=args.n_train,
        noise=args.noise,
        net=NetConfig(hidden=args.hidden, depth=args.depth, time_embedding_dim=args.time_embedding_dim, activation=args.activation, prediction=args.prediction),
        schedule=ScheduleConfig(
            kind=args.schedule, timesteps=args.timesteps, beta_start=args.beta_start, beta_end=args.beta_end, zero_terminal_snr=args.zero_terminal_snr
        ),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    device = resolve_device(args.device)
    log.info("training on %s: %s", device, config)
    try:
        result = train(config, device, progress=not args.no_progress)
        save_checkpoint(args.out, result.net, config.schedule, result.normalisation, result.summary)
    except KeyboardInterrupt:
        log.warning("interrupted: no checkpoint written (any previous one at %s is intact)", args.out)
        return 130
    if args.evaluate:
        from model.evaluate import evaluate_checkpoint

        evaluate_checkpoint(args.out, n=args.eval_samples, device=device)
    print(args.out)  # noqa: T201 - the CLI's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
