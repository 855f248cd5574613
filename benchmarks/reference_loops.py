"""Peer sampling loops on Swirl's weights, for the benchmarks only (never imported by app/ or model/).

* ``naive_article_loop``: the seed article's style: a Python loop, schedule scalars indexed
  and ``sqrt`` taken every step, the network's full forward (time embedding per row) and
  the whole (T+1, n, 2) trajectory kept.
* ``diffusers_loop``: huggingface diffusers' ``DDPMScheduler`` (``clip_sample=False``,
  σ² = β like Swirl's default) driving the same network.
"""

from __future__ import annotations

import torch

from model.net import EpsilonMLP
from model.schedule import Schedule


def naive_article_loop(net: EpsilonMLP, schedule: Schedule, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    device = generator.device
    betas = torch.tensor(schedule.betas, dtype=torch.float32, device=device)
    alphas = 1 - betas
    alpha_bars = torch.cumprod(alphas, dim=0)
    T = schedule.timesteps
    with torch.no_grad():
        x = torch.randn((n, 2), generator=generator, device=device)
        trajectory = [x]
        for t in range(T, 0, -1):
            z = torch.randn((n, 2), generator=generator, device=device) if t > 1 else torch.zeros((n, 2), device=device)
            eps = net(x, torch.full((n,), t, dtype=torch.long, device=device))
            alpha, alpha_bar, beta = alphas[t - 1], alpha_bars[t - 1], betas[t - 1]
            x = 1 / torch.sqrt(alpha) * (x - (1 - alpha) / torch.sqrt(1 - alpha_bar) * eps) + torch.sqrt(beta) * z
            trajectory.append(x)
        return x, torch.stack(trajectory)


def make_diffusers_scheduler(schedule: Schedule):  # type: ignore[no-untyped-def]
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        num_train_timesteps=schedule.timesteps,
        beta_start=float(schedule.betas[0]),
        beta_end=float(schedule.betas[-1]),
        beta_schedule="linear",
        variance_type="fixed_large",
        clip_sample=False,
    )
    scheduler.set_timesteps(schedule.timesteps)
    return scheduler


def diffusers_loop(net: EpsilonMLP, scheduler, n: int, generator: torch.Generator) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        x = torch.randn((n, 2), generator=generator, device=generator.device)
        for t in scheduler.timesteps:  # diffusers counts steps 0…T−1; Swirl's net takes 1…T
            eps = net(x, torch.full((n,), int(t) + 1, dtype=torch.long, device=generator.device))
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return x
