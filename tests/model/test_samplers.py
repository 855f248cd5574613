"""Samplers: step coefficients against float64 formulas, and whole chains against an exact oracle.

For Gaussian data x_0 ~ N(m, s²I) the optimal ε-predictor is known in closed form:
ε*(x_t, t) = √(1−ᾱ_t)(x_t − √ᾱ_t m) / (ᾱ_t s² + 1 − ᾱ_t). Sampling with it must give
back N(m, s²I): this checks each sampler with no training involved.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.denoiser import FunctionDenoiser
from model.diffusion import (
    EpsFn,
    SamplerSpec,
    SamplingPlan,
    ddim_step,
    ddpm_step,
    make_plan,
    subsequence,
)
from model.engine import ChainResult, Engine, EngineRequest, NonFiniteError
from model.engine import sample as engine_sample
from model.schedule import Schedule, ScheduleConfig

MEAN = torch.tensor([0.8, -0.4])
STD = 0.5


def oracle_eps(schedule: Schedule, mean: torch.Tensor = MEAN, std: float = STD) -> EpsFn:
    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        ab = schedule.alpha_bar(t)
        return math.sqrt(1 - ab) * (x - math.sqrt(ab) * mean) / (ab * std**2 + 1 - ab)

    return eps


def run(eps: EpsFn, plan: SamplingPlan, n: int, seed: int = 0, **kwargs: object) -> ChainResult:
    return engine_sample(FunctionDenoiser(eps), plan, n, seed, **kwargs)  # type: ignore[arg-type]


def sample(schedule: Schedule, spec: SamplerSpec, n: int, seed: int, x_T: torch.Tensor | None = None) -> torch.Tensor:
    return run(oracle_eps(schedule), make_plan(schedule, spec), n, seed, x_T=x_T).x0


LONG = Schedule.from_config(ScheduleConfig(timesteps=1000))  # ᾱ_T ≈ 4e-5: x_T is N(0, I)
DEFAULT = Schedule.from_config(ScheduleConfig())


@pytest.mark.parametrize(
    "spec",
    [
        SamplerSpec("ddpm", variance="beta"),
        SamplerSpec("ddpm", variance="beta_tilde"),
        SamplerSpec("ddim", eta=0.0),
        SamplerSpec("ddim", eta=1.0),
        SamplerSpec("ddim", steps=100, eta=0.0),
        SamplerSpec("dpmpp2m", steps=20),
        SamplerSpec("ddim", steps=100, spacing="logsnr"),
    ],
    ids=lambda s: f"{s.sampler}-{s.steps}-{s.variance}-eta{s.eta}",
)
def test_chain_with_exact_denoiser_recovers_gaussian_data(spec: SamplerSpec) -> None:
    x0 = sample(LONG, spec, 20_000, seed=3).double()
    torch.testing.assert_close(x0.mean(0), MEAN.double(), atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize("spec", [SamplerSpec("ddim", eta=0.0), SamplerSpec("ddpm", variance="beta_tilde")])
def test_default_schedule_from_exact_x_T_recovers_gaussian_data(spec: SamplerSpec) -> None:
    # With ᾱ_T ≈ 0.6, x_T must be drawn from q(x_T) itself for the oracle to be exact.
    n, ab = 20_000, DEFAULT.alpha_bar_final
    g = torch.Generator().manual_seed(11)
    x_T = math.sqrt(ab) * MEAN + math.sqrt(ab * STD**2 + 1 - ab) * torch.randn((n, 2), generator=g)
    x0 = sample(DEFAULT, spec, n, seed=5, x_T=x_T).double()
    torch.testing.assert_close(x0.mean(0), MEAN.double(), atol=0.02, rtol=0)
    torch.testing.assert_close(x0.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.02, rtol=0)


def test_ddpm_step_matches_algorithm_2() -> None:
    for t in (1, 2, 30, 50):
        for variance in ("beta", "beta_tilde"):
            step = ddpm_step(DEFAULT, t, variance)
            i = t - 1
            a, b, ab = DEFAULT.alphas[i], DEFAULT.betas[i], DEFAULT.alpha_bars[i]
            x, e = 0.3, -1.2  # x_{t-1} = (x - b/sqrt(1-ab) e)/sqrt(a)  (+ σ z)
            assert step.x_coef * x + step.eps_coef * e == pytest.approx((x - b / math.sqrt(1 - ab) * e) / math.sqrt(a), rel=1e-12)
            sigma2 = b if variance == "beta" else b * (1 - DEFAULT.alpha_bars_prev[i]) / (1 - ab)
            assert step.noise_std == (0.0 if t == 1 else pytest.approx(math.sqrt(sigma2), rel=1e-12))
            assert (step.t, step.t_next) == (t, t - 1)


def test_ddim_step_matches_song_et_al_eq_12() -> None:
    for t, s, eta in [(50, 45, 0.0), (50, 45, 1.0), (10, 0, 0.5), (2, 1, 0.3)]:
        step = ddim_step(DEFAULT, t, s, eta)
        ab_t, ab_s = DEFAULT.alpha_bar(t), DEFAULT.alpha_bar(s)
        x, e = -0.7, 0.9
        x0_hat = (x - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
        sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        expected = math.sqrt(ab_s) * x0_hat + math.sqrt(1 - ab_s - sigma**2) * e
        assert step.x_coef * x + step.eps_coef * e == pytest.approx(expected, rel=1e-12, abs=1e-14)
        assert step.noise_std == pytest.approx(sigma, abs=1e-15)


def test_ddim_with_eta_1_on_all_steps_is_ddpm_with_posterior_variance() -> None:
    ddim = make_plan(DEFAULT, SamplerSpec("ddim", eta=1.0))
    ddpm = make_plan(DEFAULT, SamplerSpec("ddpm", variance="beta_tilde"))
    for a, b in zip(ddim.steps, ddpm.steps):
        assert (a.t, a.t_next) == (b.t, b.t_next)
        assert a.x_coef == pytest.approx(b.x_coef, rel=1e-10)
        assert a.eps_coef == pytest.approx(b.eps_coef, rel=1e-9)
        assert a.noise_std == pytest.approx(b.noise_std, rel=1e-8, abs=1e-12)


def test_ddpm_makes_exactly_T_evaluations_from_T_down_to_1_and_no_noise_on_the_last_step() -> None:
    seen: list[int] = []
    inner = oracle_eps(DEFAULT)

    def counting(x: torch.Tensor, t: int) -> torch.Tensor:
        seen.append(t)
        return inner(x, t)

    plan = make_plan(DEFAULT, SamplerSpec("ddpm"))
    run(counting, plan, 10)
    assert seen == list(range(50, 0, -1))
    assert plan.steps[-1].noise_std == 0.0 and all(s.noise_std > 0 for s in plan.steps[:-1])
    with pytest.raises(ValueError, match="50"):
        make_plan(DEFAULT, SamplerSpec("ddpm", steps=10))


@pytest.mark.parametrize("spacing", ["time", "logsnr"])
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 25, 49, 50])
def test_subsequence_starts_at_T_ends_at_1_and_is_strictly_decreasing(steps: int, spacing: str) -> None:
    taus = subsequence(DEFAULT, steps, spacing)
    assert len(taus) == steps and taus[0] == 50
    assert taus[-1] == (1 if steps > 1 else 50)
    assert all(a > b for a, b in zip(taus, taus[1:]))
    plan = make_plan(DEFAULT, SamplerSpec("ddim", steps=steps, spacing=spacing))
    assert plan.steps[-1].t_next == 0 and plan.timesteps == taus


def test_logsnr_spacing_is_even_in_log_snr() -> None:
    taus = subsequence(LONG, 20, "logsnr")
    lam = [0.5 * math.log(LONG.alpha_bar(t) / (1 - LONG.alpha_bar(t))) for t in taus]
    gaps = np.diff(lam)
    assert np.all(gaps > 0)
    assert gaps.max() / gaps.min() < 1.5  # nearly even (t is an integer)


def test_dpm_solver_matches_ddim_on_its_first_order_steps() -> None:
    dpm = make_plan(DEFAULT, SamplerSpec("dpmpp2m", steps=10, spacing="time"))
    ddim = make_plan(DEFAULT, SamplerSpec("ddim", steps=10, spacing="time"))
    first_dpm, first_ddim = dpm.steps[0], ddim.steps[0]  # first order: DPM-Solver++(1) is DDIM
    assert first_dpm.x_coef == pytest.approx(first_ddim.x_coef, rel=1e-10)
    assert first_dpm.eps_coef == pytest.approx(first_ddim.eps_coef, rel=1e-10)
    assert dpm.steps[-1].t_next == 0 and dpm.steps[-1].prev_coef == 0.0


def test_same_generator_seed_same_points_and_other_seed_other_points() -> None:
    spec = SamplerSpec("ddpm")
    a, b, c = (sample(DEFAULT, spec, 500, seed) for seed in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_batched_requests_get_the_same_points_as_alone() -> None:
    plan = make_plan(DEFAULT, SamplerSpec("ddpm"))
    eps = oracle_eps(DEFAULT)
    alone = [run(eps, plan, n, s).x0 for s, n in [(1, 5), (2, 9), (3, 4)]]
    engine = Engine("cpu")
    engine.add_model(None, FunctionDenoiser(eps))
    requests = [EngineRequest(n=n, seed=s, plan=plan) for s, n in [(1, 5), (2, 9), (3, 4)]]
    for request in requests:
        engine.submit(request)
    engine.run()
    together = torch.cat([torch.from_numpy(r.points) for r in requests if r.points is not None])
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-6, rtol=0)


def test_trajectory_every_k_runs_from_x_T_to_x_0() -> None:
    plan = make_plan(DEFAULT, SamplerSpec("ddpm"))
    result = run(oracle_eps(DEFAULT), plan, 64, 0, trajectory_every=20)
    assert [t for t, _ in result.trajectory] == [50, 30, 10, 0]
    assert torch.equal(result.trajectory[-1][1], result.x0)
    start = torch.empty(64, 2).normal_(generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.trajectory[0][1], start)
    assert run(oracle_eps(DEFAULT), plan, 4).trajectory == []


def test_non_finite_output_raises() -> None:
    def broken(x: torch.Tensor, t: int) -> torch.Tensor:
        return torch.full_like(x, float("nan"))

    with pytest.raises(NonFiniteError):
        run(broken, make_plan(DEFAULT, SamplerSpec("ddim", steps=3)), 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"sampler": "euler"}, "ddpm, ddim, dpmpp2m"), ({"eta": 1.5}, "eta"), ({"eta": float("nan")}, "eta"), ({"steps": 0}, "steps")],
)
def test_bad_sampler_specs_are_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplerSpec(**kwargs)  # type: ignore[arg-type]


def test_memory_stays_linear_in_n_without_trajectory() -> None:
    # Without trajectory_every, nothing of size T·n is kept: the result holds only x_0.
    plan = make_plan(DEFAULT, SamplerSpec("ddpm"))
    result = run(oracle_eps(DEFAULT), plan, 1000)
    assert result.trajectory == [] and result.x0.shape == (1000, 2)
    assert np.isfinite(result.x0.numpy()).all()


def test_chunked_network_evaluation_gives_the_same_chain() -> None:
    from model.denoiser import NetDenoiser
    from model.net import EpsilonMLP, NetConfig

    torch.manual_seed(0)
    net = EpsilonMLP(NetConfig(hidden=16, depth=2), 50).eval()
    plan = make_plan(DEFAULT, SamplerSpec("ddim", steps=5))
    whole = engine_sample(NetDenoiser(net, "cpu", chunk_rows=10**9), plan, 1000, 1).x0
    chunked = engine_sample(NetDenoiser(net, "cpu", chunk_rows=96), plan, 1000, 1).x0
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
