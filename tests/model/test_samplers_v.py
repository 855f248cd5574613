"""Samplers for v- and x0-prediction on the zero-terminal-SNR schedule, against an exact oracle.

For Gaussian data x_0 ~ N(m, s²I) the optimal denoiser is known in closed form:
x̂_0 = m + α_t s²/(α_t² s² + σ_t²) (x_t − α_t m), ε̂ = (x_t − α_t x̂_0)/σ_t, and the network
outputs v = α_t ε̂ − σ_t x̂_0 (or x̂_0 itself). With √ᾱ_T = 0, x_T ~ N(0, I) is the chain's
exact start, so every sampler must give back N(m, s²I) — including the first step from
t = T, where λ_T = −∞ and an ε-form step would divide by α_T = 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from model.denoiser import FunctionDenoiser
from model.diffusion import EpsFn, SamplerSpec, SamplingPlan, ddim_step, ddpm_step, dpmpp2m_step, make_plan
from model.engine import sample as engine_sample
from model.errors import InvalidParameter
from model.schedule import Schedule, ScheduleConfig

MEAN = torch.tensor([0.8, -0.4], dtype=torch.float64)
STD = 0.5
ZERO_SNR = Schedule.from_config(ScheduleConfig(zero_terminal_snr=True))  # T = 50, the shipped v-model's schedule
LONG_ZERO_SNR = Schedule.from_config(ScheduleConfig(timesteps=1000, zero_terminal_snr=True))


def oracle(schedule: Schedule, prediction: str) -> EpsFn:
    def out(x: torch.Tensor, t: int) -> torch.Tensor:
        a, s = schedule.alpha(t), schedule.sigma(t)
        x64 = x.double()
        x0 = MEAN + a * STD**2 / (a * a * STD**2 + s * s) * (x64 - a * MEAN)
        eps = (x64 - a * x0) / s
        return (a * eps - s * x0 if prediction == "v" else x0).float()

    return out


def run(fn: EpsFn, plan: SamplingPlan, n: int, seed: int) -> torch.Tensor:
    return engine_sample(FunctionDenoiser(fn), plan, n, seed).x0.double()


def sample(schedule: Schedule, spec: SamplerSpec, prediction: str, n: int = 10_000, seed: int = 3) -> torch.Tensor:
    return run(oracle(schedule, prediction), make_plan(schedule, spec, prediction=prediction), n, seed)


SPECS = [  # fine enough on T = 50 for the oracle to be exact within the tolerance
    SamplerSpec("ddpm", variance="beta"),
    SamplerSpec("ddim", eta=0.0),
    SamplerSpec("dpmpp2m"),
    SamplerSpec("dpmpp2m", steps=20, spacing="quadratic"),
    SamplerSpec("dpmpp2m", steps=20, spacing="logsnr"),
]


@pytest.mark.parametrize("prediction", ["v", "x0"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.sampler}-{s.steps}-{s.variance}-eta{s.eta}-{s.spacing}")
def test_every_sampler_recovers_gaussian_data_from_pure_noise_at_zero_terminal_snr(spec: SamplerSpec, prediction: str) -> None:
    x0 = sample(ZERO_SNR, spec, prediction)
    assert torch.isfinite(x0).all()
    torch.testing.assert_close(x0.mean(0), MEAN, atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "spec",
    [
        SamplerSpec("ddpm", variance="beta_tilde"),
        SamplerSpec("ddim", steps=1000, eta=1.0),
        SamplerSpec("ddim", steps=500, eta=0.5),
        SamplerSpec("dpmpp2m", steps=25),
    ],
    ids=lambda s: f"{s.sampler}-{s.steps}-{s.variance}-eta{s.eta}",
)
def test_stochastic_samplers_are_exact_on_a_fine_zero_snr_schedule(spec: SamplerSpec) -> None:
    # with T = 50 the stochastic steps are coarse (β_T = 1) and miss the data's spread by a
    # few hundredths; on T = 1000 they must be exact too
    x0 = sample(LONG_ZERO_SNR, spec, "v")
    torch.testing.assert_close(x0.mean(0), MEAN, atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.02, rtol=0)


def test_a_wrong_prediction_type_is_caught_by_the_oracle() -> None:
    # the same v-oracle read as if it predicted x0: the chain must then miss the data
    plan = make_plan(ZERO_SNR, SamplerSpec("ddim"), prediction="x0")
    x0 = run(oracle(ZERO_SNR, "v"), plan, 5000, 0)
    assert (x0.mean(0) - MEAN).abs().max() > 0.1 or (x0.std(0) - STD).abs().max() > 0.1


def test_first_step_from_T_is_finite_and_is_the_ddim_step_x_s_equals_sigma_s_x_T_minus_alpha_s_v() -> None:
    T = ZERO_SNR.timesteps
    x, v = 0.37, -1.3
    for s in (T - 1, 30, 12, 0):
        a_s, s_s = ZERO_SNR.alpha(s), ZERO_SNR.sigma(s)
        expected = s_s * x + a_s * (-v)  # x̂_0 = −v and ε̂ = x_T at t = T
        for step in (ddim_step(ZERO_SNR, T, s, 0.0, "v"), dpmpp2m_step(ZERO_SNR, T, s, None, "v")):
            assert math.isfinite(step.x_coef) and math.isfinite(step.eps_coef)
            assert step.x_coef * x + step.eps_coef * v == pytest.approx(expected, abs=1e-14)
    # the second DPM-Solver++ step after t = T has r = ∞: first order, no D_prev term
    plan = make_plan(ZERO_SNR, SamplerSpec("dpmpp2m", steps=10, spacing="quadratic"), prediction="v")
    assert plan.steps[0].prev_coef == 0.0 and plan.steps[1].prev_coef == 0.0 and plan.steps[2].prev_coef != 0.0
    assert all(math.isfinite(value) for step in plan.steps for value in vars(step).values())


def test_v_ddpm_step_is_the_posterior_mean_in_float64() -> None:
    x, v = 0.6, 0.25
    for t in (1, 2, 25, 49, 50):
        step = ddpm_step(ZERO_SNR, t, "beta_tilde", "v")
        a, s = ZERO_SNR.alpha(t), ZERO_SNR.sigma(t)
        x0_hat = a * x - s * v
        ab, ab_prev, beta = ZERO_SNR.alpha_bar(t), ZERO_SNR.alpha_bar(t - 1), ZERO_SNR.betas[t - 1]
        mean = beta * math.sqrt(ab_prev) / (1 - ab) * x0_hat + (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab) * x
        assert step.x_coef * x + step.eps_coef * v == pytest.approx(mean, abs=1e-14)
        assert step.noise_std == (0.0 if t == 1 else pytest.approx(math.sqrt(beta * (1 - ab_prev) / (1 - ab)), rel=1e-12))


def test_eps_prediction_on_a_zero_snr_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="v-prediction"):
        make_plan(ZERO_SNR, SamplerSpec("ddim", steps=5))


def exact_student(schedule: Schedule, grid: list[int]) -> EpsFn:
    """A perfect distilled student for Gaussian data: its DDIM step τ_k → τ_{k+1} lands on the
    probability-flow ODE's exact solution x_s = α_s m + √(v_s/v_t)(x_t − α_t m), v_t = α_t² s² + σ_t²."""
    nxt = dict(zip(grid, [*grid[1:], 0]))

    def out(x: torch.Tensor, t: int) -> torch.Tensor:
        s = nxt[t]
        a_t, s_t, a_s, s_s = schedule.alpha(t), schedule.sigma(t), schedule.alpha(s), schedule.sigma(s)
        var_t, var_s = a_t**2 * STD**2 + s_t**2, a_s**2 * STD**2 + s_s**2
        x64 = x.double()
        landing = a_s * MEAN + math.sqrt(var_s / var_t) * (x64 - a_t * MEAN)
        # DDIM(η=0) with v: x_s = cos(φ_t − φ_s) x_t − sin(φ_t − φ_s) v, α = cos φ, σ = sin φ
        cos, sin = a_s * a_t + s_s * s_t, a_s * s_t - s_s * a_t
        return ((cos * x64 - landing) / sin).float()

    return out


@pytest.mark.parametrize("grid", [[50], [50, 12], [50, 28, 12, 3]])
def test_student_sampler_with_an_exact_student_recovers_the_data_in_its_grid_steps(grid: list[int]) -> None:
    grids = {len(grid): grid}
    plan = make_plan(ZERO_SNR, SamplerSpec("student", steps=len(grid)), prediction="v", student_grids=grids)
    assert plan.timesteps == grid and plan.steps[-1].t_next == 0 and not plan.draws_noise
    n = 10_000
    x0 = run(exact_student(ZERO_SNR, grid), plan, n, 4)
    torch.testing.assert_close(x0.mean(0), MEAN, atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.02, rtol=0)


def test_student_sampler_refuses_untrained_step_counts_naming_the_valid_ones() -> None:
    grids = {1: [50], 2: [50, 12], 4: [50, 28, 12, 3]}
    with pytest.raises(InvalidParameter, match="1, 2, 4; got 3") as info:
        make_plan(ZERO_SNR, SamplerSpec("student", steps=3), prediction="v", student_grids=grids)
    assert info.value.field == "steps"
    with pytest.raises(InvalidParameter, match="1, 2, 4; got None"):
        make_plan(ZERO_SNR, SamplerSpec("student"), prediction="v", student_grids=grids)
    with pytest.raises(InvalidParameter, match="distilled student") as info:
        make_plan(ZERO_SNR, SamplerSpec("student", steps=1), prediction="v")
    assert info.value.field == "sampler"
