"""Guided sampling in the engine, with an exact conditional Gaussian oracle (no training involved).

The oracle: given u, x_0 ~ N(μ(u), 0.25 I); under ∅, x_0 ~ N(μ_∅, I). Its ε is exact, so
a guided chain can be recomputed in float64 from the paper's formulas alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.denoiser import FunctionDenoiser
from model.diffusion import SamplerSpec, SamplingPlan, make_plan
from model.engine import Engine, EngineRequest, check_condition, plan_work, sample
from model.errors import InvalidParameter
from model.schedule import Schedule, ScheduleConfig
from tests.model.test_engine import join_mid_chain

SCHEDULE = Schedule.from_config(ScheduleConfig())
NULL_MEAN = (0.3, -0.2)


def gaussian_eps(x: torch.Tensor, t: int, mean: torch.Tensor, var: float) -> torch.Tensor:
    """E[ε | x_t] for x_0 ~ N(mean, var·I): √(1−ᾱ)(x − √ᾱ·mean)/(ᾱ·var + 1 − ᾱ)."""
    ab = SCHEDULE.alpha_bar(t)
    return math.sqrt(1 - ab) * (x - math.sqrt(ab) * mean) / (ab * var + 1 - ab)


def conditional_mean(u: torch.Tensor) -> torch.Tensor:
    return torch.stack([2.0 * u - 1.0, 0.5 - u], dim=1)


def conditional_oracle(x: torch.Tensor, t: int, u: torch.Tensor) -> torch.Tensor:
    """Rows with u: N(μ(u), 0.25); rows with NaN (∅): N(μ_∅, 1), each computed as ``null_oracle`` does."""
    null = torch.isnan(u)
    out = torch.empty_like(x)
    out[null] = null_oracle(x[null], t)
    out[~null] = gaussian_eps(x[~null], t, conditional_mean(u[~null]).to(x.dtype), 0.25)
    return out


def null_oracle(x: torch.Tensor, t: int) -> torch.Tensor:
    return gaussian_eps(x, t, torch.tensor(NULL_MEAN, dtype=x.dtype), 1.0)


class PairRecorder:
    """The conditional oracle, recording for every network call how many rows had u and how many ∅."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []  # (t, rows with u, rows with ∅)

    def __call__(self, x: torch.Tensor, t: int, u: torch.Tensor) -> torch.Tensor:
        null = int(torch.isnan(u).sum())
        self.calls.append((t, x.shape[0] - null, null))
        return conditional_oracle(x, t, u)


def oracle_denoiser(recorder: PairRecorder | None = None) -> FunctionDenoiser:
    return FunctionDenoiser(null_oracle, conditioned_fn=recorder or conditional_oracle)


def plan(sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0) -> SamplingPlan:
    return make_plan(SCHEDULE, SamplerSpec(sampler, steps=steps, eta=eta))


def reference_guided_ddpm(n: int, seed: int, u: np.ndarray, w: float) -> np.ndarray:
    """Algorithm 2 (Ho et al. 2020) in float64 with ε̂ = (1 + w)ε(x, t, u) − wε(x, t, ∅), drawing
    x_T and then one normal per step with t > 1 from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 2), generator=generator).double()
    u64 = torch.as_tensor(u, dtype=torch.float64).expand(n)
    mean_u = conditional_mean(u64)
    for t in range(SCHEDULE.timesteps, 0, -1):
        eps = (1 + w) * gaussian_eps(x, t, mean_u, 0.25) - w * null_oracle(x, t)
        beta = 1 - SCHEDULE.alpha_bar(t) / (SCHEDULE.alpha_bar(t - 1) if t > 1 else 1.0)
        x = (x - beta / math.sqrt(1 - SCHEDULE.alpha_bar(t)) * eps) / math.sqrt(1 - beta)
        if t > 1:
            x = x + math.sqrt(beta) * torch.randn((n, 2), generator=generator).double()
    return x.numpy()


@pytest.mark.parametrize(("u", "w"), [(0.2, 0.0), (0.7, 1.5), ("per-point", 0.25)])
def test_guided_ddpm_is_algorithm_2_with_the_guided_epsilon(u: object, w: float) -> None:
    n = 300
    positions = np.linspace(0.0, 1.0, n) if u == "per-point" else np.asarray(u)
    got = sample(oracle_denoiser(), plan(), n, seed=11, u=positions if u == "per-point" else float(u), guidance=w).x0.numpy()  # type: ignore[arg-type]
    np.testing.assert_allclose(got, reference_guided_ddpm(n, 11, positions, w), atol=2e-4)


def test_guidance_sharpens_the_conditional_like_a_temperature() -> None:
    """Started from the conditional's exact marginal at T (ᾱ_T ≈ 0.6 here: x_T is not pure noise),
    DDIM-η=0 with w = 0 ends at N(μ(u), 0.25 I); the spread then falls as w grows."""
    ab_T = SCHEDULE.alpha_bar(SCHEDULE.timesteps)
    mean = conditional_mean(torch.tensor([0.4]))[0]
    z = torch.randn((4000, 2), generator=torch.Generator().manual_seed(5))
    x_T = math.sqrt(ab_T) * mean + math.sqrt(ab_T * 0.25 + 1 - ab_T) * z
    spreads = []
    for w in (0.0, 0.25, 1.0, 3.0):
        x0 = sample(oracle_denoiser(), plan("ddim", 50), 4000, seed=5, x_T=x_T, u=0.4, guidance=w).x0.numpy()
        spreads.append(float(x0.std(0).mean()))
        if w == 0.0:
            np.testing.assert_allclose(x0.mean(0), mean.numpy(), atol=0.03)
            assert spreads[0] == pytest.approx(0.5, rel=0.05)  # w = 0: the conditional itself
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] < 0.8 * spreads[0]


def test_a_guided_row_is_two_rows_of_the_ticks_one_evaluation() -> None:
    recorder = PairRecorder()
    denoiser = oracle_denoiser(recorder)
    e = Engine("cpu", tick_rows=10_000)
    e.add_model(None, denoiser)
    guided = EngineRequest(n=30, seed=1, plan=plan("ddim", 10), u=0.5, guidance=2.0)
    conditional = EngineRequest(n=20, seed=2, plan=plan("ddim", 10), u=np.linspace(0, 1, 20))
    unconditional = EngineRequest(n=10, seed=3, plan=plan("ddim", 10))
    for request in (guided, conditional, unconditional):
        e.submit(request)
    e.run()
    assert e.ticks == 10 and denoiser.calls == 10  # one network evaluation per tick …
    # … of 30 + 20 rows with u and 10 unconditional + 30 guided null copies with ∅, at one t
    assert [(rows_u, rows_null) for _, rows_u, rows_null in recorder.calls] == [(50, 40)] * 10
    assert guided.work == 2 * 30 * 10 == plan_work(guided.plan, 30, guided=True)
    assert conditional.work == 20 * 10 and unconditional.work == 10 * 10


MIXED = [
    ("ddpm", None, 0.0, 0.3, 0.5),  # guided, one u
    ("ddim", 10, 0.0, "per-point", 1.0),  # guided, u per point
    ("dpmpp2m", 10, 0.0, 0.8, 0.0),  # conditional only
    ("ddim", 7, 0.5, None, 0.0),  # unconditional
    ("dpmpp2m", 4, 0.0, "per-point", 3.0),
    ("ddpm", None, 0.0, None, 0.0),
]


def _positions(kind: object, n: int) -> float | np.ndarray | None:
    return np.random.default_rng(n).uniform(0, 1, n) if kind == "per-point" else kind  # type: ignore[return-value]


def test_guided_conditional_and_unconditional_requests_of_every_sampler_get_bitwise_their_points_alone() -> None:
    e = Engine("cpu", tick_rows=300, block_rows=64)
    e.add_model(None, oracle_denoiser())
    requests = []
    for i, (sampler, steps, eta, u, w) in enumerate(MIXED * 2):
        n = 40 + 53 * i
        requests.append(EngineRequest(n=n, seed=100 + i, plan=plan(sampler, steps, eta), u=_positions(u, n), guidance=w))
    join_mid_chain(e, requests)
    for request in requests:
        assert request.error is None and request.points is not None
        u = request.u if request.u is None or request.u.shape[0] > 1 else float(request.u[0])
        alone = sample(oracle_denoiser(), request.plan, request.n, request.seed, block_rows=64, u=u, guidance=request.guidance).x0.numpy()
        np.testing.assert_array_equal(request.points, alone)


def test_the_null_path_is_unconditional_sampling() -> None:
    """u omitted on a conditioned model: the null condition, the same points as the ∅ oracle alone."""
    for sampler, steps in (("ddpm", None), ("ddim", 10), ("dpmpp2m", 10)):
        conditioned = sample(oracle_denoiser(), plan(sampler, steps), 500, seed=3).x0
        unconditional = sample(FunctionDenoiser(null_oracle), plan(sampler, steps), 500, seed=3).x0
        torch.testing.assert_close(conditioned, unconditional, rtol=0, atol=0)


def test_a_guided_block_that_costs_two_budgets_still_runs_next_to_small_requests() -> None:
    e = Engine("cpu", tick_rows=100, block_rows=100)
    e.add_model(None, oracle_denoiser())
    big = EngineRequest(n=100, seed=1, plan=plan("ddim", 5), u=0.5, guidance=1.0)
    e.submit(big)
    for i in range(40):
        e.submit(EngineRequest(n=30, seed=10 + i, plan=plan("ddim", 5)))
        e.tick()
        if big.finished:
            break
    assert big.finished and big.error is None


@pytest.mark.parametrize(
    ("u", "guidance", "conditioned", "field", "match"),
    [
        (1.5, 0.0, True, "u", r"\[0, 1\]"),
        (-0.1, 0.0, True, "u", r"\[0, 1\]"),
        (float("nan"), 0.0, True, "u", "finite"),
        (np.array([0.1, 0.2]), 0.0, True, "u", "n = 3"),
        (0.5, 0.0, False, "u", "no condition input"),
        (None, 1.0, True, "guidance", "needs u"),
        (0.5, -0.5, True, "guidance", "guidance must be"),
        (0.5, 11.0, True, "guidance", "guidance must be"),
        (0.5, float("inf"), True, "guidance", "guidance must be"),
    ],
)
def test_bad_conditions_are_refused_naming_the_field(u: object, guidance: float, conditioned: bool, field: str, match: str) -> None:
    with pytest.raises(InvalidParameter, match=match) as caught:
        check_condition(3, u, guidance, conditioned)  # type: ignore[arg-type]
    assert caught.value.field == field
    e = Engine("cpu")
    e.add_model(None, oracle_denoiser() if conditioned else FunctionDenoiser(null_oracle))
    with pytest.raises(InvalidParameter, match=match):
        e.submit(EngineRequest(n=3, seed=0, plan=plan(), u=u, guidance=guidance))  # type: ignore[arg-type]
