"""The schedule against an independent float64 computation (plain Python loops)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from model.schedule import Schedule, ScheduleConfig


def reference_linear(T: int, b1: float, bT: float) -> dict[str, list[float]]:
    betas = [b1 + (bT - b1) * i / (T - 1) for i in range(T)]
    alpha_bar, prev = [], 1.0
    for b in betas:
        prev *= 1.0 - b
        alpha_bar.append(prev)
    ab_prev = [1.0, *alpha_bar[:-1]]
    return {
        "betas": betas,
        "alpha_bars": alpha_bar,
        "posterior_variance": [b * (1 - p) / (1 - a) for b, p, a in zip(betas, ab_prev, alpha_bar)],
        "coef_x0": [b * math.sqrt(p) / (1 - a) for b, p, a in zip(betas, ab_prev, alpha_bar)],
        "coef_xt": [(1 - p) * math.sqrt(1 - b) / (1 - a) for b, p, a in zip(betas, ab_prev, alpha_bar)],
    }


def test_default_linear_schedule_has_exactly_T_betas_from_1e4_to_002() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    assert schedule.timesteps == 50
    assert schedule.betas.shape == (50,)
    assert schedule.betas[0] == pytest.approx(1e-4, abs=1e-15)
    assert schedule.betas[-1] == pytest.approx(0.02, abs=1e-15)
    assert np.all(np.diff(schedule.betas) > 0)


@pytest.mark.parametrize("T,b1,bT", [(50, 1e-4, 0.02), (1000, 1e-4, 0.02), (7, 0.001, 0.3)])
def test_linear_schedule_matches_float64_reference(T: int, b1: float, bT: float) -> None:
    schedule = Schedule.from_config(ScheduleConfig(timesteps=T, beta_start=b1, beta_end=bT))
    ref = reference_linear(T, b1, bT)
    np.testing.assert_allclose(schedule.betas, ref["betas"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(schedule.alphas, 1 - np.asarray(ref["betas"]), rtol=1e-12)
    np.testing.assert_allclose(schedule.alpha_bars, ref["alpha_bars"], rtol=1e-12)
    np.testing.assert_allclose(schedule.posterior_variance, ref["posterior_variance"], rtol=1e-10, atol=1e-18)
    np.testing.assert_allclose(schedule.posterior_mean_coef_x0, ref["coef_x0"], rtol=1e-10)
    np.testing.assert_allclose(schedule.posterior_mean_coef_xt, ref["coef_xt"], rtol=1e-10, atol=1e-18)
    assert np.all(np.diff(schedule.alpha_bars) < 0)


def test_posterior_variance_is_zero_at_t1_and_below_beta() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    assert schedule.posterior_variance[0] == 0.0
    assert np.all(schedule.posterior_variance <= schedule.betas)


def test_posterior_mean_coefficients_reproduce_the_gaussian_posterior() -> None:
    # μ̃(x_t, x_0) must equal the mean of q(x_{t-1}|x_t, x_0) obtained by Bayes on
    # q(x_{t-1}|x_0) = N(√ᾱ_{t-1} x0, 1-ᾱ_{t-1}) and q(x_t|x_{t-1}) = N(√α_t x_{t-1}, β_t).
    schedule = Schedule.from_config(ScheduleConfig())
    x0, xt = 0.7, -0.3
    for t in (2, 10, 50):
        i = t - 1
        prior_mean, prior_var = math.sqrt(schedule.alpha_bars_prev[i]) * x0, 1 - schedule.alpha_bars_prev[i]
        a, b = math.sqrt(schedule.alphas[i]), schedule.betas[i]
        post_var = 1 / (1 / prior_var + a * a / b)
        post_mean = post_var * (prior_mean / prior_var + a * xt / b)
        mean = schedule.posterior_mean_coef_x0[i] * x0 + schedule.posterior_mean_coef_xt[i] * xt
        assert mean == pytest.approx(post_mean, rel=1e-10)
        assert schedule.posterior_variance[i] == pytest.approx(post_var, rel=1e-10)


def test_alpha_bar_convention_t0_is_clean_data() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    assert schedule.alpha_bar(0) == 1.0
    assert schedule.alpha_bar(1) == pytest.approx(1 - 1e-4)
    assert schedule.alpha_bar(50) == schedule.alpha_bar_final == pytest.approx(0.60295, abs=1e-4)
    with pytest.raises(ValueError, match=r"0\.\.50"):
        schedule.alpha_bar(51)


def test_cosine_schedule_follows_nichol_dhariwal() -> None:
    T, s = 50, 0.008
    schedule = Schedule.from_config(ScheduleConfig(kind="cosine", timesteps=T))
    f = [math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    expected = [min(1 - (f[t] / f[0]) / (f[t - 1] / f[0]), 0.999) for t in range(1, T + 1)]
    np.testing.assert_allclose(schedule.betas, expected, rtol=1e-12)
    assert schedule.alpha_bar_final < 1e-3  # the cosine schedule ends near pure noise


def test_unknown_schedule_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="linear, cosine"):
        ScheduleConfig(kind="quadratic")


def test_schedule_is_immutable() -> None:
    schedule = Schedule.from_config(ScheduleConfig())
    with pytest.raises(ValueError):
        schedule.betas[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.config = ScheduleConfig(timesteps=3)  # type: ignore[misc]


@pytest.mark.parametrize("T,b1,bT", [(50, 1e-4, 0.02), (1000, 1e-4, 0.02), (7, 0.001, 0.3)])
def test_zero_terminal_snr_rescale_follows_lin_et_al(T: int, b1: float, bT: float) -> None:
    base = Schedule.from_config(ScheduleConfig(timesteps=T, beta_start=b1, beta_end=bT))
    rescaled = Schedule.from_config(ScheduleConfig(timesteps=T, beta_start=b1, beta_end=bT, zero_terminal_snr=True))
    ref = reference_linear(T, b1, bT)
    root = [math.sqrt(a) for a in ref["alpha_bars"]]
    first, last = root[0], root[-1]
    expected = [((r - last) * first / (first - last)) ** 2 for r in root]  # Lin et al. 2024, Algorithm 1, in plain floats
    np.testing.assert_allclose(rescaled.alpha_bars, expected, rtol=1e-10, atol=1e-300)
    assert rescaled.alpha_bars[-1] == 0.0 and rescaled.alpha_bar_final == 0.0 and rescaled.zero_terminal_snr
    assert rescaled.alpha_bars[0] == pytest.approx(base.alpha_bars[0], rel=1e-14)  # √ᾱ_1 is kept
    assert rescaled.betas[-1] == 1.0 and rescaled.alphas[-1] == 0.0
    # √ᾱ' is linear in the original √ᾱ: √ᾱ'_t = c (√ᾱ_t − √ᾱ_T)
    slope = np.polyfit(np.sqrt(base.alpha_bars), np.sqrt(rescaled.alpha_bars), 1)
    np.testing.assert_allclose(np.sqrt(rescaled.alpha_bars), np.polyval(slope, np.sqrt(base.alpha_bars)), atol=1e-12)
    np.testing.assert_allclose(np.cumprod(rescaled.alphas), rescaled.alpha_bars, rtol=1e-9, atol=1e-300)
    assert np.all(np.diff(rescaled.alpha_bars) < 0) and np.all((rescaled.betas > 0) & (rescaled.betas <= 1))
    assert not base.zero_terminal_snr


def test_zero_terminal_snr_posterior_and_accessors_stay_finite_at_T() -> None:
    schedule = Schedule.from_config(ScheduleConfig(zero_terminal_snr=True))
    T = schedule.timesteps
    for table in (schedule.posterior_variance, schedule.posterior_mean_coef_x0, schedule.posterior_mean_coef_xt):
        assert np.all(np.isfinite(table))
    # at t = T, q(x_{T−1} | x_T, x_0) ignores x_T: mean √ᾱ_{T−1} x_0, variance 1 − ᾱ_{T−1}
    assert schedule.posterior_mean_coef_xt[-1] == 0.0
    assert schedule.posterior_mean_coef_x0[-1] == pytest.approx(math.sqrt(schedule.alpha_bars[-2]), rel=1e-12)
    assert schedule.posterior_variance[-1] == pytest.approx(1 - schedule.alpha_bars[-2], rel=1e-12)
    assert (schedule.alpha(T), schedule.sigma(T), schedule.log_snr(T)) == (0.0, 1.0, -math.inf)
    assert (schedule.alpha(0), schedule.sigma(0), schedule.log_snr(0)) == (1.0, 0.0, math.inf)
    for t in (1, 17, T - 1):
        ab = schedule.alpha_bar(t)
        assert schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2 == pytest.approx(1.0, abs=1e-15)
        assert schedule.log_snr(t) == pytest.approx(0.5 * math.log(ab / (1 - ab)), rel=1e-12)


def test_old_checkpoint_schedule_configs_load_without_the_new_field() -> None:
    data = ScheduleConfig().to_dict()
    del data["zero_terminal_snr"]
    assert ScheduleConfig.from_dict(data) == ScheduleConfig()
