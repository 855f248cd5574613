"""log p by the probability-flow ODE (model/likelihood.py) against closed forms and the true roll."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.data import Normalisation, model_log_density, swiss_roll
from model.denoiser import DifferentiableNetDenoiser, FunctionDenoiser
from model.likelihood import FlowGrid, FlowIntegration, log_prob, log_prob_in_space, velocity
from model.schedule import Schedule, ScheduleConfig
from tests.conftest import SHIPPED_CHECKPOINT

torch.set_num_threads(1)

MU = np.array([0.3, -0.2])
S = 0.5  # data N(μ, s² I)


def gaussian_oracle(schedule: Schedule, prediction: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The exact network output at step t for data N(μ, s² I), float64 formulas:
    ε = σ (x − α μ)/(α² s² + σ²), x̂_0 = μ + α s² (x − α μ)/(α² s² + σ²), v = α ε − σ x̂_0."""
    mu = torch.tensor(MU, dtype=torch.float64)

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        x64 = x.double()
        spread = alpha**2 * S**2 + sigma**2
        eps = sigma * (x64 - alpha * mu) / spread
        x0 = mu + alpha * S**2 * (x64 - alpha * mu) / spread
        return (eps if prediction == "eps" else alpha * eps - sigma * x0).to(x.dtype)

    return fn


def exact_model_density(schedule: Schedule, x0: np.ndarray) -> np.ndarray:
    """The linear ODE maps x_T ~ N(0, I) to x_0 = μ + s (x_T − α_T μ)/c, c = √(α_T² s² + σ_T²):
    N(μ − s α_T μ / c, (s/c)² I) at t = 0 (N(μ, s² I) itself when α_T = 0)."""
    T = schedule.timesteps
    alpha_T, sigma_T = schedule.alpha(T), schedule.sigma(T)
    c = math.sqrt(alpha_T**2 * S**2 + sigma_T**2)
    mean, sd = MU - S * alpha_T * MU / c, S / c
    return -0.5 * ((x0 - mean) ** 2).sum(axis=1) / sd**2 - 2 * math.log(sd) - math.log(2 * math.pi)


SCHEDULES = {
    "linear (the seed's, α_T² = 0.60)": (ScheduleConfig(), "eps"),
    "cosine": (ScheduleConfig(kind="cosine"), "eps"),
    "zero terminal SNR, v": (ScheduleConfig(zero_terminal_snr=True), "v"),
    "cosine, zero terminal SNR, v": (ScheduleConfig(kind="cosine", zero_terminal_snr=True), "v"),
}


def flow_error(config: ScheduleConfig, prediction: str) -> float:
    """Largest |log p (flow) − log p (closed form)| over 400 draws of the data and two tail points."""
    schedule = Schedule.from_config(config)
    x0 = MU + S * np.random.default_rng(0).normal(size=(400, 2))
    x0 = np.concatenate([x0, MU + np.array([[2.0, 0.0], [0.0, -2.0]]) * S])
    got = log_prob(FunctionDenoiser(gaussian_oracle(schedule, prediction)), schedule, prediction, x0)
    expected = exact_model_density(schedule, x0)
    if schedule.zero_terminal_snr:  # there the ODE maps N(0, I) onto the data's own N(μ, s² I)
        data = -0.5 * ((x0 - MU) ** 2).sum(axis=1) / S**2 - 2 * math.log(S) - math.log(2 * math.pi)
        np.testing.assert_allclose(expected, data, rtol=0, atol=1e-12)
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize("name", SCHEDULES)
def test_the_flow_reproduces_the_gaussian_models_log_density_to_1e_3(name: str) -> None:
    config, prediction = SCHEDULES[name]
    fine = flow_error(dataclasses.replace(config, timesteps=200), prediction)
    assert fine < 1e-3
    # at T = 50 the knots lie further apart; the seed's schedule stays within 1e-3
    coarse = flow_error(config, prediction)
    assert coarse < (1e-3 if config.kind == "linear" and not config.zero_terminal_snr else 1e-2)
    if config.kind == "cosine":  # the same ᾱ(t/T) at both T: knots 4x closer, and the linear
        assert 8 < coarse / fine < 24  # interpolation between steps is second order (about 16x)


def test_on_the_seeds_schedule_the_model_density_differs_from_the_datas_and_the_flow_shows_it() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    x0 = MU + S * np.random.default_rng(1).normal(size=(200, 2))
    got = log_prob(FunctionDenoiser(gaussian_oracle(schedule, "eps")), schedule, "eps", x0)
    data = -0.5 * ((x0 - MU) ** 2).sum(axis=1) / S**2 - 2 * math.log(S) - math.log(2 * math.pi)
    assert np.abs(got - data).mean() > 0.1  # q(x_T) is not N(0, I): the model is not the data


def test_data_space_is_model_space_less_twice_the_log_scale_and_integrates_the_same_gaussian() -> None:
    schedule = Schedule.from_config(ScheduleConfig(timesteps=200, zero_terminal_snr=True))
    norm = Normalisation(noise=0.5, mean=(2.0, -1.0), scale=6.8)
    x0 = MU + S * np.random.default_rng(2).normal(size=(100, 2))
    model_space = log_prob(FunctionDenoiser(gaussian_oracle(schedule, "v")), schedule, "v", x0)
    raw = norm.denormalise(x0)  # N(scale μ + mean, (scale s)² I) in data space
    mean, sd = norm.denormalise(MU[None, :])[0], norm.scale * S
    expected = -0.5 * ((raw - mean) ** 2).sum(axis=1) / sd**2 - 2 * math.log(sd) - math.log(2 * math.pi)
    np.testing.assert_allclose(log_prob_in_space(model_space, "data", norm), expected, rtol=0, atol=1e-3)
    assert log_prob_in_space(model_space, "model", norm) is model_space
    with pytest.raises(ValueError, match="model, data"):
        log_prob_in_space(model_space, "raw", norm)


def test_the_divergence_matches_central_finite_differences_of_the_velocity() -> None:
    checkpoint = load_checkpoint(SHIPPED_CHECKPOINT)
    net = copy.deepcopy(checkpoint.net).double()  # float64, so that differences resolve 1e-7
    denoiser = DifferentiableNetDenoiser(net, "cpu")
    grid = FlowGrid.from_schedule(checkpoint.schedule, checkpoint.prediction)
    x = torch.tensor(np.random.default_rng(3).uniform(-2, 2, size=(64, 2)))
    h = 1e-5
    for k in (1, 7, 25, 50):
        _, divergence = velocity(denoiser, grid, x, k)
        numeric = torch.zeros(64, dtype=torch.float64)
        for i in range(2):
            step = torch.zeros(2, dtype=torch.float64)
            step[i] = h
            plus, _ = velocity(denoiser, grid, x + step, k)
            minus, _ = velocity(denoiser, grid, x - step, k)
            numeric += (plus[:, i] - minus[:, i]) / (2 * h)
        np.testing.assert_allclose(divergence.numpy(), numeric.numpy(), rtol=1e-6, atol=1e-6)


def test_the_velocity_is_zero_at_t0_and_each_prediction_gives_the_same_v() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    x = torch.tensor(np.random.default_rng(4).normal(size=(32, 2)))
    eps_grid, v_grid = FlowGrid.from_schedule(schedule, "eps"), FlowGrid.from_schedule(schedule, "v")
    eps_fn, v_fn = FunctionDenoiser(gaussian_oracle(schedule, "eps")), FunctionDenoiser(gaussian_oracle(schedule, "v"))
    for k in (1, 10, 50):
        v_from_eps, div_from_eps = velocity(eps_fn, eps_grid, x, k)
        v_from_v, div_from_v = velocity(v_fn, v_grid, x, k)
        torch.testing.assert_close(v_from_eps, v_from_v, rtol=0, atol=1e-12)
        torch.testing.assert_close(div_from_eps, div_from_v, rtol=0, atol=1e-12)
    zero, div = velocity(eps_fn, eps_grid, x, 0)
    assert not zero.any() and not div.any()
    assert eps_grid.phi[0] == 0.0 and np.all(np.diff(eps_grid.phi) > 0)
    assert FlowGrid.from_schedule(Schedule.from_config(ScheduleConfig(zero_terminal_snr=True)), "v").phi[-1] == pytest.approx(math.pi / 2, abs=1e-15)


def test_slices_of_any_block_size_give_the_same_log_densities() -> None:
    checkpoint = load_checkpoint(SHIPPED_CHECKPOINT)
    grid = FlowGrid.from_schedule(checkpoint.schedule, checkpoint.prediction)
    denoiser = DifferentiableNetDenoiser(checkpoint.net, "cpu")
    points = torch.tensor(np.random.default_rng(5).uniform(-2, 2, size=(300, 2)))
    whole = FlowIntegration(denoiser, grid, points, block_rows=300)
    sliced = FlowIntegration(denoiser, grid, points, block_rows=64)
    slices = 0
    while work := sliced.advance():
        slices += 1
        assert work <= 64 * 2 * 3
    assert slices == 5 * grid.timesteps and sliced.done
    np.testing.assert_allclose(sliced.log_prob(), whole.run(), rtol=0, atol=1e-5)
    assert whole.work == 300 * 99 * 3


def test_the_shipped_eps_model_is_within_003_nats_of_the_true_roll() -> None:
    checkpoint = load_checkpoint(SHIPPED_CHECKPOINT)
    norm = checkpoint.normalisation
    points = norm.normalise(swiss_roll(1000, norm.noise, seed=4242))
    got = log_prob(DifferentiableNetDenoiser(checkpoint.net, "cpu"), checkpoint.schedule, checkpoint.prediction, points)
    true = model_log_density(points, norm)
    assert abs(-got.mean() - -true.mean()) < 0.03
    assert np.corrcoef(got, true)[0, 1] > 0.9
